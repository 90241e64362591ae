"""Issue 23, what was still per node: the queue strategies' state and the queue statistics
(stored, the same from every node), the shared line ordered by the database's clock (not a
node's), the work-items router with two nodes routing, accepting and declining, and the
supervisor's children dying with it (kill -9 of `afterbeep cluster run`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from afterbeep.domain.queues import AgentStatus, Queue, QueueExit, QueueStrategy, Stats
from afterbeep.services.queues import QueueService
from tests.cluster.test_any_node import agent_available, make_queue
from tests.conftest import Backend, make_settings

PG = pytest.mark.parametrize("backend", ["postgres-s3"], indirect=True)
NOON = datetime(2026, 6, 1, 16, 0, tzinfo=UTC)


class NodeClock:
    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


@contextlib.asynccontextmanager
async def nodes(
    backend: Backend, tmp_path: Path, clocks: Sequence[NodeClock]
) -> AsyncIterator[list[Runtime]]:
    """Started runtimes `n1`, `n2`... (no workers) on one database, each with its own clock."""
    started: list[Runtime] = []
    try:
        for index, clock in enumerate(clocks):
            node_id = f"n{index + 1}"
            settings = make_settings(
                backend,
                node_id=node_id,
                data_dir=tmp_path / f"var-{node_id}",
                sip_addr="127.0.0.1:0",
                smtp_url="smtp://127.0.0.1:9",
            )
            rt = Runtime(settings, clock=clock)
            started.append(rt)
            await rt.start(workers=False)
        yield started
    finally:
        for rt in reversed(started):
            await rt.stop()


def service(rt: Runtime) -> QueueService:
    return QueueService(rt.uow, rt.clock, rt.queue_engine)


async def stats_of(rt: Runtime, queue: Queue) -> Stats:
    """What the API's statistics of the queue show on this node."""
    await rt.queue_engine.load_statuses(queue)
    return rt.queue_engine.stats(queue)


async def offer_next(rt: Runtime, queue: Queue, ticket: str) -> tuple[str, ...]:
    await rt.queue_engine.load_statuses(queue)
    return (await rt.queue_engine.step(queue, ticket)).offer


# --- the queue strategies' state and the statistics --------------------------------------------


@PG
async def test_round_robin_missed_streaks_and_statistics_are_the_same_on_every_node(
    backend: Backend, tmp_path: Path
) -> None:
    clock = NodeClock(NOON)
    async with nodes(backend, tmp_path, [clock, clock]) as (a, b):
        account_id = (await a.accounts.create_account("Acme")).account_id
        agents = [await agent_available(a, account_id) for _ in range(3)]
        queue = make_queue(account_id, *agents, strategy=QueueStrategy.ROUND_ROBIN, max_no_answer=2)
        # Round robin: callers alternate between the nodes, each answered at once; the agents
        # are offered in member order whichever node offers (each node alone would restart
        # from the first member).
        offered = []
        for index in range(4):
            rt = (a, b)[index % 2]
            ticket = f"rr-{index}"
            assert await rt.queue_engine.join(queue, ticket) is None
            (agent,) = await offer_next(rt, queue, ticket)
            offered.append(agent)
            await rt.queue_engine.answered(queue, ticket, agent)
            await rt.queue_engine.call_ended(queue, agent)
        assert offered == [*agents, agents[0]]

        # A missed streak counts the misses on both nodes (of any queue): two in a row and
        # the agent is on break, stored, as the API shows from either node.
        first = agents[1]
        solo = make_queue(account_id, first, max_no_answer=2)
        for index, rt in enumerate((b, a)):
            ticket = f"miss-{index}"
            assert await rt.queue_engine.join(solo, ticket) is None
            assert await offer_next(rt, solo, ticket) == (first,)
            await rt.queue_engine.missed(solo, ticket, first)
            await rt.queue_engine.left(solo, ticket, QueueExit.TIMEOUT)
        for rt in (a, b):
            view = await service(rt).agent(account_id, first)
            assert (view.status, view.missed_in_row) == (AgentStatus.ON_BREAK, 2)

        # Back from the break: a new streak, stored.
        await service(b).set_status(account_id, first, AgentStatus.AVAILABLE)
        view = await service(a).agent(account_id, first)
        assert (view.status, view.missed_in_row) == (AgentStatus.AVAILABLE, 0)

        # A caller hangs up on n2; the statistics add up the same seen from n1 and n2.
        assert await b.queue_engine.join(queue, "gone") is None
        await b.queue_engine.left(queue, "gone", None, hung_up=True)
        for rt in (a, b):
            stats = await stats_of(rt, queue)
            assert (stats.answered, stats.timed_out, stats.abandoned) == (4, 0, 1)
            stats = await stats_of(rt, solo)
            assert (stats.answered, stats.timed_out, stats.abandoned) == (0, 2, 0)
        await b.queue_engine.refresh_agents(account_id, agents)
        assert [b.queue_engine.agent_state(u)[2] for u in agents] == [2, 1, 1]


