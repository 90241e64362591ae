"""Issue 23, what was still per node: the queue strategies' state and the queue statistics
(stored, the same from every node), the shared line and the leases on the database's clock (not
a node's, even an hour off), the work-items router with two nodes routing, accepting and
declining, their changes heard at once by the other node (LISTEN/NOTIFY, the poll at 60 s; a
cut listening connection), idle longest from the stored time, a phone over TCP through
Kamailio, and the supervisor's children dying with it (kill -9 of `afterbeep cluster run`)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import select, update

from afterbeep.app import Runtime
from afterbeep.db import notify as notify_module
from afterbeep.db import tables as t
from afterbeep.db.repos.work_items import SqlRouterLock
from afterbeep.domain.queues import AgentStatus, Queue, QueueExit, QueueStrategy, Stats
from afterbeep.domain.work_items import OfferStatus, WorkItemState
from afterbeep.services import work_items as work_items_service
from afterbeep.services.queues import QueueService
from afterbeep.services.work_items import FeedEvent
from tests.api.test_ring_groups import add_users
from tests.cluster.test_any_node import agent_available, make_queue
from tests.cluster.test_failover import (
    LEAD_MS,
    SCENARIO,
    cluster_api,
    mailbox_at,
    wait_until,
)
from tests.conftest import Backend, make_settings
from tests.e2e.rig import caller_pcap, silence, speech
from tests.fixtures.cluster import Cluster, cluster_env, running_cluster
from tests.fixtures.seaweed import SeaweedS3
from tests.fixtures.service import free_sip_port
from tests.services.test_work_items import A as USER_A
from tests.services.test_work_items import B as USER_B
from tests.services.test_work_items import Rig
from tests.sip import conftest as sip_rig

sipp_bin = sip_rig.sipp_bin

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
        lease = timedelta(seconds=30)
        await floor_a.join(account_id, queue.id, "x", lease)
        await floor_b.join(account_id, queue.id, "y", lease)
        seen = (await floor_b.look(account_id, queue.id, [first, second], lease)).tally
        assert await floor_a.claim(account_id, queue.id, [first], "x", lease, 0) == [first]
        assert await floor_b.claim(account_id, queue.id, [second], "y", lease, 0) == []
        look = await floor_b.look(account_id, queue.id, [first, second], lease)
        assert (seen.offers, look.tally.offers, look.tally.last_offered) == (0, 1, first)
        assert [w.offered for w in look.waiting] == [True, False]
        assert look.agents[second].held is None
        claimed = await floor_b.claim(account_id, queue.id, [second], "y", lease, 1)
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


@PG
async def test_holds_and_callers_rows_expire_on_the_database_clock_not_a_skewed_node_clock(
    backend: Backend, tmp_path: Path
) -> None:
    """n2's clock is an hour ahead of n1's (far past the lease): n1's caller row and n1's hold
    on the agent still live for n2, which neither deletes the row nor offers the agent again;
    n2's own hold, taken on the database's clock, is not taken for expired by n1."""
    real = datetime.now(UTC)
    behind, ahead = NodeClock(real), NodeClock(real + timedelta(hours=1))
    async with nodes(backend, tmp_path, [behind, ahead]) as (a, b):
        account_id = (await a.accounts.create_account("Acme")).account_id
        agent = await agent_available(a, account_id)
        queue = make_queue(account_id, agent)
        assert await a.queue_engine.join(queue, "on-n1") is None
        assert await offer_next(a, queue, "on-n1") == (agent,)
        assert await b.queue_engine.join(queue, "on-n2") is None
        step = await b.queue_engine.step(queue, "on-n2")
        assert (step.position, step.offer) == (2, ())
        await b.queue_engine.renew()
        assert (await b.queue_engine.step(queue, "on-n2")).offer == ()
        assert (await stats_of(b, queue)).waiting == 2
        # The agent misses n1's offer; n2's caller gets it, and n1 leaves n2's hold alone.
        await a.queue_engine.missed(queue, "on-n1", agent)
        await a.queue_engine.left(queue, "on-n1", None, hung_up=True)
        assert await offer_next(b, queue, "on-n2") == (agent,)
        assert await a.queue_engine.join(queue, "again-n1") is None
        step = await a.queue_engine.step(queue, "again-n1")
        assert (step.position, step.offer) == (2, ())
        await a.queue_engine.renew()
        await b.queue_engine.refresh_agents(account_id, [agent])
        assert b.queue_engine.agent_state(agent)[0].value == "offering"
        for rt, ticket in ((b, "on-n2"), (a, "again-n1")):
            await rt.queue_engine.left(queue, ticket, None, hung_up=True)


# --- the work-items router on two nodes -----------------------------------------------------


async def pending_offers(rt: Runtime) -> list[tuple[str, str]]:
    """(item, agent) of every pending offer in the database."""
    o = t.work_item_offers.c
    async with rt.db.begin() as conn:
        rows = (
            await conn.execute(
                select(o.work_item_id, o.agent_id).where(o.status == OfferStatus.PENDING.value)
            )
        ).all()
    return [(r.work_item_id, r.agent_id) for r in rows]


@contextlib.asynccontextmanager
async def two_routers(
    backend: Backend, tmp_path: Path, start: datetime = NOON
) -> AsyncIterator[tuple[Rig, Rig, NodeClock]]:
    clock = NodeClock(start)
    async with nodes(backend, tmp_path, [clock, clock]) as (a, b):
        assert isinstance(a.work_items.shared, SqlRouterLock)
        account_id = (await a.accounts.create_account("Acme")).account_id
        await add_users(a, account_id, USER_A, USER_B)
        for rt in (a, b):
            await rt.work_items.load()
        yield Rig(a, clock, account_id), Rig(b, clock, account_id), clock  # type: ignore[arg-type]


@PG
async def test_an_offer_made_on_one_node_is_declined_and_accepted_on_the_other(
    backend: Backend, tmp_path: Path
) -> None:
    async with two_routers(backend, tmp_path) as (n1, n2, _):
        q = await n1.queue(USER_A, USER_B)
        await n1.available(USER_A, USER_B)
        feed_a, feed_b = (
            n1.work.subscribe(n1.account_id, USER_A),
            n1.work.subscribe(n1.account_id, USER_B),
        )
        item_id = await n1.place(q)
        item, offers = await n2.item(item_id)
        assert item.agent_id == USER_A and [o.status for o in offers] == [OfferStatus.PENDING]
        assert events(feed_a) == ["work_item.offered"]

        await n2.work.decline(n2.account_id, USER_A, offers[0].id)  # made on n1
        assert await pending_offers(n1.rt) == [(item_id, USER_B)]
        # Both nodes' timers run at once: still one offer; n1 tells its feeds what n2 did.
        await asyncio.gather(n1.work.run_due(), n2.work.run_due())
        assert await pending_offers(n2.rt) == [(item_id, USER_B)]
        assert events(feed_a) == ["work_item.declined"]
        assert events(feed_b) == ["work_item.offered"]
        offer_b = (await n1.item(item_id))[1][-1]
        accepted = await n1.work.accept(n1.account_id, USER_B, offer_b.id)  # made on n2
        assert accepted.state is WorkItemState.ASSIGNED
        await n2.work.run_due()
        assert [i.id for i in n2.work.agent_items(n2.account_id, USER_B)] == [item_id]
        done = await n2.work.complete(n2.account_id, USER_B, item_id, None)
        assert done.state is WorkItemState.COMPLETED
        await n1.work.run_due()
        assert events(feed_b) == ["work_item.accepted", "work_item.completed"]


def events(feed: asyncio.Queue[FeedEvent | None]) -> list[str]:
    """The events waiting in an agent's feed, taken."""
    found = []
    while not feed.empty():
        event = feed.get_nowait()
        assert event is not None
        found.append(event.event)
    return found


