"""Issue 23: what a node does works from any node. Two runtimes (nodes `n1` and `n2`) share one
fresh PostgreSQL database and one S3 store, as two `afterbeep serve` of a cluster do.

Queues: callers waiting on either node stand in one line (positions counted across nodes, the
longest-waiting caller offered first), an agent is offered one caller at a time whichever node
or queue asks, and the rows of a node that stopped renewing them expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from sqlalchemy import func, literal, select, update
from sqlalchemy.types import Interval

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from afterbeep.db.repos.delivery import SqlDeliveryStore
from afterbeep.db.repos.queue_floor import SqlQueueFloor
from afterbeep.domain.clock import iso
from afterbeep.domain.ids import new_id
from afterbeep.domain.mwi import WaitingCounts
from afterbeep.domain.queues import (
    AgentStatus,
    Queue,
    QueueMember,
    QueueSettings,
    QueueStrategy,
)
from afterbeep.domain.transcripts import Segment, Transcript
from afterbeep.domain.voicemail_sequence import Delivery
from afterbeep.services.delivery import (
    START_WITHIN,
    AttemptResult,
    DeliveryService,
    SipDeposit,
    lease_for,
)
from afterbeep.services.mailboxes import MailboxService
from afterbeep.services.queues import HOLD_LEASE
from afterbeep.services.voicemail_sequence import SequenceWorker, Target
from afterbeep.services.webhooks import WebhookService
from afterbeep.telephony.delivery_worker import DeliveryWorker
from afterbeep.telephony.interface import EndedBy
from afterbeep.telephony.mwi import MwiNotifier
from afterbeep.telephony.server import TelephonyServer, telephony_configs
from afterbeep.telephony.spool import SpoolMeta
from tests.conftest import Backend, make_settings
from tests.e2e.rig import (
    CALLER,
    DIALLED,
    NUMBER,
    Api,
    api_of,
    deposit_runtime,
    rtp_range,
    sip_port,
)
from tests.e2e.test_pbx_calls import RingingPhone, set_status, stats, until
from tests.e2e.test_registration import PASSWORD, Phone, make_device
from tests.fixtures.smtp import smtp_server
from tests.notify.test_webhook_dispatch import Receiver
from tests.ringless.support import audio as mp3
from tests.services.test_voicemail_sequence import API_NAME, FarEnd
from tests.sip.peer import RawPeer, header, status_of
from tests.telephony.test_mwi import ACC, VM, counts_in
from tests.telephony.test_mwi import Clock as MwiClock
from tests.telephony.test_mwi import Sender as MwiSender
from tests.telephony.test_mwi import Store as MwiStore
from tests.telephony.test_mwi import contact as mwi_contact

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
    backend: Backend,
    tmp_path: Path,
    clock: FakeClock | None = None,
    engine: Any = None,
    **overrides: Any,
) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """Two started runtimes (no workers) on the backend's database and store; `engine`: the
    transcription engine both use."""
    nodes = []
    try:
        for node_id in ("n1", "n2"):
            settings = make_settings(
                backend,
                **{
                    "node_id": node_id,
                    "data_dir": tmp_path / f"var-{node_id}",
                    "sip_addr": "127.0.0.1:0",
                    "smtp_url": "smtp://127.0.0.1:9",
                    **overrides,
                },
            )
            factory = None if engine is None else (lambda _settings: engine)
            rt = Runtime(settings, clock=clock, engine_factory=factory)
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


async def age_leases(rt: Runtime, lapse: timedelta) -> None:
    """As if `lapse` passed on the database's clock for every caller's row and agent's hold."""
    c, s = t.queue_callers.c, t.agent_states.c
    by = literal(lapse, Interval())
    async with rt.db.begin() as conn:
        await conn.execute(update(t.queue_callers).values(expires_at=c.expires_at - by))
        await conn.execute(
            update(t.agent_states)
            .where(s.held_until.is_not(None))
            .values(held_until=s.held_until - by)
        )


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
        assert not await eb.anyone_waiting(account_id, queue.id)
        assert await ea.join(queue, "on-n1") is None
        assert await eb.anyone_waiting(account_id, queue.id)  # so n2 refuses to delete it
        assert (await ea.step(queue, "on-n1")).offer == (agent,)
        clock.advance(1)
        assert await eb.join(queue, "on-n2") is None
        step = await eb.step(queue, "on-n2")
        assert (step.position, step.offer) == (2, ())

        # n1 dies: it renews nothing more. Within the lease its caller and hold still count.
        # (Leases run on the database's clock: time passes for them by moving them back.)
        await age_leases(b, HOLD_LEASE / 2)
        await eb.renew()
        assert (await eb.step(queue, "on-n2")).offer == ()
        await age_leases(b, HOLD_LEASE / 2 + timedelta(seconds=1))
        assert (await eb.step(queue, "on-n2")).offer == (agent,)
        assert await hold_of(b, account_id, agent) == ("offering", "on-n2", "n2")
        async with b.db.begin() as conn:
            tickets = (await conn.execute(select(t.queue_callers.c.ticket))).scalars().all()
        assert tickets == ["on-n2"]
        await eb.left(queue, "on-n2", None, hung_up=True)


