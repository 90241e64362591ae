"""Issue 23: what a node does works from any node. Two runtimes (nodes `n1` and `n2`) share one
fresh PostgreSQL database and one S3 store, as two `afterbeep serve` of a cluster do.

Queues: callers waiting on either node stand in one line (positions counted across nodes, the
longest-waiting caller offered first), an agent is offered one caller at a time whichever node
or queue asks, and the rows of a node that stopped renewing them expire.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from afterbeep.db.repos.queue_floor import SqlQueueFloor
from afterbeep.domain.ids import new_id
from afterbeep.domain.queues import (
    AgentStatus,
    Queue,
    QueueMember,
    QueueSettings,
    QueueStrategy,
)
from afterbeep.services.queues import HOLD_LEASE
from tests.conftest import Backend, make_settings

PG = pytest.mark.parametrize("backend", ["postgres-s3"], indirect=True)
NOON = datetime(2026, 6, 1, 16, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self._now += timedelta(seconds=seconds)


@contextlib.asynccontextmanager
async def two_nodes(
    backend: Backend, tmp_path: Path, clock: FakeClock | None = None, **overrides: Any
) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """Two started runtimes (no workers) on the backend's database and store."""
    nodes = []
    try:
        for node_id in ("n1", "n2"):
            settings = make_settings(
                backend,
                node_id=node_id,
                data_dir=tmp_path / f"var-{node_id}",
                sip_addr="127.0.0.1:0",
                smtp_url="smtp://127.0.0.1:9",
                **overrides,
            )
            rt = Runtime(settings, clock=clock)
            nodes.append(rt)
            await rt.start(workers=False)
        yield nodes[0], nodes[1]
    finally:
        for rt in reversed(nodes):
            await rt.stop()


# --- queues -----------------------------------------------------------------------------------


def make_queue(account_id: str, *agents: str, **settings: Any) -> Queue:
    chosen: dict[str, Any] = {
        "strategy": QueueStrategy.LONGEST_IDLE,
        "max_wait_sec": 0,
        "wrap_up_sec": 0,
        "max_no_answer": 0,
        "announce_position": True,
        "announce_first_sec": 0,  # the first step of each caller tells its position, once
        "announce_interval_sec": 0,
        **settings,
    }
    return Queue(
        id=new_id("q"),
        account_id=account_id,
        name="Front desk",
        settings=QueueSettings(**chosen),
        members=tuple(QueueMember(a) for a in agents),
        created_at=NOON,
        updated_at=NOON,
    )


async def agent_available(rt: Runtime, account_id: str) -> str:
    user_id = new_id("usr")
    async with rt.uow() as uow:
        await uow.queues.set_status(account_id, user_id, AgentStatus.AVAILABLE, rt.clock.now())
    return user_id


async def hold_of(rt: Runtime, account_id: str, user_id: str) -> tuple[Any, ...]:
    s = t.agent_states.c
    async with rt.db.begin() as conn:
        row = (
            await conn.execute(
                select(s.held_state, s.held_ticket, s.held_node).where(
                    s.account_id == account_id, s.user_id == user_id
                )
            )
        ).one()
    return tuple(row)