@PG
async def test_two_nodes_routing_never_offer_an_item_twice_nor_past_an_agents_capacity(
    backend: Backend, tmp_path: Path
) -> None:
    async with two_routers(backend, tmp_path) as (n1, n2, _):
        q = await n1.queue(USER_A)
        await n1.available(USER_A)
        await n1.svc.work_items.set_capacity(n1.account_id, USER_A, 3)  # one voicemail at a time
        placed = await asyncio.gather(n1.place(q), n2.place(q), n1.place(q), n2.place(q))
        for _ in range(3):
            await asyncio.gather(n1.work.run_due(), n2.work.run_due())
        offered = await pending_offers(n1.rt)
        assert len(offered) == 1 and offered[0][1] == USER_A and offered[0][0] in placed
        # n2 sees the offer n1 or n2 made, and either node takes the answer.
        await n2.work.run_due()
        (pending,) = n2.work.agent_offers(n2.account_id, USER_A)
        await n1.work.accept(n1.account_id, USER_A, pending.id)
        await n2.work.complete(n2.account_id, USER_A, pending.work_item_id, None)
        await asyncio.gather(n1.work.run_due(), n2.work.run_due())
        after = await pending_offers(n2.rt)
        assert len(after) == 1 and after[0][0] != pending.work_item_id