# --- ringless delivery ------------------------------------------------------------------------

SENDS = 200
SENDER = "+12025550177"


class Carrier:
    """The far end of both nodes' SIP deposits: takes each at once and counts it, by node."""

    def __init__(self, expected: int) -> None:
        self.calls: list[tuple[str, str]] = []  # (node, send id)
        self.expected = expected
        self.all_in = asyncio.Event()

    def dialer(self, node: str) -> Any:
        carrier = self

        class Dialer:
            async def sip_deposit(self, deposit: SipDeposit) -> AttemptResult:
                carrier.calls.append((node, deposit.send_id))
                if len(carrier.calls) >= carrier.expected:
                    carrier.all_in.set()
                await asyncio.sleep(0.005)  # the other node's worker gets its turn meanwhile
                return AttemptResult(True, 200, None, 10_000)

        return Dialer()


def delivery_worker(rt: Runtime, dialer: Any) -> DeliveryWorker:
    """The node's delivery worker as `Runtime.delivery` builds it, its SIP side the carrier."""
    assert rt.store is not None and rt.deposits is not None
    service = DeliveryService(
        SqlDeliveryStore(rt.db), rt.store, rt.clock, rt.call_router(), rt.deposits, dialer
    )
    return DeliveryWorker(
        SqlDeliveryStore(rt.db),
        service,
        rt.clock,
        lease=lease_for(rt.settings.delivery_ring_timeout_seconds),
        batch_size=10,
        limits=rt.trunk_limits,
        start_within=START_WITHIN,
    )


async def ringless_use_case(api: Api) -> tuple[str, str]:
    """A consent-free ringless use case on a trunk nobody answers (the carrier is faked) and a
    media: (use case id, media id)."""
    setup = await api.post(
        "/v1/telephony-setups",
        {
            "name": "trunk",
            "trunk_host": "127.0.0.1",
            "trunk_port": 9,
            "transport": "udp",
            "max_calls_per_second": 1000,
            "max_concurrent_calls": 20,
            "numbers": [{"e164": SENDER}],
            "deposit_uri": "sip:{to}@127.0.0.1:9",
        },
    )
    await api.verify_sender(SENDER)
    use_case = await api.post(
        "/v1/use-cases",
        {
            "channel": "ringless_voicemail",
            "name": "reminders",
            "setup_id": setup["id"],
            "sender_selection": "fixed",
            "sender_number": SENDER,
            "require_consent": False,
            "calling_window": {"start": "00:00", "end": "00:00"},
        },
    )
    media = await api.http.post(
        "/v1/media", files={"file": ("m.mp3", mp3(11))}, headers=api.headers
    )
    assert media.status_code == 201, media.text
    return str(use_case["id"]), str(media.json()["id"])


