"""The seed 002 sequence of a team's voicemail, against a recording in-memory `TelephonyApi` (the
port, as the far end): the real runtime stores the message (SQLite file, or PostgreSQL and S3),
its delivery is run by the sequence worker with an injected clock, failures are injected, and
the runtime is "killed" mid-step and started again on the same data.

What must hold: every step succeeds exactly once, in the seed's order, with the seed's shapes;
retryable failures back off and resume at the failed step; a refusal fails the delivery with its
reason; a message without a transcript (too long, failed, late) still becomes a routed call."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest

from afterbeep.app import Runtime
from afterbeep.domain.messages import Message, RecordedCall
from afterbeep.domain.transcripts import Segment, Transcript, TranscriptionStatus
from afterbeep.domain.voicemail_sequence import Delivery, DeliveryStatus, Step, vendor_call_key
from afterbeep.services.contact_center import Json, TelephonyApiError
from afterbeep.services.voicemail_sequence import SequenceWorker, Target
from tests.conftest import Backend, make_settings

CALLER = "+12025550123"
DIALED = "+12025550100"
API_NAME = "MyContactCenter"


class FakeClock:
    def __init__(self) -> None:
        self._now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


@dataclass
class FarEnd:
    """A Telephony API in memory: keeps what it did (`done`), answers injected failures first
    (`fail[op]`, popped one per call, nothing done), and can hold a call (`hold`) forever."""

    done: list[tuple[str, str, Json]] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)
    fail: dict[str, list[TelephonyApiError | Json]] = field(default_factory=dict)
    hold: str | None = None
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    calls: dict[str, str] = field(default_factory=dict)  # vendorCallKey -> voiceCallId

    def ops(self) -> list[str]:
        return [op for op, _, _ in self.done]

    async def _enter(self, op: str) -> Json | None:
        self.tried.append(op)
        if self.hold == op:
            self.holding.set()
            await asyncio.Event().wait()
        queued = self.fail.get(op)
        if queued:
            failure = queued.pop(0)
            if isinstance(failure, TelephonyApiError):
                raise failure
            return failure
        return None

    async def create_voice_call(self, body: Mapping[str, Any]) -> Json:
        if (answer := await self._enter("create")) is not None:
            return answer
        key = str(body["vendorCallKey"])
        voice_call_id = self.calls.setdefault(key, f"0LQ{len(self.calls) + 1:012d}")
        self.done.append(("create", key, dict(body)))
        return {"voiceCallId": voice_call_id, "errors": []}

    async def update_voice_call(self, key: str, body: Mapping[str, Any]) -> Json:
        if (answer := await self._enter("update")) is not None:
            return answer
        self.done.append(("update", key, dict(body)))
        return {"status": "pending"}

    async def add_messages(self, vendor_call_key: str, body: Mapping[str, Any]) -> Json:
        if (answer := await self._enter("messages")) is not None:
            return answer
        self.done.append(("messages", vendor_call_key, dict(body)))
        return {"result": "Accepted"}

    async def route(self, voice_call_id: str, body: Mapping[str, Any]) -> Json:
        if (answer := await self._enter("route")) is not None:
            return answer
        self.done.append(("route", voice_call_id, dict(body)))
        return {"agent": None, "queue": body.get("fallbackQueue")}


def retryable(status: int) -> TelephonyApiError:
    return TelephonyApiError(status, {"title": f"injected {status}"}, retryable=status >= 500 or status == 429)


@dataclass
class Rig:
    rt: Runtime
    clock: FakeClock
    far: FarEnd
    account_id: str
    headers: dict[str, str]
    http: httpx.AsyncClient
    queue_id: str = ""
    mailbox_id: str = ""

    def worker(self) -> SequenceWorker:
        return SequenceWorker(self.rt.uow, self.rt.sequence(), self.clock, reclaim_on_start=True)

    async def leave(self, *, seconds: float = 3.0) -> Message:
        """A message saved to the team's mailbox, as a call leaves it."""
        assert self.rt.deposits is not None
        meta = RecordedCall(
            call_id=f"call_{secrets.token_hex(8)}",
            account_id=self.account_id,
            mailbox_id=self.mailbox_id,
            caller=CALLER,
            caller_name="Ada",
            callee=DIALED,
            started_at=self.clock.now().isoformat(),
            ended_by="hangup",
        )
        rng = np.random.default_rng(1)
        pcm = rng.normal(0, 3000, int(seconds * 8000)).clip(-32768, 32767).astype(np.int16)
        message = await self.rt.deposits.finalize(meta, pcm, recovered=False)
        assert message is not None
        return message

    async def transcribed(self, message: Message, status: TranscriptionStatus, reason: str | None = None) -> None:
        """What the transcription worker writes when it is done (then it hastens the delivery)."""
        transcript = None
        if status is TranscriptionStatus.DONE:
            transcript = Transcript(
                "Hi, this is John. Please call me back.",
                "en",
                (Segment(200, 1400, " Hi, this is John."), Segment(1500, 2800, " Please call me back.")),
            )
        async with self.rt.uow() as uow:
            await uow.transcripts.set_message(
                self.account_id, message.id, status, transcript, reason, self.clock.now()
            )
            await uow.cc_deliveries.hasten(self.account_id, message.id, self.clock.now())

    async def delivery(self, message: Message) -> Delivery:
        async with self.rt.uow() as uow:
            page = await uow.cc_deliveries.list(
                self.account_id, status=None, message_id=message.id, cursor=None, limit=5
            )
        [found] = page.items
        return found

    async def api(self, path: str) -> Any:
        response = await self.http.get(path, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()


@contextlib.asynccontextmanager
async def running(backend: Backend, clock: FakeClock, far: FarEnd, **settings: Any) -> AsyncIterator[Runtime]:
    rt = Runtime(
        make_settings(backend, transcribe=True, cc_transcript_wait_seconds=120, **settings),
        clock=clock,
    )
    await rt.start(workers=False)

    async def local(delivery: Delivery) -> Target:
        return Target(far, API_NAME)

    rt.sequence_targets.local = local
    try:
        yield rt
    finally:
        await rt.stop()


@contextlib.asynccontextmanager
async def rig_of(rt: Runtime, clock: FakeClock, far: FarEnd, account: tuple[str, str] | None = None) -> AsyncIterator[Rig]:
    if account is None:
        issued = await rt.accounts.create_account("Acme Clinic")
        account = (issued.account_id, issued.secret)
    transport = httpx.ASGITransport(app=rt.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://afterbeep.test") as http:
        yield Rig(rt, clock, far, account[0], {"Authorization": f"Bearer {account[1]}"}, http)


async def team_mailbox(rig: Rig) -> None:
    queue = await rig.http.post("/v1/queues", json={"name": "Support"}, headers=rig.headers)
    assert queue.status_code == 201, queue.text
    rig.queue_id = queue.json()["id"]
    box = await rig.http.post(
        "/v1/mailboxes",
        json={"name": "Support voicemail", "queue_id": rig.queue_id, "min_message_seconds": 1},
        headers=rig.headers,
    )
    assert box.status_code == 201, box.text
    assert box.json()["queue_id"] == rig.queue_id
    rig.mailbox_id = box.json()["id"]


def check_shapes(rig: Rig, message: Message, far: FarEnd, *, transcript: bool) -> None:
    """The seed's sequence, in order, with its fields."""
    key = vendor_call_key(rig.account_id, message.call_id)
    expected = ["create", "update", *(["messages"] if transcript else []), "route", "update"]
    assert far.ops() == expected
    _, _, create = far.done[0]
    assert create["callCenterApiName"] == API_NAME
    assert create["vendorCallKey"] == key
    assert (create["to"], create["from"]) == (DIALED, CALLER)
    assert create["initiationMethod"] == "Inbound"
    assert create["callOrigin"] == "Voicemail"
    assert create["participants"] == [{"participantKey": CALLER, "type": "END_USER"}]
    started = datetime.fromisoformat(create["startTime"].replace("Z", "+00:00"))
    ended = message.created_at
    assert started == ended - timedelta(milliseconds=message.duration_ms)
    assert far.done[1] == ("update", key, {"isActiveCall": True, "callOrigin": "Voicemail"})
    if transcript:
        _, at, body = far.done[2]
        assert at == key
        entries = body["messages"]
        assert [e["content"] for e in entries] == ["Hi, this is John.", "Please call me back."]
        start_ms, end_ms = int(started.timestamp() * 1000), int(ended.timestamp() * 1000)
        for entry in entries:
            assert entry["senderType"] == "END_USER"
            assert entry["participantId"] == CALLER
            assert start_ms <= entry["startTime"] <= entry["endTime"] <= end_ms
        assert len({e["messageId"] for e in entries}) == 2
    _, routed_id, route = far.done[-2]
    assert routed_id == far.calls[key]
    assert route == {"dialedNumber": DIALED, "fallbackQueue": rig.queue_id}
    _, closed_key, close = far.done[-1]
    assert closed_key == key
    assert close["isActiveCall"] is False
    assert close["recordingLocation"].endswith(f"/v1/messages/{message.id}/audio")
    assert close["totalRecordingDuration"] == message.duration_ms / 1000
    assert datetime.fromisoformat(close["endTime"].replace("Z", "+00:00")) == ended


@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
async def test_the_seed_sequence_waits_for_the_transcript_and_runs_each_step_once(backend: Backend) -> None:
    clock, far = FakeClock(), FarEnd()
    async with running(backend, clock, far) as rt, rig_of(rt, clock, far) as rig:
        await team_mailbox(rig)
        message = await rig.leave()
        assert message.transcription_status is TranscriptionStatus.PENDING
        worker = rig.worker()
        assert await worker.run_once() == 1
        # created and kept active; the transcript is not there yet: nothing more
        assert far.ops() == ["create", "update"]
        waiting = await rig.delivery(message)
        assert waiting.steps_done == (Step.CREATE, Step.ACTIVATE)
        assert waiting.status is DeliveryStatus.PENDING and waiting.next_attempt_at > clock.now()
        assert await worker.run_once() == 0
        await rig.transcribed(message, TranscriptionStatus.DONE)
        assert await worker.run_once() == 1
        done = await rig.delivery(message)
        assert done.status is DeliveryStatus.DONE, done
        assert done.steps_done == tuple(Step)
        assert done.routed == {"agent": None, "queue": rig.queue_id}
        assert done.transcript_note == "sent: 2 entries"
        check_shapes(rig, message, far, transcript=True)
        assert await worker.run_once() == 0
        assert len(far.done) == 5
        # every request and answer, on the API
        found = await rig.api(f"/v1/cc-deliveries/{done.id}")
        assert [(x["step"], x["method"], x["status"]) for x in found["exchanges"]] == [
            ("create", "POST", 200),
            ("activate", "PATCH", 200),
            ("transcript", "POST", 200),
            ("route", "PATCH", 200),
            ("close", "PATCH", 200),
        ]
        assert found["exchanges"][0]["answer"]["voiceCallId"] == found["voice_call_id"]
        listed = await rig.api(f"/v1/cc-deliveries?message_id={message.id}")
        assert [d["id"] for d in listed["items"]] == [done.id]


@pytest.mark.parametrize("backend", ["sqlite-local", "postgres-s3"], indirect=True)
async def test_failures_back_off_and_a_restart_resumes_without_repeating_a_step(backend: Backend) -> None:
    clock, far = FakeClock(), FarEnd()
    far.fail["create"] = [retryable(503), retryable(500)]
    far.fail["route"] = [retryable(429)]
    far.hold = "messages"  # the process dies while the transcript is being sent
    async with running(backend, clock, far) as rt, rig_of(rt, clock, far) as rig:
        await team_mailbox(rig)
        account = (rig.account_id, rig.headers["Authorization"].removeprefix("Bearer "))
        message = await rig.leave()
        await rig.transcribed(message, TranscriptionStatus.DONE)
        worker = rig.worker()
        for failures in (1, 2):
            assert await worker.run_once() == 1
            backing_off = await rig.delivery(message)
            assert backing_off.attempts == failures and backing_off.steps_done == ()
            assert backing_off.last_error is not None and "injected" in backing_off.last_error
            assert await worker.run_once() == 0  # not before its backoff
            assert far.done == []
            clock.advance((backing_off.next_attempt_at - clock.now()).total_seconds())
        running_steps = asyncio.ensure_future(worker.run_once())
        async with asyncio.timeout(20):
            await far.holding.wait()
        running_steps.cancel()  # kill -9: nothing after this point is written
        with contextlib.suppress(asyncio.CancelledError):
            await running_steps
        assert far.ops() == ["create", "update"]
        far.hold = None
    clock.advance(1)
    async with running(backend, clock, far) as rt, rig_of(rt, clock, far, account) as rig:
        rig.queue_id = (await rig.delivery(message)).queue_id
        reclaiming = rig.worker()
        await reclaiming.start()  # hands the dead process's claim back
        await reclaiming.stop()
        worker = rig.worker()
        assert await worker.run_once() == 1  # transcript, then route answers 429
        backing_off = await rig.delivery(message)
        assert backing_off.steps_done == (Step.CREATE, Step.ACTIVATE, Step.TRANSCRIPT)
        assert backing_off.attempts == 1
        clock.advance((backing_off.next_attempt_at - clock.now()).total_seconds())
        assert await worker.run_once() == 1
        done = await rig.delivery(message)
        assert done.status is DeliveryStatus.DONE, done
        check_shapes(rig, message, far, transcript=True)
        assert far.tried == ["create"] * 3 + ["update", "messages", "messages", "route", "route", "update"]
        found = await rig.api(f"/v1/cc-deliveries/{done.id}")
        statuses = [(x["step"], x["status"]) for x in found["exchanges"]]
        assert statuses == [
            ("create", 503),
            ("create", 500),
            ("create", 200),
            ("activate", 200),
            ("transcript", 200),
            ("route", 429),
            ("route", 200),
            ("close", 200),
        ]


@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
async def test_no_transcript_still_routes_and_refusals_fail_with_their_reason(backend: Backend) -> None:
    clock, far = FakeClock(), FarEnd()
    async with running(backend, clock, far, cc_max_attempts=2) as rt, rig_of(rt, clock, far) as rig:
        await team_mailbox(rig)
        hook = await rig.http.post(
            "/v1/webhooks",
            json={"url": "http://127.0.0.1:9/hooks", "events": ["cc_delivery.failed"]},
            headers=rig.headers,
        )
        assert hook.status_code == 201, hook.text
        worker = rig.worker()

        # too long to transcribe: it goes on without the transcript, and says why
        long = await rig.leave()
        await rig.transcribed(long, TranscriptionStatus.FAILED, "the message is too long to transcribe")
        assert await worker.run_once() == 1
        done = await rig.delivery(long)
        assert done.status is DeliveryStatus.DONE
        assert done.transcript_note == "none: transcription failed: the message is too long to transcribe"
        check_shapes(rig, long, far, transcript=False)

        # the transcript never comes: after the wait, routed without it
        far.done.clear()
        late = await rig.leave()
        assert await worker.run_once() == 1
        assert far.ops() == ["create", "update"]
        clock.advance(121)
        assert await worker.run_once() == 1
        late_done = await rig.delivery(late)
        assert late_done.status is DeliveryStatus.DONE
        assert late_done.transcript_note == "none: the transcript was not ready in time"
        assert far.ops() == ["create", "update", "route", "update"]

        # routing refused: failed with the far end's reason, the call not closed
        far.done.clear()
        far.fail["route"] = [{"errors": [{"message": "no routing configuration for the number"}]}]
        refused = await rig.leave()
        await rig.transcribed(refused, TranscriptionStatus.SKIPPED, "transcription is off")
        assert await worker.run_once() == 1
        failed = await rig.delivery(refused)
        assert failed.status is DeliveryStatus.FAILED
        assert failed.last_error == "routing refused: no routing configuration for the number"
        assert far.ops() == ["create", "update"]

        # a 4xx: failed at once; retryable ones: failed after cc_max_attempts
        far.done.clear()
        far.fail["create"] = [TelephonyApiError(400, {"detail": "bad callCenterApiName"})]
        bad = await rig.leave()
        await rig.transcribed(bad, TranscriptionStatus.SKIPPED)
        assert await worker.run_once() == 1
        failed = await rig.delivery(bad)
        assert (failed.status, failed.last_error) == (DeliveryStatus.FAILED, "HTTP 400: bad callCenterApiName")
        far.fail["create"] = [retryable(502), retryable(502)]
        down = await rig.leave()
        await rig.transcribed(down, TranscriptionStatus.SKIPPED)
        assert await worker.run_once() == 1
        clock.advance(3600)
        assert await worker.run_once() == 1
        failed = await rig.delivery(down)
        assert failed.status is DeliveryStatus.FAILED and failed.attempts == 2
        assert failed.last_error == "HTTP 502: injected 502"
        assert far.done == []
        listed = await rig.api("/v1/cc-deliveries?status=failed")
        assert {d["id"] for d in listed["items"]} >= {failed.id}

        # a deleted message: failed, with the reason
        gone = await rig.leave()
        deleted = await rig.http.delete(f"/v1/messages/{gone.id}", headers=rig.headers)
        assert deleted.status_code == 204, deleted.text
        assert await worker.run_once() == 1
        assert (await rig.delivery(gone)).last_error == "the message was deleted before it was delivered"

        # every failure is told (a webhook event each), none for what was delivered
        sent = await rig.api(f"/v1/webhooks/{hook.json()['id']}/deliveries?limit=50")
        assert len(sent["items"]) == 4
        assert {d["event"] for d in sent["items"]} == {"cc_delivery.failed"}


@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
async def test_a_team_mailbox_names_a_queue_of_the_account(backend: Backend) -> None:
    clock, far = FakeClock(), FarEnd()
    async with running(backend, clock, far) as rt, rig_of(rt, clock, far) as rig:
        await team_mailbox(rig)
        ordinary = await rig.http.post("/v1/mailboxes", json={"name": "Front desk"}, headers=rig.headers)
        assert ordinary.json()["queue_id"] is None
        for body, field_name in (
            ({"queue_id": "q_01jaaaaaaaaaaaaaaaaaaaaaaa"}, "queue_id"),
            ({"queue_id": "usr_01jaaaaaaaaaaaaaaaaaaaaaaa"}, "queue_id"),
            ({"queue_id": rig.queue_id, "connector_id": "ccx_01jaaaaaaaaaaaaaaaaaaaaaaa"}, "connector_id"),
            ({"connector_id": "ccx_01jaaaaaaaaaaaaaaaaaaaaaaa"}, "queue_id"),
        ):
            response = await rig.http.patch(
                f"/v1/mailboxes/{ordinary.json()['id']}", json=body, headers=rig.headers
            )
            assert response.status_code == 422, (body, response.text)
            assert field_name in response.text
        # a message to an ordinary mailbox goes nowhere
        rig.mailbox_id = ordinary.json()["id"]
        await rig.leave()
        assert await rig.worker().run_once() == 0
        cleared = await rig.http.patch(
            f"/v1/mailboxes/{ordinary.json()['id']}", json={"queue_id": rig.queue_id}, headers=rig.headers
        )
        assert cleared.status_code == 200 and cleared.json()["queue_id"] == rig.queue_id
        # the queue cannot go while team mailboxes send their messages to it
        refused = await rig.http.delete(f"/v1/queues/{rig.queue_id}", headers=rig.headers)
        assert refused.status_code == 409, refused.text
        assert ordinary.json()["id"] in refused.json()["detail"]