@PG
async def test_callers_on_two_nodes_stand_in_one_line_and_the_agent_gets_one_offer_at_a_time(
    backend: Backend, tmp_path: Path
) -> None:
    clock = FakeClock(NOON)
    async with two_nodes(backend, tmp_path, clock) as (a, b):
        for rt, node in ((a, "n1"), (b, "n2")):
            assert isinstance(rt.queue_engine.shared, SqlQueueFloor)
            assert rt.queue_engine.shared.node_id == node
        account_id = (await a.accounts.create_account("Acme")).account_id
        agent = await agent_available(a, account_id)
        queue = make_queue(account_id, agent)
        ea, eb = a.queue_engine, b.queue_engine
        await ea.load_statuses(queue)
        await eb.load_statuses(queue)

        # c1 waits on n2, c2 on n1, c3 on n2, a second apart.
        assert await eb.join(queue, "c1") is None
        clock.advance(1)
        assert await ea.join(queue, "c2") is None
        clock.advance(1)
        assert await eb.join(queue, "c3") is None

        # Positions are counted across nodes; the later callers step first and get nothing.
        s2 = await ea.step(queue, "c2")
        s3 = await eb.step(queue, "c3")
        assert (s2.position, s2.offer, s3.position, s3.offer) == (2, (), 3, ())
        s1 = await eb.step(queue, "c1")
        assert (s1.position, s1.offer) == (1, (agent,))
        assert await hold_of(a, account_id, agent) == ("offering", "c1", "n2")

        # While c1's offer rings, both nodes step their callers at once: no second offer.
        for _ in range(5):
            s2, s3 = await asyncio.gather(ea.step(queue, "c2"), eb.step(queue, "c3"))
            assert s2.offer == s3.offer == ()
        await ea.load_statuses(queue)
        assert ea.stats(queue).waiting == 3
        assert ea.stats(queue).agents_by_state["offering"] == 1  # seen from the other node

        # The agent answers c1 on n2, then its call ends (no wrap-up): c2, on n1, is next,
        # although c3 (on n2, where the agent's call was) steps first.
        await eb.answered(queue, "c1", agent)
        assert await hold_of(a, account_id, agent) == ("in_call", "c1", "n2")
        assert (await ea.step(queue, "c2")).offer == ()
        await eb.call_ended(queue, agent)
        assert (await eb.step(queue, "c3")).offer == ()
        assert (await ea.step(queue, "c2")).offer == (agent,)
        assert await hold_of(b, account_id, agent) == ("offering", "c2", "n1")

        # c2 lets it ring out and stays first; then hangs up: c3 on n2 gets the agent.
        await ea.missed(queue, "c2", agent)
        assert await hold_of(b, account_id, agent) == (None, None, None)
        assert (await eb.step(queue, "c3")).offer == ()
        await ea.left(queue, "c2", None, hung_up=True)
        assert (await eb.step(queue, "c3")).offer == (agent,)
        await eb.load_statuses(queue)
        assert eb.stats(queue).waiting == 1
        await eb.left(queue, "c3", None, hung_up=True)
        assert await hold_of(a, account_id, agent) == (None, None, None)


@PG
async def test_two_queues_on_two_nodes_never_offer_their_shared_agent_twice(
    backend: Backend, tmp_path: Path
) -> None:
    clock = FakeClock(NOON)
    async with two_nodes(backend, tmp_path, clock) as (a, b):
        account_id = (await a.accounts.create_account("Acme")).account_id
        agent = await agent_available(a, account_id)
        sales, support = make_queue(account_id, agent), make_queue(account_id, agent)
        ea, eb = a.queue_engine, b.queue_engine
        await ea.load_statuses(sales)
        await eb.load_statuses(support)
        assert await ea.join(sales, "x") is None
        assert await eb.join(support, "y") is None
        winners = []
        for _ in range(8):  # each round both heads step at the same time
            sx, sy = await asyncio.gather(ea.step(sales, "x"), eb.step(support, "y"))
            offered = [s for s in (sx, sy) if s.offer]
            assert len(offered) == 1, (sx, sy)
            if sx.offer:
                winners.append("x")
                await ea.missed(sales, "x", agent)
            else:
                winners.append("y")
                await eb.missed(support, "y", agent)
        await ea.left(sales, "x", None)
        await eb.left(support, "y", None)


@PG
async def test_a_dead_nodes_callers_and_holds_expire(backend: Backend, tmp_path: Path) -> None:
    clock = FakeClock(NOON)
    async with two_nodes(backend, tmp_path, clock) as (a, b):
        account_id = (await a.accounts.create_account("Acme")).account_id
        agent = await agent_available(a, account_id)
        queue = make_queue(account_id, agent)
        ea, eb = a.queue_engine, b.queue_engine
        await ea.load_statuses(queue)
        await eb.load_statuses(queue)
        assert await ea.join(queue, "on-n1") is None
        assert (await ea.step(queue, "on-n1")).offer == (agent,)
        clock.advance(1)
        assert await eb.join(queue, "on-n2") is None
        step = await eb.step(queue, "on-n2")
        assert (step.position, step.offer) == (2, ())

        # n1 dies: it renews nothing more. Within the lease its caller and hold still count.
        clock.advance(HOLD_LEASE.total_seconds() / 2)
        await eb.renew()
        assert (await eb.step(queue, "on-n2")).offer == ()
        clock.advance(HOLD_LEASE.total_seconds() / 2 + 1)
        assert (await eb.step(queue, "on-n2")).offer == (agent,)
        assert await hold_of(b, account_id, agent) == ("offering", "on-n2", "n2")
        async with b.db.begin() as conn:
            tickets = (await conn.execute(select(t.queue_callers.c.ticket))).scalars().all()
        assert tickets == ["on-n2"]
        await eb.left(queue, "on-n2", None, hung_up=True)