@contextlib.asynccontextmanager
async def api_on(rt: Runtime, api: Api) -> AsyncIterator[Api]:
    """The same account's API, served by another node."""
    transport = httpx.ASGITransport(app=rt.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://afterbeep.test") as http:
        yield Api(http, api.headers, api.account_id)


@PG
async def test_ringless_sends_made_on_both_nodes_are_delivered_once_each(
    backend: Backend, tmp_path: Path
) -> None:
    async with (
        two_nodes(backend, tmp_path) as (a, b),
        api_of(a) as api_a,
        api_on(b, api_a) as api_b,
    ):
        use_case_id, media_id = await ringless_use_case(api_a)
        sends = []
        for i in range(SENDS):  # half through each node's API
            api = (api_a, api_b)[i % 2]
            body = {
                "to": f"+1202555{1000 + i}",
                "use_case_id": use_case_id,
                "media_id": media_id,
            }
            sends.append((await api.post("/v1/voicemails", body, status=202))["id"])

        carrier = Carrier(SENDS)
        workers = [
            delivery_worker(a, carrier.dialer("n1")),
            delivery_worker(b, carrier.dialer("n2")),
        ]
        for worker in workers:
            await worker.start()
        try:
            async with asyncio.timeout(120):
                await carrier.all_in.wait()
        finally:
            for worker in workers:
                await worker.stop(10.0)

        delivered = [send_id for _, send_id in carrier.calls]
        assert sorted(delivered) == sorted(sends)  # each once
        by_node = {node: sum(1 for n, _ in carrier.calls if n == node) for node in ("n1", "n2")}
        assert by_node["n1"] and by_node["n2"], by_node
        s, at = t.voicemail_sends.c, t.send_attempts.c
        async with a.db.begin() as conn:
            statuses = set((await conn.execute(select(s.status).where(s.id.in_(sends)))).scalars())
            attempts = (
                await conn.execute(select(func.count()).select_from(t.send_attempts))
            ).scalar_one()
            per_send = (
                await conn.execute(select(at.send_id).group_by(at.send_id).having(func.count() > 1))
            ).all()
        assert statuses == {"delivered"}
        assert (attempts, per_send) == (SENDS, [])


# --- webhook outbox ---------------------------------------------------------------------------

EVENTS = 20


@PG
async def test_a_webhook_is_sent_once_with_both_nodes_dispatching(
    backend: Backend, tmp_path: Path
) -> None:
    receiver = Receiver()
    await receiver.start()
    try:
        async with two_nodes(backend, tmp_path) as (a, b):
            issued = await a.accounts.create_account("Acme")
            await WebhookService(a.uow, a.clock).create(
                issued.account_id, receiver.url, ("message.created",), "s" * 32
            )
            dispatchers = [rt.dispatcher for rt in (a, b)]
            for dispatcher in dispatchers:
                assert dispatcher is not None
                await dispatcher.start()
            for i in range(EVENTS):
                async with (a, b)[i % 2].uow() as uow:
                    await uow.events.publish(
                        issued.account_id, "message.created", {"message_id": f"msg_{i}"}
                    )
                for dispatcher in dispatchers:
                    assert dispatcher is not None
                    dispatcher.notify()
            await receiver.wait_for(EVENTS)
            async with asyncio.timeout(30):
                while await pending_webhooks(a):  # noqa: ASYNC110  (rows, no event to wait on)
                    await asyncio.sleep(0.05)
            for dispatcher in dispatchers:
                assert dispatcher is not None
                await dispatcher.stop()
        ids = sorted(json.loads(r.body)["data"]["message_id"] for r in receiver.requests)
        assert ids == sorted(f"msg_{i}" for i in range(EVENTS))
    finally:
        await receiver.close()


async def pending_webhooks(rt: Runtime) -> int:
    d = t.webhook_deliveries.c
    async with rt.db.begin() as conn:
        query = (
            select(func.count()).select_from(t.webhook_deliveries).where(d.status != "delivered")
        )
        return int((await conn.execute(query)).scalar_one())


# --- transcription jobs and email outbox ------------------------------------------------------

MESSAGES = 6
OWNER = "owner@clinic.example"


class CountingEngine:
    """A transcription engine (our port) that counts what it is asked, from any thread."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def transcribe(self, audio: npt.NDArray[np.int16], language: str) -> Transcript:
        with self._lock:
            self.calls.append(len(audio))
        ms = len(audio) // 8
        return Transcript("call me back", language, (Segment(0, ms, "call me back", 0.9),), 0.9)


async def leave_message(rt: Runtime, account_id: str, mailbox_id: str, index: int) -> str:
    assert rt.deposits is not None
    meta = SpoolMeta(
        call_id=f"call_{index}",
        account_id=account_id,
        mailbox_id=mailbox_id,
        caller="+12025550123",
        caller_name=None,
        callee="+12025550100",
        started_at=iso(rt.clock.now()),
        ended_by=EndedBy.FINISH_KEY.value,
    )
    rng = np.random.default_rng(index)
    audio = rng.normal(0, 3000, 16_000).clip(-32768, 32767).astype(np.int16)
    message = await rt.deposits.finalize(meta, audio, recovered=False)
    assert message is not None
    return message.id


@PG
async def test_each_transcription_job_and_email_is_done_once_with_both_nodes_working(
    backend: Backend, tmp_path: Path
) -> None:
    engine = CountingEngine()
    with smtp_server() as smtp:
        async with two_nodes(
            backend, tmp_path, engine=engine, transcribe=True, smtp_url=smtp.url()
        ) as (a, b):
            account_id = (await a.accounts.create_account("Acme")).account_id
            assert a.store is not None
            mailbox = await MailboxService(a.uow, a.store, a.clock).create(
                account_id, {"name": "Front desk", "notify_email": OWNER}
            )
            for rt in (a, b):
                await rt.start_transcription()
                assert rt.email_dispatcher is not None
                await rt.email_dispatcher.start()
            left = [
                await leave_message((a, b)[i % 2], account_id, mailbox.mailbox.id, i)
                for i in range(MESSAGES)
            ]
            async with asyncio.timeout(60):
                while await unfinished(a):  # noqa: ASYNC110  (rows of two nodes, no one event)
                    await asyncio.sleep(0.05)
        # Both nodes stopped: nothing more can be sent.
        assert len(engine.calls) == MESSAGES
        mails = smtp.messages()
        assert len(mails) == MESSAGES
        ids = sorted(m for mail in mails for m in left if m in mail.raw.decode(errors="replace"))
        assert ids == sorted(left)


async def unfinished(rt: Runtime) -> int:
    j, e = t.transcription_jobs.c, t.email_outbox.c
    async with rt.db.begin() as conn:
        jobs = (
            await conn.execute(
                select(func.count()).select_from(t.transcription_jobs).where(j.status != "done")
            )
        ).scalar_one()
        mails = (
            await conn.execute(
                select(func.count()).select_from(t.email_outbox).where(e.status != "sent")
            )
        ).scalar_one()
        every = (await conn.execute(select(func.count()).select_from(t.email_outbox))).scalar_one()
    return int(jobs) + int(mails) + (MESSAGES - int(every))


# --- registrations ----------------------------------------------------------------------------

CALLED = "+12025550142"


@PG
async def test_a_call_on_one_node_rings_the_device_registered_on_the_other(
    backend: Backend, tmp_path: Path
) -> None:
    """No proxy here: the device's contact is direct (`proxy23` covers the path through it)."""
    phone_peer = await RawPeer.open()
    caller_peer = await RawPeer.open()
    try:
        async with (
            deposit_runtime(
                backend, workers=False, node_id="n1", data_dir=tmp_path / "n1", drain_seconds=0
            ) as a,
            deposit_runtime(
                backend, workers=False, node_id="n2", data_dir=tmp_path / "n2", drain_seconds=0
            ) as b,
            api_of(a) as api,
        ):
            await a.start_telephony()
            await b.start_telephony()
            user_id, _ = await make_device(api, "201", "desk-201")
            await api.post("/v1/numbers", {"e164": CALLED, "dest_kind": "user", "dest_id": user_id})
            desk = Phone(phone_peer, sip_port(a), "desk-201")
            ok = await desk.register(f"Contact: <{desk.contact}>", "Expires: 120")
            assert status_of(ok) == 200, ok.decode()

            caller_peer.send(invite(caller_peer.port, sip_port(b)), sip_port(b))
            rung = await phone_peer.wait_for(lambda d: d.startswith(b"INVITE "), timeout=10.0)
            assert rung is not None, "the device registered on n1 was not rung by n2"
            assert rung.startswith(f"INVITE {desk.contact} SIP/2.0".encode()), rung[:200]
            assert f"127.0.0.1:{sip_port(b)}".encode() in (header(rung, "Via") or "").encode()
    finally:
        phone_peer.close()
        caller_peer.close()


def invite(own_port: int, to_port: int) -> bytes:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {own_port + 2} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    lines = [
        f"INVITE sip:{CALLED}@127.0.0.1:{to_port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{own_port};branch=z9hG4bK{secrets.token_hex(6)};rport",
        f"From: <sip:+12025550123@127.0.0.1>;tag=caller{own_port}",
        f"To: <sip:{CALLED}@127.0.0.1>",
        f"Call-ID: {secrets.token_hex(8)}@127.0.0.1",
        "CSeq: 1 INVITE",
        f"Contact: <sip:caller@127.0.0.1:{own_port}>",
        "Max-Forwards: 70",
        "Content-Type: application/sdp",
        f"Content-Length: {len(sdp)}",
        "",
        sdp,
    ]
    return "\r\n".join(lines).encode()


# --- message waiting --------------------------------------------------------------------------


async def test_the_node_that_sees_a_change_tells_the_phone_what_another_node_told_it_since() -> (
    None
):
    """Counts X sent by n2, Y by n1, then X again by n2: n2 cannot know the phone shows Y, so a
    node of a cluster (`remember_sent=False`, as `Runtime` sets with a node id) sends it."""
    store = MwiStore(contacts=[mwi_contact()], counts_of={(ACC, VM): WaitingCounts(1, 0)})
    sender = MwiSender()  # the phone: every NOTIFY of either node reaches it
    n1, n2 = (
        MwiNotifier(store, sender, MwiClock(), "pbx.example", remember_sent=False) for _ in range(2)
    )
    for node, counts in (
        (n2, WaitingCounts(1, 0)),
        (n1, WaitingCounts(0, 1)),
        (n2, WaitingCounts(1, 0)),
    ):
        store.counts_of[(ACC, VM)] = counts
        node.mailbox_changed(ACC, VM)
        await node.idle()
    assert [counts_in(s) for s in sender.sent] == [
        WaitingCounts(1, 0),
        WaitingCounts(0, 1),
        WaitingCounts(1, 0),
    ]


# --- campaigns --------------------------------------------------------------------------------

RECIPIENTS = 20


@PG
async def test_a_campaign_made_on_one_node_is_paused_and_resumed_on_the_other(
    backend: Backend, tmp_path: Path
) -> None:
    async with (
        two_nodes(backend, tmp_path) as (a, b),
        api_of(a) as api_a,
        api_on(b, api_a) as api_b,
    ):
        use_case_id, media_id = await ringless_use_case(api_a)
        numbers = [f"+1202555{2000 + i}" for i in range(RECIPIENTS)]
        campaign = await api_a.post(
            "/v1/campaigns",
            {"use_case_id": use_case_id, "media_id": media_id, "recipients": numbers},
        )
        paused = await api_b.post(f"/v1/campaigns/{campaign['id']}/pause", {}, status=200)
        assert paused["status"] == "paused"
        carrier = Carrier(RECIPIENTS)
        workers = [
            delivery_worker(a, carrier.dialer("n1")),
            delivery_worker(b, carrier.dialer("n2")),
        ]
        assert await asyncio.gather(*(w.run_once() for w in workers)) == [0, 0]

        resumed = await api_a.post(f"/v1/campaigns/{campaign['id']}/resume", {}, status=200)
        assert resumed["status"] != "paused"
        async with asyncio.timeout(60):
            while len(carrier.calls) < RECIPIENTS:
                await asyncio.gather(*(w.run_once() for w in workers))
        assert await asyncio.gather(*(w.run_once() for w in workers)) == [0, 0]
        s = t.voicemail_sends.c
        async with a.db.begin() as conn:
            rows = (
                await conn.execute(select(s.id, s.status).where(s.campaign_id == campaign["id"]))
            ).all()
        assert sorted(send_id for _, send_id in carrier.calls) == sorted(r.id for r in rows)
        assert {r.status for r in rows} == {"delivered"}
        view = (
            await api_b.http.get(f"/v1/campaigns/{campaign['id']}", headers=api_b.headers)
        ).json()
        assert view["status"] == "completed", view


# --- team voicemail sequence ------------------------------------------------------------------

TEAM_MESSAGES = 4


@PG
async def test_each_team_voicemail_runs_its_sequence_once_with_both_nodes_working(
    backend: Backend, tmp_path: Path
) -> None:
    far = FarEnd()  # the contact center both nodes' sequences talk to

    async def local(delivery: Delivery) -> Target:
        return Target(far, API_NAME)

    async with two_nodes(backend, tmp_path) as (a, b), api_of(a) as api:
        for rt in (a, b):
            rt.sequence_targets.local = local
        queue = await api.post("/v1/queues", {"name": "Support"})
        box = await api.post(
            "/v1/mailboxes",
            {"name": "Support voicemail", "queue_id": queue["id"], "min_message_seconds": 1},
        )
        for i in range(TEAM_MESSAGES):
            await leave_message((a, b)[i % 2], api.account_id, box["id"], i)
        workers = [SequenceWorker(rt.uow, rt.sequence(), rt.clock) for rt in (a, b)]
        async with asyncio.timeout(60):
            while len([op for op in far.ops() if op == "route"]) < TEAM_MESSAGES:
                await asyncio.gather(*(w.run_once() for w in workers))
        assert await asyncio.gather(*(w.run_once() for w in workers)) == [0, 0]
        creates = [key for op, key, _ in far.done if op == "create"]
        assert len(creates) == len(set(creates)) == TEAM_MESSAGES
        assert far.ops().count("route") == TEAM_MESSAGES
        d = t.cc_deliveries.c
        async with a.db.begin() as conn:
            statuses = (await conn.execute(select(d.status))).scalars().all()
        assert statuses == ["done"] * TEAM_MESSAGES


# --- a queue's calls over SIP, on two nodes ---------------------------------------------------


@dataclass
class AgentPhone(RingingPhone):
    """A phone that rings and never answers, and keeps which node (SIP port) sent each INVITE."""

    from_ports: list[int] = field(default_factory=list)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data.startswith(b"INVITE ") and len(self.invites) == len(self.from_ports):
            self.from_ports.append(addr[1])
        super().datagram_received(data, addr)


@PG
async def test_queue_calls_on_two_nodes_ring_their_one_agent_one_at_a_time_in_order(
    backend: Backend, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    _, agent_phone = await loop.create_datagram_endpoint(AgentPhone, local_addr=("127.0.0.1", 0))
    try:
        async with (
            deposit_runtime(
                backend, workers=False, node_id="n1", data_dir=tmp_path / "n1", drain_seconds=0
            ) as a,
            deposit_runtime(
                backend, workers=False, node_id="n2", data_dir=tmp_path / "n2", drain_seconds=0
            ) as b,
            api_of(a) as api,
        ):
            await a.start_telephony()
            await b.start_telephony()
            user_id = await registered_agent(api, a, agent_phone)
            queue = await queue_to(api, user_id, agent_ring_timeout_sec=2)

            low, high = rtp_range()
            ua_config, media_config = telephony_configs("127.0.0.1:0", None, low, high)
            async with TelephonyServer(ua_config, media_config) as callers, api_on(b, api) as api_b:
                first = await (
                    await callers.dial(
                        f"sip:{DIALLED}@127.0.0.1:{sip_port(a)}",
                        f"sip:{CALLER}@127.0.0.1",
                        timeout=10,
                    )
                ).wait_answered()
                await until(
                    lambda: len(agent_phone.invites) == 1, "the agent rung for the caller on n1"
                )
                second = await (
                    await callers.dial(
                        f"sip:{DIALLED}@127.0.0.1:{sip_port(b)}",
                        f"sip:{CALLER}@127.0.0.1",
                        timeout=10,
                    )
                ).wait_answered()
                body = await wait_stats(api_b, queue["id"], waiting=2)  # seen from n2
                assert body["agents_by_state"]["offering"] <= 1, body

                # The agent lets it ring out, again and again: the caller on n1 joined first
                # and stays first, so n2 never offers its caller; one offer rings at a time.
                await until(lambda: len(agent_phone.cancels) >= 3, "three offers rang out")
                rung = len(agent_phone.invites)
                assert set(agent_phone.from_ports) == {sip_port(a)}, agent_phone.from_ports
                pairs = zip(agent_phone.cancels, agent_phone.invites[1:], strict=False)
                assert all(ended <= next_one for ended, next_one in pairs), agent_phone

                await first.hangup()  # the caller on n2 is next
                await until(
                    lambda: sip_port(b) in agent_phone.from_ports, "the agent rung for n2's caller"
                )
                assert agent_phone.from_ports[:rung] == [sip_port(a)] * rung
                await second.hangup()
                await wait_stats(api, queue["id"], waiting=0)
                await wait_stats(api_b, queue["id"], waiting=0)
    finally:
        agent_phone.close()


async def wait_stats(api: Api, queue_id: str, *, waiting: int) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while (body := await stats(api, queue_id))["waiting"] != waiting:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return body


@PG
async def test_a_caller_hanging_up_while_its_offer_rings_cancels_it_at_once(
    backend: Backend, tmp_path: Path
) -> None:
    """The queue application stops the ring as the ring stops its forks: the CANCEL still goes
    (it went only when the node stopped, the agent's phone ringing on meanwhile)."""
    loop = asyncio.get_running_loop()
    _, agent_phone = await loop.create_datagram_endpoint(AgentPhone, local_addr=("127.0.0.1", 0))
    try:
        async with (
            deposit_runtime(
                backend, workers=False, node_id="n1", data_dir=tmp_path / "n1", drain_seconds=0
            ) as a,
            api_of(a) as api,
        ):
            await a.start_telephony()
            user_id = await registered_agent(api, a, agent_phone)
            await queue_to(api, user_id, agent_ring_timeout_sec=60)  # longer than `until` waits
            low, high = rtp_range()
            ua_config, media_config = telephony_configs("127.0.0.1:0", None, low, high)
            async with TelephonyServer(ua_config, media_config) as callers:
                call = await (
                    await callers.dial(
                        f"sip:{DIALLED}@127.0.0.1:{sip_port(a)}",
                        f"sip:{CALLER}@127.0.0.1",
                        timeout=10,
                    )
                ).wait_answered()
                await until(lambda: len(agent_phone.invites) == 1, "the agent rung")
                await call.hangup()
                await until(lambda: len(agent_phone.cancels) == 1, "the offer cancelled")
    finally:
        agent_phone.close()


async def registered_agent(api: Api, rt: Runtime, phone: AgentPhone) -> str:
    """An available agent whose one device registered on `rt` from `phone`."""
    user = await api.post("/v1/users", {"username": "301", "is_agent": True})
    await api.post(
        "/v1/devices", {"user_id": user["id"], "auth_username": "desk-301", "password": PASSWORD}
    )
    registering = Phone(phone, sip_port(rt), "desk-301")
    assert status_of(await registering.register(f"Contact: <{registering.contact}>")) == 200
    await set_status(api, user["id"], "available")
    return str(user["id"])


async def queue_to(api: Api, user_id: str, *, agent_ring_timeout_sec: int) -> dict[str, Any]:
    """A queue of the one agent that NUMBER leads to; offers ring out, never a break."""
    queue = await api.post(
        "/v1/queues",
        {
            "name": "Support",
            "agent_ring_timeout_sec": agent_ring_timeout_sec,
            "max_wait_sec": 0,
            "max_no_answer": 0,
            "wrap_up_sec": 0,
            "announce_position": False,
            "members": [{"user_id": user_id}],
        },
    )
    await api.post("/v1/numbers", {"e164": NUMBER, "dest_kind": "queue", "dest_id": queue["id"]})
    return queue