@PG
async def test_fewest_calls_counts_the_calls_answered_on_every_node(
    backend: Backend, tmp_path: Path
) -> None:
    clock = NodeClock(NOON)
    async with nodes(backend, tmp_path, [clock, clock]) as (a, b):
        account_id = (await a.accounts.create_account("Acme")).account_id
        busy, quiet = [await agent_available(a, account_id) for _ in range(2)]
        alone = make_queue(account_id, busy)
        for index in range(2):  # `busy` answers two calls on n1
            ticket = f"on-n1-{index}"
            assert await a.queue_engine.join(alone, ticket) is None
            assert await offer_next(a, alone, ticket) == (busy,)
            await a.queue_engine.answered(alone, ticket, busy)
            await a.queue_engine.call_ended(alone, busy)
        # Idle longest, listed first: what n2 alone (no calls seen) would offer `busy`.
        s = t.agent_states.c
        async with a.db.begin() as conn:
            for user_id, since in ((busy, NOON - timedelta(hours=1)), (quiet, NOON)):
                await conn.execute(
                    update(t.agent_states).where(s.user_id == user_id).values(idle_since=since)
                )
        clock.advance(1)
        both = make_queue(account_id, busy, quiet, strategy=QueueStrategy.FEWEST_CALLS)
        assert await b.queue_engine.join(both, "on-n2") is None
        assert await offer_next(b, both, "on-n2") == (quiet,)
        await b.queue_engine.left(both, "on-n2", None, hung_up=True)


@PG
async def test_a_claim_made_on_a_stale_view_of_the_queue_gets_nothing(
    backend: Backend, tmp_path: Path
) -> None:
    """Two nodes chose from the same view; the one that claims second gets no agent (its node
    looks again), so round robin never skips or repeats an agent."""
    clock = NodeClock(NOON)
    async with nodes(backend, tmp_path, [clock, clock]) as (a, b):
        account_id = (await a.accounts.create_account("Acme")).account_id
        first, second = [await agent_available(a, account_id) for _ in range(2)]
        queue = make_queue(account_id, first, second, strategy=QueueStrategy.ROUND_ROBIN)
        floor_a, floor_b = a.queue_engine.shared, b.queue_engine.shared
        assert floor_a is not None and floor_b is not None
        await floor_a.join(account_id, queue.id, "x", NOON + timedelta(minutes=1))
        await floor_b.join(account_id, queue.id, "y", NOON + timedelta(minutes=1))
        seen = (await floor_b.look(account_id, queue.id, [first, second], NOON, NOON)).tally
        until = NOON + timedelta(seconds=30)
        assert await floor_a.claim(account_id, queue.id, [first], "x", NOON, until, 0) == [first]
        assert await floor_b.claim(account_id, queue.id, [second], "y", NOON, until, 0) == []
        look = await floor_b.look(account_id, queue.id, [first, second], NOON, NOON)
        assert (seen.offers, look.tally.offers, look.tally.last_offered) == (0, 1, first)
        assert [w.offered for w in look.waiting] == [True, False]
        assert look.agents[second].held is None
        claimed = await floor_b.claim(account_id, queue.id, [second], "y", NOON, until, 1)
        assert claimed == [second]


# --- the line ordered by the database's clock ---------------------------------------------------


@PG
async def test_callers_are_ordered_by_the_database_clock_not_a_skewed_node_clock(
    backend: Backend, tmp_path: Path
) -> None:
    # n2's clock is 10 s behind n1's (within the lease: its rows do not look expired to n1).
    fast, slow = NodeClock(NOON), NodeClock(NOON - timedelta(seconds=10))
    async with nodes(backend, tmp_path, [fast, slow]) as (a, b):
        account_id = (await a.accounts.create_account("Acme")).account_id
        agent = await agent_available(a, account_id)
        queue = make_queue(account_id, agent)
        await a.queue_engine.load_statuses(queue)
        await b.queue_engine.load_statuses(queue)
        assert await a.queue_engine.join(queue, "first") is None
        assert await b.queue_engine.join(queue, "second") is None  # later, on an earlier clock
        step = await b.queue_engine.step(queue, "second")
        assert (step.position, step.offer) == (2, ())
        step = await a.queue_engine.step(queue, "first")
        assert (step.position, step.offer) == (1, (agent,))
        stats = await stats_of(b, queue)
        assert stats.waiting == 2 and 0 <= stats.longest_wait_sec < 10  # not skewed by 10 s
        for rt, ticket in ((a, "first"), (b, "second")):
            await rt.queue_engine.left(queue, ticket, None, hung_up=True)