@PG
async def test_work_items_round_robin_and_fewest_items_count_every_nodes_offers(
    backend: Backend, tmp_path: Path
) -> None:
    async with two_routers(backend, tmp_path) as (n1, n2, _):
        rr = await n1.queue(USER_A, USER_B, strategy=QueueStrategy.ROUND_ROBIN)
        fewest = await n1.queue(USER_A, USER_B, strategy=QueueStrategy.FEWEST_CALLS)
        await n1.available(USER_A, USER_B)
        order = []
        for index, (rig, queue_id) in enumerate([(n1, rr), (n2, rr), (n1, rr), (n2, fewest)]):
            item_id = await rig.place(queue_id)
            item, offers = await rig.item(item_id)
            assert item.agent_id is not None, index
            order.append(item.agent_id)
            await rig.work.accept(rig.account_id, item.agent_id, offers[-1].id)
            await rig.work.complete(rig.account_id, item.agent_id, item_id, None)
        # Round robin goes on where the other node left it; then B, who accepted one item
        # fewer (on either node), gets the next of the fewest-calls queue.
        assert order == [USER_A, USER_B, USER_A, USER_B]


# --- `afterbeep cluster run` (one node): a phone over TCP; kill -9 of the supervisor -----------


@pytest.fixture(scope="module", name="one_node")
def one_node_fixture(
    pg_url: str, pg_template: str, seaweed_s3: SeaweedS3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    from tests.conftest import _run, fresh_pg_database

    database_url = _run(fresh_pg_database(pg_url, pg_template))
    env = cluster_env(tmp_path_factory.mktemp("one") / "var", database_url, seaweed_s3)
    with running_cluster(env, nodes=1, rtp=(11000, 11199)) as running:
        yield running


@pytest.mark.timeout(120)
async def test_a_phone_over_tcp_leaves_a_message_through_kamailio(
    one_node: Cluster, sipp_bin: str, tmp_path: Path
) -> None:
    """SIPp over TCP to Kamailio, which relays to the node over UDP (record-routing both)."""
    work = tmp_path / "sipp"
    caller_pcap(work, silence(LEAD_MS), speech(1.5, seed=5))
    async with httpx.AsyncClient(base_url=one_node.node("n0")["http_url"], timeout=10) as http:
        api = await cluster_api(one_node, http)
        mailbox = await mailbox_at(api, "2025550141", skip_instructions=True)
        sipp = await asyncio.create_subprocess_exec(
            sipp_bin, f"127.0.0.1:{one_node.proxy_port}",
            "-sf", str(SCENARIO), "-s", "+12025550141", "-m", "1", "-l", "1",
            "-t", "t1", "-i", "127.0.0.1", "-p", str(free_sip_port()),
            "-mp", str(sip_rig.free_udp_port()), "-d", str(LEAD_MS + 2000),
            "-timeout", "60s", "-recv_timeout", "20000", "-nostdin",
            "-trace_msg", "-message_file", str(work / "messages.log"),
            "-trace_err", "-error_file", str(work / "errors.log"),
            cwd=work, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            async with asyncio.timeout(90):
                code = await sipp.wait()
        finally:
            if sipp.returncode is None:
                sipp.kill()
                await sipp.wait()
        messages = (work / "messages.log").read_text(errors="replace")
        assert code == 0, messages[-4000:]
        assert re.search(r"^INVITE sip:\S+ SIP/2\.0$", messages, flags=re.M)
        assert "SIP/2.0/TCP 127.0.0.1" in messages  # the caller's Via: it spoke TCP
        await wait_until(
            lambda: bool(_stored(one_node, mailbox["id"])), "the message stored", bound=60
        )


def _stored(cluster: Cluster, mailbox_id: str) -> int:
    async def count() -> int:
        pg = cluster.env["AFTERBEEP_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(pg)
        try:
            found = await conn.fetchval(
                "SELECT count(*) FROM messages WHERE mailbox_id = $1", mailbox_id
            )
        finally:
            await conn.close()
        return int(found)

    return asyncio.run(count())


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


@pytest.mark.timeout(120)
async def test_kill_9_of_the_supervisor_stops_its_nodes_and_kamailio(one_node: Cluster) -> None:
    """(Ends the module's cluster: the last test of the file.) The children get SIGTERM from
    the kernel when their parent dies: the node drains and exits, so does Kamailio."""
    status = one_node.status()
    pids = [status["proxy"]["pid"], *(n["pid"] for n in status["nodes"])]
    assert all(not _gone(pid) for pid in pids)
    one_node.process.kill()
    await asyncio.to_thread(one_node.process.wait, 10)
    await wait_until(lambda: all(_gone(pid) for pid in pids), "the children gone", bound=60)
    node_log = await asyncio.to_thread(Path(status["nodes"][0]["log"]).read_text)
    assert "Shutting down" in node_log, node_log[-2000:]  # SIGTERM: uvicorn's orderly stop


# --- what one node changes, the other hears at once (LISTEN/NOTIFY); idle longest -------------


async def next_event(feed: asyncio.Queue[FeedEvent | None]) -> FeedEvent:
    async with asyncio.timeout(30):  # a bound, far past a notification; the poll is at 60 s
        event = await feed.get()
    assert event is not None
    return event


@PG
async def test_work_items_changed_on_one_node_reach_the_other_without_its_poll(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the poll at 60 s, n2's router hears of n1's offer, answer and completion (its
    agents' feed and its memory), and n2's queue engine of a status set on n1."""
    monkeypatch.setattr(work_items_service, "SHARED_POLL_SEC", 60.0)
    async with two_routers(backend, tmp_path) as (n1, n2, _):
        for rig in (n1, n2):
            assert rig.rt.changes is not None and rig.rt.changes.listening.is_set()
            await rig.work.start()
        q = await n1.queue(USER_A)
        await n1.available(USER_A)
        feed = n2.work.subscribe(n2.account_id, USER_A)
        item_id = await n1.place(q)
        offered = await next_event(feed)
        assert (offered.event, offered.item.id) == ("work_item.offered", item_id)
        assert offered.offer is not None
        assert [o.id for o in n2.work.agent_offers(n2.account_id, USER_A)] == [offered.offer.id]
        await n1.work.accept(n1.account_id, USER_A, offered.offer.id)
        assert (await next_event(feed)).event == "work_item.accepted"
        assert [i.id for i in n2.work.agent_items(n2.account_id, USER_A)] == [item_id]
        await n1.work.complete(n1.account_id, USER_A, item_id, None)
        assert (await next_event(feed)).event == "work_item.completed"
        assert n2.work.agent_items(n2.account_id, USER_A) == []
        assert n2.work.notifications >= 3
        assert n1.work.notifications == 0  # nothing changed on n2 (its own are skipped)

        # The agent-state channel: a status set on n1 is in n2's queue engine's memory.
        await service(n1.rt).set_status(n1.account_id, USER_A, AgentStatus.ON_BREAK)
        engine = n2.rt.queue_engine
        await wait_until(
            lambda: (
                engine.floor.agents.get(USER_A) is not None
                and engine.floor.agents[USER_A].status is AgentStatus.ON_BREAK
            ),
            "the status on n2",
            bound=30,
        )
        # An item placed on n2 waits (nobody available); the agent is back, set on n1: the item
        # is offered (n1 heard of it) without either poll.
        waiting = await n2.place(q)
        assert (await n2.item(waiting))[0].state is WorkItemState.PENDING
        await service(n1.rt).set_status(n1.account_id, USER_A, AgentStatus.AVAILABLE)
        offered = await next_event(feed)
        assert (offered.event, offered.item.id) == ("work_item.offered", waiting)


@PG
async def test_idle_longest_is_the_same_on_every_node(backend: Backend, tmp_path: Path) -> None:
    """A became available before B, then handled an item on n1; n2, which never saw it busy,
    offers the next item of a longest-idle queue to B, idle longest by the stored time."""
    start = datetime.now(UTC) - timedelta(hours=1)  # the agents became available an hour ago
    async with two_routers(backend, tmp_path, start) as (n1, n2, _):
        only_a = await n1.queue(USER_A)
        both = await n1.queue(USER_A, USER_B, strategy=QueueStrategy.LONGEST_IDLE)
        await n1.available(USER_A, USER_B)
        item_id = await n1.place(only_a)
        offer = (await n1.item(item_id))[1][-1]
        await n1.work.accept(n1.account_id, USER_A, offer.id)
        await n1.work.complete(n1.account_id, USER_A, item_id, None)
        s = t.agent_states.c
        async with n2.rt.db.begin() as conn:
            idle = (
                await conn.execute(select(s.idle_since).where(s.user_id == USER_A))
            ).scalar_one()
        assert idle is not None and idle > start + timedelta(minutes=30)  # the database's clock
        item, _ = await n2.item(await n2.place(both))
        assert item.agent_id == USER_B


@PG
async def test_a_node_whose_listening_connection_is_cut_reads_what_it_missed_when_back(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(work_items_service, "SHARED_POLL_SEC", 60.0)
    monkeypatch.setattr(notify_module, "RECONNECT_SEC", 60.0)  # back when the test says
    async with two_routers(backend, tmp_path) as (n1, n2, _):
        for rig in (n1, n2):
            await rig.work.start()
        q = await n1.queue(USER_A)
        await n1.available(USER_A)
        listener = n2.rt.changes
        assert listener is not None and listener.backend_pid is not None
        feed = n2.work.subscribe(n2.account_id, USER_A)
        database = n2.rt.settings.database_url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(database)
        try:
            cut = listener.backend_pid
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", cut)
        finally:
            await conn.close()
        await wait_until(lambda: not listener.listening.is_set(), "the cut seen", bound=30)
        heard = n2.work.notifications
        item_id = await n1.place(q)  # while n2 does not listen: its notification is lost
        await asyncio.sleep(0)
        assert feed.empty() and n2.work.notifications == heard
        listener.retry_now()
        offered = await next_event(feed)  # read again once listening
        assert (offered.event, offered.item.id) == ("work_item.offered", item_id)
        assert listener.listening.is_set() and listener.backend_pid != cut
