"""The ringless delivery engine against real peers on 127.0.0.1: local deposit, SIP deposit
between two afterbeep runtimes, a busy far end, rules that skip or hold, and a crash mid-delivery.

Sends, setups and use cases are written straight into the tables (the API that writes them is
tested on its own); time is a fake clock moved by hand, and workers are driven with `run_once()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import insert, select

from afterbeep.app import Runtime
from afterbeep.audio.compare import compare
from afterbeep.audio.rendition import read_wav_pcm
from afterbeep.config import Settings
from afterbeep.db import tables as t
from afterbeep.domain.ids import new_id
from afterbeep.domain.messages import Message, RecordedCall
from afterbeep.services.delivery import lease_for
from afterbeep.telephony.interface import Audio
from afterbeep.telephony.sip.errors import SipTransportError
from tests.conftest import Backend, make_settings
from tests.e2e.rig import NUMBER, Api, api_of, rtp_range, sent, speech
from tests.ringless.support import (
    SENDER,
    insert_accepted_send,
    insert_media,
    insert_setup,
    insert_use_case,
)

OTHER = "+12025550188"  # a recipient no afterbeep holds
WAIT = 30.0
SQLITE = pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    def set(self, now: datetime) -> None:
        self._now = now


NOON_EDT = datetime(2026, 6, 1, 16, 0, tzinfo=UTC)  # 12:00 in Washington DC


async def started(
    backend: Backend, clock: FakeClock | None, *, workers: bool, sip: bool, **overrides: Any
) -> Runtime:
    """A started Runtime; a SIP port taken meanwhile by another process is chosen again."""
    for attempt in range(3):
        rt = Runtime(settings_for(backend, **overrides), clock=clock)
        try:
            await rt.start(workers=workers)
            if sip and not workers:
                await rt.start_telephony()
        except SipTransportError:
            await rt.stop()
            if attempt == 2:
                raise
            continue
        return rt
    raise AssertionError("unreachable")


@contextlib.asynccontextmanager
async def runtime_of(
    backend: Backend,
    clock: FakeClock | None,
    *,
    sip: bool = False,
    workers: bool = False,
    **overrides: Any,
) -> AsyncIterator[Runtime]:
    rt = await started(backend, clock, workers=workers, sip=sip, **overrides)
    try:
        yield rt
    finally:
        await rt.stop()


def settings_for(backend: Backend, **overrides: Any) -> Settings:
    low, high = rtp_range()
    return make_settings(
        backend,
        sip_addr="127.0.0.1:0",
        rtp_port_min=low,
        rtp_port_max=high,
        smtp_url="smtp://127.0.0.1:9",
        **overrides,
    )


async def account_id_of(rt: Runtime, api: Api) -> str:
    """The account `api_of` just created: the newest one (ids sort by creation time)."""
    del api
    async with rt.db.begin() as conn:
        query = select(t.accounts.c.id).order_by(t.accounts.c.id.desc()).limit(1)
        return str((await conn.execute(query)).scalar_one())


async def ringless_setup(
    rt: Runtime,
    account_id: str,
    audio: Audio,
    *,
    deposit_uri: str = "sip:{to}@127.0.0.1:9",
    require_consent: bool = False,
    max_attempts: int = 3,
    backoff: int = 60,
    calls_per_second: float = 50.0,
    max_concurrent: int = 10,
    cap_attempts: int = 10,
) -> tuple[str, str, str]:
    """A setup (SENDER verified), a use case and a media; (setup_id, use_case_id, media_id)."""
    setup_id = await insert_setup(
        rt,
        account_id,
        deposit_uri=deposit_uri,
        deposit_headers={"X-Campaign": "spring"},
        calls_per_second=calls_per_second,
        max_concurrent=max_concurrent,
    )
    uc_id = await insert_use_case(
        rt,
        account_id,
        setup_id,
        channel="ringless_voicemail",
        name="reminders",
        require_consent=require_consent,
        window=("08:00", "21:00"),
        max_attempts=max_attempts,
        backoff=backoff,
        cap_attempts=cap_attempts,
    )
    media_id = await insert_media(rt, account_id, audio, name="reminder.mp3")
    return setup_id, uc_id, media_id


async def add_send(
    rt: Runtime, account_id: str, ids: tuple[str, str, str], to: str, foreign_id: str = "f-1"
) -> str:
    setup_id, uc_id, media_id = ids
    return await insert_accepted_send(
        rt, account_id, setup_id, uc_id, media_id, from_e164=SENDER, to=to, foreign_id=foreign_id
    )


async def send_row(rt: Runtime, send_id: str) -> Any:
    async with rt.db.begin() as conn:
        return (
            await conn.execute(select(t.voicemail_sends).where(t.voicemail_sends.c.id == send_id))
        ).one()


async def attempts_of(rt: Runtime, send_id: str) -> list[Any]:
    async with rt.db.begin() as conn:
        a = t.send_attempts.c
        query = select(t.send_attempts).where(a.send_id == send_id).order_by(a.number)
        return list((await conn.execute(query)).all())


async def status_events(rt: Runtime) -> list[dict[str, Any]]:
    async with rt.db.begin() as conn:
        d = t.webhook_deliveries.c
        rows = (await conn.execute(select(d.payload).where(d.event == "voicemail.status"))).all()
    return [json.loads(row.payload)["data"] for row in rows]


class SipPeer(asyncio.DatagramProtocol):
    """A far end on UDP that answers every INVITE with `code` and counts them (ACKs absorbed)."""

    def __init__(self, code: int = 486, reason: str = "Busy Here") -> None:
        self.code, self.reason = code, reason
        self.invites = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        text = data.decode(errors="replace")
        if not text.startswith("INVITE "):
            return
        self.invites += 1
        head = text.split("\r\n\r\n", 1)[0].split("\r\n")
        keep = ("via", "from", "to", "call-id", "cseq")
        lines = [f"SIP/2.0 {self.code} {self.reason}"]
        for line in head[1:]:
            name = line.split(":", 1)[0].strip().lower()
            if name in keep:
                lines.append(line + (";tag=peer1" if name == "to" and "tag=" not in line else ""))
        lines += ["Content-Length: 0", "", ""]
        assert self.transport is not None
        self.transport.sendto("\r\n".join(lines).encode(), addr)


@contextlib.asynccontextmanager
async def sip_peer(
    code: int = 486, reason: str = "Busy Here"
) -> AsyncIterator[tuple[SipPeer, int]]:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(
        lambda: SipPeer(code, reason), local_addr=("127.0.0.1", 0)
    )
    try:
        yield peer, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


async def add_status_webhook(api: Api) -> None:
    await api.post(
        "/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["voicemail.status"]}
    )


# --- tests ------------------------------------------------------------------------------------


async def test_local_deposit_lands_in_the_mailbox(backend: Backend) -> None:
    clock = FakeClock(NOON_EDT)
    audio = speech(10.0, seed=3)
    async with (
        runtime_of(backend, clock, webhook_allowed_hosts="127.0.0.1") as rt,
        api_of(rt) as api,
    ):
        await add_status_webhook(api)
        mailbox = await api.mailbox()
        account_id = await account_id_of(rt, api)
        ids = await ringless_setup(rt, account_id, audio)
        send_id = await add_send(rt, account_id, ids, NUMBER)

        assert await rt.delivery().run_once() == 1

        row = await send_row(rt, send_id)
        assert (row.status, row.method, row.attempts) == ("delivered", "local_deposit", 1)
        messages = await api.messages(mailbox["id"])
        assert len(messages) == 1
        assert messages[0]["caller"] == SENDER
        result = compare(audio, await api.audio(messages[0]["id"]))
        assert result.snr_db > 40 and result.missing_head_ms == result.missing_tail_ms == 0
        (attempt,) = await attempts_of(rt, send_id)
        assert (attempt.outcome, attempt.method) == ("delivered", "local_deposit")
        events = await status_events(rt)
        assert events == [
            {
                "voicemail_id": send_id,
                "status": "delivered",
                "failure_reason": None,
                "skip_reason": None,
                "to": NUMBER,
                "foreign_id": "f-1",
                "use_case_id": ids[1],
            }
        ]


@SQLITE
async def test_sip_deposit_between_two_afterbeeps(backend: Backend, tmp_path: Any) -> None:
    clock = FakeClock(NOON_EDT)
    audio = speech(10.0, seed=5)
    backend_b = Backend(backend.name, {**backend.env, "data_dir": tmp_path / "var-b"})
    async with runtime_of(backend_b, None, workers=True, deposit_peers="127.0.0.1") as rt_b:
        assert rt_b.telephony is not None and rt_b.telephony.udp_port is not None
        async with api_of(rt_b, "Receiver") as api_b:
            mailbox = await api_b.mailbox()
            uri = f"sip:{{to}}@127.0.0.1:{rt_b.telephony.udp_port}"
            async with (
                runtime_of(backend, clock, sip=True) as rt_a,
                api_of(rt_a, "Sender") as api_a,
            ):
                account_a = await account_id_of(rt_a, api_a)
                ids = await ringless_setup(rt_a, account_a, audio, deposit_uri=uri)
                send_id = await add_send(rt_a, account_a, ids, NUMBER)
                async with asyncio.timeout(WAIT):
                    assert await rt_a.delivery().run_once() == 1
                row = await send_row(rt_a, send_id)
                assert (row.status, row.method) == ("delivered", "sip_deposit"), row
                (attempt,) = await attempts_of(rt_a, send_id)
                assert attempt.sip_code == 200 and attempt.duration_ms >= 10_000
            messages = await api_b.wait_messages(mailbox["id"], 1)
            assert messages[0]["caller"] == SENDER
            assert messages[0]["call_id"] == f"rvm_{send_id}"
            result = compare(sent(audio), await api_b.audio(messages[0]["id"]))
            assert result.snr_db > 30, result
            assert result.missing_head_ms < 100 and result.missing_tail_ms < 100, result
            assert rt_b.deposit_receiver is not None and rt_b.deposit_receiver.received == 1


@SQLITE
async def test_busy_far_end_is_retried_then_fails(backend: Backend) -> None:
    clock = FakeClock(NOON_EDT)
    async with (
        sip_peer(486, "Busy Here") as (peer, port),
        runtime_of(backend, clock, sip=True) as rt,
        api_of(rt) as api,
    ):
        account_id = await account_id_of(rt, api)
        ids = await ringless_setup(
            rt,
            account_id,
            speech(10.0),
            deposit_uri=f"sip:{{to}}@127.0.0.1:{port}",
            max_attempts=3,
            backoff=60,
        )
        send_id = await add_send(rt, account_id, ids, OTHER)
        worker = rt.delivery()
        statuses = []
        for wait in (0, 59, 1, 119, 1):  # backoff doubles: 60 s, then 120 s
            clock.advance(wait)
            async with asyncio.timeout(WAIT):
                await worker.run_once()
            statuses.append(((await send_row(rt, send_id)).status, peer.invites))
        assert statuses == [
            ("accepted", 1),
            ("accepted", 1),
            ("accepted", 2),
            ("accepted", 2),
            ("failed", 3),
        ]
        row = await send_row(rt, send_id)
        assert row.failure_reason == "486 Busy Here" and row.attempts == 3
        attempts = await attempts_of(rt, send_id)
        assert [a.sip_code for a in attempts] == [486, 486, 486]
        assert all(a.outcome == "not_delivered" for a in attempts)


@SQLITE
async def test_suppressed_and_unconsented_sends_are_skipped_without_a_call(
    backend: Backend,
) -> None:
    clock = FakeClock(NOON_EDT)
    async with (
        sip_peer(200, "OK") as (peer, port),
        runtime_of(backend, clock, sip=True) as rt,
        api_of(rt) as api,
    ):
        account_id = await account_id_of(rt, api)
        uri = f"sip:{{to}}@127.0.0.1:{port}"
        consenting = await ringless_setup(
            rt, account_id, speech(10.0), deposit_uri=uri, require_consent=True
        )
        free = await ringless_setup(rt, account_id, speech(10.0), deposit_uri=uri)
        now = clock.now()
        async with rt.db.begin() as conn:
            await conn.execute(
                insert(t.suppressions).values(
                    id=new_id("sup"),
                    account_id=account_id,
                    e164=OTHER,
                    reason="opt-out",
                    created_at=now,
                )
            )
        suppressed = await add_send(rt, account_id, free, OTHER)
        no_consent = await add_send(rt, account_id, consenting, "+12025550199")
        assert await rt.delivery().run_once() == 2
        a, b = await send_row(rt, suppressed), await send_row(rt, no_consent)
        assert (a.status, a.skip_reason) == ("skipped", "suppressed")
        assert (b.status, b.skip_reason) == ("skipped", "no_consent")
        assert await attempts_of(rt, suppressed) == []
        assert await attempts_of(rt, no_consent) == []
        await asyncio.sleep(0.2)
        assert peer.invites == 0


@SQLITE
async def test_outside_the_window_is_held_then_released(backend: Backend) -> None:
    early = datetime(2026, 6, 1, 7, 0, tzinfo=UTC)  # 03:00 in Washington DC
    opens = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # 08:00 there
    clock = FakeClock(early)
    async with runtime_of(backend, clock) as rt, api_of(rt) as api:
        mailbox = await api.mailbox()
        account_id = await account_id_of(rt, api)
        ids = await ringless_setup(rt, account_id, speech(10.0))
        send_id = await add_send(rt, account_id, ids, NUMBER)
        worker = rt.delivery()
        assert await worker.run_once() == 1
        row = await send_row(rt, send_id)
        assert (row.status, row.attempts, row.next_attempt_at) == ("accepted", 0, opens)
        assert row.claimed_until is None
        clock.set(opens - timedelta(seconds=1))
        assert await worker.run_once() == 0
        clock.set(opens)
        assert await worker.run_once() == 1
        assert (await send_row(rt, send_id)).status == "delivered"
        assert len(await api.messages(mailbox["id"])) == 1


async def test_a_crash_mid_delivery_is_retried_and_delivered_once(backend: Backend) -> None:
    clock = FakeClock(NOON_EDT)
    audio = speech(10.0, seed=9)
    async with runtime_of(backend, clock) as rt, api_of(rt) as api:
        mailbox = await api.mailbox()
        account_id = await account_id_of(rt, api)
        ids = await ringless_setup(rt, account_id, audio)
        send_id = await add_send(rt, account_id, ids, NUMBER)
        # The first worker claims, starts the attempt, deposits, and dies before recording.
        from afterbeep.db.repos.delivery import SqlDeliveryStore
        from afterbeep.domain.messages import EndedBy, RecordedCall
        from afterbeep.domain.ringless import DeliveryMethod

        store = SqlDeliveryStore(rt.db)
        lease = timedelta(minutes=5)
        (claim,) = await store.claim_due(clock.now(), clock.now() + lease, 10)
        assert await store.begin_attempt(claim, 1, DeliveryMethod.LOCAL_DEPOSIT, clock.now())
        assert rt.deposits is not None
        await rt.deposits.finalize(
            RecordedCall(
                call_id=f"rvm_{send_id}",
                account_id=account_id,
                mailbox_id=mailbox["id"],
                caller=SENDER,
                caller_name=None,
                callee=NUMBER,
                started_at="2026-06-01T16:00:00.000Z",
                ended_by=EndedBy.FINISH_KEY.value,
            ),
            audio,
            recovered=False,
        )

        worker = rt.delivery()
        assert await worker.run_once() == 0  # the dead worker's lease still holds
        assert (await send_row(rt, send_id)).status == "accepted"
        clock.advance(lease.total_seconds() + 1)
        assert await worker.recover() == 1
        assert await worker.run_once() == 1

        row = await send_row(rt, send_id)
        assert (row.status, row.attempts) == ("delivered", 2)
        assert [a.outcome for a in await attempts_of(rt, send_id)] == ["interrupted", "delivered"]
        messages = await api.messages(mailbox["id"])
        assert len(messages) == 1


@SQLITE


async def trunk_and_use_case(api: Any, **use_case: Any) -> dict[str, Any]:
    """A consent-free use case on a new setup with a dead trunk (port 9) and the fixed SENDER."""
    setup = await api.post(
        "/v1/telephony-setups",
        {
            "name": "trunk",
            "trunk_host": "127.0.0.1",
            "trunk_port": 9,
            "transport": "udp",
            "max_calls_per_second": 5,
            "max_concurrent_calls": 2,
            "numbers": [{"e164": SENDER}],
            "deposit_uri": "sip:{to}@127.0.0.1:9",
        },
    )
    await api.verify_sender(SENDER)
    created = await api.post(
        "/v1/use-cases",
        {
            "channel": "ringless_voicemail",
            "name": "reminders",
            "setup_id": setup["id"],
            "sender_selection": "fixed",
            "sender_number": SENDER,
            "require_consent": False,
            **use_case,
        },
    )
    return created


async def test_a_send_through_the_api_wakes_the_worker_and_is_delivered(backend: Backend) -> None:
    from tests.ringless.support import audio as mp3

    async with runtime_of(backend, None, workers=True) as rt, api_of(rt) as api:
        mailbox = await api.mailbox()
        use_case = await trunk_and_use_case(
            api, calling_window={"start": "00:00", "end": "00:00"}
        )
        response = await api.http.post(
            "/v1/voicemails",
            files={"audio": ("reminder.mp3", mp3(12), "audio/mpeg")},
            data={"to": NUMBER, "use_case_id": use_case["id"]},
            headers=api.headers,
        )
        assert response.status_code == 202, response.text
        send_id = response.json()["id"]
        (message,) = await api.wait_messages(mailbox["id"], 1)
        for _ in range(int(WAIT / 0.05)):
            detail = (await api.http.get(f"/v1/voicemails/{send_id}", headers=api.headers)).json()
            if detail["status"] != "accepted":
                break
            await asyncio.sleep(0.05)
        assert detail["status"] == "delivered", detail
        row = await send_row(rt, send_id)
        async with rt.db.begin() as conn:
            key = (
                await conn.execute(
                    select(t.media.c.telephony_key).where(t.media.c.id == row.media_id)
                )
            ).scalar_one()
        assert rt.store is not None
        reference, _ = read_wav_pcm(await rt.store.get_bytes(key))
        result = compare(reference, await api.audio(message["id"]))
        assert result.snr_db > 40 and result.missing_head_ms == result.missing_tail_ms == 0


async def test_fifty_sends_survive_a_worker_killed_mid_batch(backend: Backend) -> None:
    """The worker dies (no stop, no release) with sends in flight; a new process after the
    lease delivers every one, and no mailbox gets a message twice."""
    clock = FakeClock(NOON_EDT)
    settings = settings_for(backend, delivery_batch_size=20)
    rt = Runtime(settings, clock=clock)
    await rt.start(workers=False)
    async with api_of(rt) as api:
        mailbox = await api.mailbox()
        account_id = await account_id_of(rt, api)
        ids = await ringless_setup(rt, account_id, speech(10.0, seed=2), cap_attempts=100)
        sends = [await add_send(rt, account_id, ids, NUMBER, f"f-{i}") for i in range(50)]
        # Ten deposits are stored; the attempts after them hang mid-deposit, leases held.
        deposits = rt.deposits
        assert deposits is not None
        store, stored, held = deposits.finalize, 0, 0

        async def finalize(meta: RecordedCall, audio: Audio, recovered: bool) -> Message | None:
            nonlocal stored, held
            if stored >= 10:
                held += 1
                await asyncio.Event().wait()
            stored += 1
            return await store(meta, audio, recovered)

        deposits.finalize = finalize  # type: ignore[method-assign]
        doomed = asyncio.create_task(rt.delivery().run_once())
        async with asyncio.timeout(WAIT):
            while not doomed.done() and not (  # noqa: ASYNC110  (no event to wait on)
                held and len(await api.messages(mailbox["id"])) == 10
            ):
                await asyncio.sleep(0.01)
        assert not doomed.done()
        doomed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await doomed
        async with rt.db.begin() as conn:
            s = t.voicemail_sends.c
            leased = await conn.execute(
                select(s.id).where(s.status == "accepted", s.claimed_until.is_not(None))
            )
            assert leased.all(), "the kill left no send in flight"
    rt.delivery_worker = None  # killed: its claims are never handed back
    await rt.stop()

    clock.advance(lease_for(settings.delivery_ring_timeout_seconds).total_seconds() + 1)
    async with runtime_of(backend, clock) as rt2:
        worker = rt2.delivery()
        await worker.recover()
        async with asyncio.timeout(WAIT):
            await worker.run_once()
        async with rt2.db.begin() as conn:
            s = t.voicemail_sends.c
            statuses = dict(
                (await conn.execute(select(s.id, s.status).where(s.id.in_(sends)))).all()
            )
            calls = (await conn.execute(select(t.messages.c.call_id))).scalars().all()
        assert set(statuses.values()) == {"delivered"}, statuses
        assert sorted(calls) == sorted(f"rvm_{send_id}" for send_id in sends)
