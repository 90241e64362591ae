"""The transcription job outbox on both backends, driven with `run_once()` under a fake clock:
a stored message is queued in its own transaction; the worker writes the transcript, publishes
`message.transcribed` and makes the waiting email due; failures are retried with backoff, or
fail at once when the engine cannot transcribe at all; `off` skips; a crashed worker's claim
comes back; search is ranked and stays within the account; media are transcribed on request.

The engine here is a scripted implementation of our own port (`TranscriptionEngine`): these
tests are about the job machinery. The real engine is exercised end to end in
`tests/e2e/test_transcripts.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import secrets
import threading
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from sqlalchemy import select

from afterbeep.app import Runtime
from afterbeep.config import SmtpTarget
from afterbeep.db import tables as t
from afterbeep.domain.clock import iso
from afterbeep.domain.messages import Message
from afterbeep.domain.transcripts import Segment, Transcript, TranscriptionStatus
from afterbeep.notify.email import EmailDispatcher, NewMessageMail, SmtpSender, compose_new_message
from afterbeep.services.deposits import DepositService
from afterbeep.services.mailboxes import MailboxService
from afterbeep.services.messages import MessageService
from afterbeep.services.ports.transcription import TranscriptionUnavailable
from afterbeep.services.transcripts import TranscriptionPolicy, TranscriptionQueue
from afterbeep.services.webhooks import WebhookService
from afterbeep.telephony.interface import EndedBy
from afterbeep.telephony.spool import SpoolMeta
from afterbeep.transcription.worker import TranscriptionWorker
from tests.conftest import Backend, make_settings
from tests.fixtures.smtp import smtp_server

OWNER = "owner@clinic.example"
PUBLIC_URL = "http://afterbeep.test"
WAIT_S = 30


class FakeClock:
    def __init__(self) -> None:
        # Ahead of the wall clock: webhook rows (stamped with wall time) are due at once.
        self._now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


@dataclass
class ScriptedEngine:
    """Our port, answering from a script: a text (a transcript of it) or an exception, one per
    call; the last one repeats. Records what it was asked."""

    script: list[str | Exception]
    calls: list[tuple[int, str]] = field(default_factory=list)

    def transcribe(self, audio: npt.NDArray[np.int16], language: str) -> Transcript:
        self.calls.append((len(audio), language))
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        ms = len(audio) // 8
        return Transcript(step, language, (Segment(0, ms, step, 0.9),), 0.9)


def speech(seconds: float, seed: int = 1) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(seed)
    n = int(seconds * 8000)
    envelope = 0.55 + 0.45 * np.sin(np.arange(n) * 2 * np.pi * 4 / 8000)
    return (rng.normal(0, 3000, n) * envelope).clip(-32768, 32767).astype(np.int16)


@dataclass
class Rig:
    rt: Runtime
    clock: FakeClock
    client: httpx.AsyncClient
    engine: ScriptedEngine
    account_id: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    enabled: bool = True
    queue_max: int = 1000

    @property
    def queue(self) -> TranscriptionQueue:
        return TranscriptionQueue(TranscriptionPolicy(self.enabled, self.queue_max), self.clock)

    def deposits(self) -> DepositService:
        assert self.rt.store is not None
        return DepositService(
            self.rt.uow,
            self.rt.store,
            self.clock,
            public_url=PUBLIC_URL,
            secret_key=b"k" * 32,
            tmp_dir=self.rt.data_dir / "tmp",
            transcription=self.queue,
            email_wait_transcript_seconds=WAIT_S,
        )

    def worker(self, engine: Any = "scripted", **options: Any) -> TranscriptionWorker:
        assert self.rt.store is not None
        return TranscriptionWorker(
            self.rt.uow,
            self.rt.store,
            self.clock,
            self.engine if engine == "scripted" else engine,
            **{"max_attempts": 3, "retry_base_seconds": 30, **options},
        )

    async def login(self, name: str = "Acme Clinic") -> tuple[str, dict[str, str]]:
        issued = await self.rt.accounts.create_account(name)
        return issued.account_id, {"Authorization": f"Bearer {issued.secret}"}

    async def mailbox(self, account_id: str | None = None, **settings: Any) -> str:
        assert self.rt.store is not None
        values: dict[str, Any] = {"name": "Front desk", "notify_email": OWNER, **settings}
        view = await MailboxService(self.rt.uow, self.rt.store, self.clock).create(
            account_id or self.account_id, values
        )
        return view.mailbox.id

    async def leave(
        self, mailbox_id: str, seconds: float = 2.0, account_id: str | None = None
    ) -> Message:
        meta = SpoolMeta(
            call_id=f"call_{secrets.token_hex(8)}",
            account_id=account_id or self.account_id,
            mailbox_id=mailbox_id,
            caller="+12025550123",
            caller_name="Ada",
            callee="+12025550100",
            started_at=iso(self.clock.now()),
            ended_by=EndedBy.FINISH_KEY.value,
        )
        message = await self.deposits().finalize(meta, speech(seconds), recovered=False)
        assert message is not None
        return message

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers=self.headers)

    async def message(self, message_id: str) -> dict[str, Any]:
        response = await self.get(f"/v1/messages/{message_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def rows(self, table: Any) -> list[Any]:
        async with self.rt.db.begin() as conn:
            return list((await conn.execute(select(table).order_by(table.c.id))).all())


@contextlib.asynccontextmanager
async def open_rig(backend: Backend, script: list[str | Exception]) -> AsyncIterator[Rig]:
    clock = FakeClock()
    rt = Runtime(make_settings(backend, public_url=PUBLIC_URL, transcribe=True), clock=clock)
    await rt.start(workers=False)
    try:
        transport = httpx.ASGITransport(app=rt.app)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
            rig = Rig(rt, clock, client, ScriptedEngine(list(script)))
            rig.account_id, rig.headers = await rig.login()
            yield rig
    finally:
        await rt.stop()


@pytest.fixture
async def rig(backend: Backend) -> AsyncIterator[Rig]:
    async with open_rig(backend, ["please call me back about the invoice"]) as r:
        yield r


async def test_a_message_is_transcribed_and_its_waiting_email_made_due(rig: Rig) -> None:
    mailbox_id = await rig.mailbox(language="es-MX")
    await WebhookService(rig.rt.uow, rig.clock).create(
        rig.account_id, "http://127.0.0.1:9/hook", ["message.transcribed"], "s" * 20
    )
    message = await rig.leave(mailbox_id, seconds=2.0)

    # Queued with the message: pending, one job, the email due only after the wait.
    assert message.transcription_status is TranscriptionStatus.PENDING
    [job] = await rig.rows(t.transcription_jobs)
    assert (job.subject_kind, job.subject_id, job.language, job.status) == (
        "message",
        message.id,
        "es-MX",
        "pending",
    )
    [email] = await rig.rows(t.email_outbox)
    assert email.next_attempt_at == rig.clock.now() + timedelta(seconds=WAIT_S)
    before = await rig.message(message.id)
    assert before["transcription_status"] == "pending" and before["transcript"] is None

    rig.clock.advance(3)
    worker = rig.worker()
    assert await worker.run_once() == 1
    assert rig.engine.calls == [(16000, "es-MX")]  # the whole message, the mailbox's language

    after = await rig.message(message.id)
    assert after["transcription_status"] == "done" and after["transcription_reason"] is None
    assert after["transcript"] == {
        "text": "please call me back about the invoice",
        "language": "es-MX",
        "segments": [
            {"start_ms": 0, "end_ms": 2000, "text": "please call me back about the invoice",
             "confidence": 0.9}
        ],
        "confidence": 0.9,
    }
    [email] = await rig.rows(t.email_outbox)
    assert email.next_attempt_at == rig.clock.now()  # made due by the transcript
    [delivery] = await rig.rows(t.webhook_deliveries)
    assert delivery.event == "message.transcribed"
    [done] = await rig.rows(t.transcription_jobs)
    assert (done.status, done.attempts, done.claimed_until) == ("done", 1, None)
    assert await worker.run_once() == 0


async def test_an_engine_that_cannot_transcribe_fails_the_message_at_once(
    backend: Backend,
) -> None:
    reason = "model file model.bin fails its SHA-256 check"
    async with open_rig(backend, [TranscriptionUnavailable(reason)]) as rig:
        message = await rig.leave(await rig.mailbox())
        assert await rig.worker().run_once() == 1
        body = await rig.message(message.id)
        assert (body["transcription_status"], body["transcription_reason"]) == ("failed", reason)
        [job] = await rig.rows(t.transcription_jobs)
        assert (job.status, job.attempts, job.last_error) == ("failed", 1, reason)
        [email] = await rig.rows(t.email_outbox)
        assert email.next_attempt_at == rig.clock.now()  # no transcript to wait for


async def test_engine_errors_are_retried_with_backoff_then_fail(backend: Backend) -> None:
    async with open_rig(backend, [RuntimeError("out of memory")]) as rig:
        message = await rig.leave(await rig.mailbox())
        worker = rig.worker(max_attempts=2)
        assert await worker.run_once() == 1
        [job] = await rig.rows(t.transcription_jobs)
        assert (job.status, job.attempts) == ("pending", 1)
        assert job.next_attempt_at == rig.clock.now() + timedelta(seconds=30)
        assert (await rig.message(message.id))["transcription_status"] == "pending"

        assert await worker.run_once() == 0  # not due yet
        rig.clock.advance(31)
        assert await worker.run_once() == 1
        body = await rig.message(message.id)
        assert body["transcription_status"] == "failed"
        assert body["transcription_reason"] == "the engine failed: RuntimeError: out of memory"


async def test_a_retry_that_succeeds_writes_the_transcript(backend: Backend) -> None:
    async with open_rig(backend, [RuntimeError("busy"), "second time lucky"]) as rig:
        message = await rig.leave(await rig.mailbox())
        worker = rig.worker()
        assert await worker.run_once() == 1
        rig.clock.advance(31)
        assert await worker.run_once() == 1
        body = await rig.message(message.id)
        assert body["transcription_status"] == "done"
        assert body["transcript"]["text"] == "second time lucky"


async def test_off_skips_new_messages_and_closes_queued_jobs(rig: Rig) -> None:
    mailbox_id = await rig.mailbox()
    queued = await rig.leave(mailbox_id)  # while on
    rig.enabled = False
    off = await rig.leave(mailbox_id)
    assert off.transcription_status is TranscriptionStatus.SKIPPED
    assert off.transcription_reason == "transcription is off"
    assert len(await rig.rows(t.transcription_jobs)) == 1  # none for the message left while off

    # Turned off with a job still queued: the worker without an engine closes it.
    assert await rig.worker(engine=None).run_once() == 1
    body = await rig.message(queued.id)
    assert (body["transcription_status"], body["transcription_reason"]) == (
        "skipped",
        "transcription is off",
    )
    assert rig.engine.calls == []


async def test_the_queue_is_bounded(rig: Rig) -> None:
    rig.queue_max = 2
    mailbox_id = await rig.mailbox()
    kept = [await rig.leave(mailbox_id) for _ in range(2)]
    over = await rig.leave(mailbox_id)
    assert [m.transcription_status for m in kept] == [TranscriptionStatus.PENDING] * 2
    assert over.transcription_status is TranscriptionStatus.SKIPPED
    assert over.transcription_reason == "too many messages were waiting for transcription"


async def test_a_crashed_workers_claim_comes_back(rig: Rig) -> None:
    message = await rig.leave(await rig.mailbox())
    now = rig.clock.now()
    async with rig.rt.uow() as uow:  # a worker claims it, then its process dies
        [claimed] = await uow.transcripts.claim_due(now, now + timedelta(seconds=60), 1)
    assert await rig.worker().run_once() == 0  # its lease holds
    if rig.rt.db.is_sqlite:
        # One node: the next worker to start hands every lease back at once.
        worker = rig.worker(reclaim_on_start=True, idle_seconds=3600)
        await worker.start()
        await worker.stop()
    else:
        rig.clock.advance(61)  # several nodes: the lease runs out
    assert await rig.worker().run_once() == 1
    assert (await rig.message(message.id))["transcription_status"] == "done"
    assert claimed.job.subject_id == message.id


async def test_a_deleted_message_cancels_its_job(rig: Rig) -> None:
    message = await rig.leave(await rig.mailbox())
    response = await rig.client.delete(f"/v1/messages/{message.id}", headers=rig.headers)
    assert response.status_code == 204
    assert await rig.worker().run_once() == 1
    [job] = await rig.rows(t.transcription_jobs)
    assert (job.status, job.last_error) == ("cancelled", "the message was deleted")
    assert rig.engine.calls == []


async def transcribed(rig: Rig, mailbox_id: str, text: str, account_id: str | None = None) -> str:
    rig.engine.script = [text]
    message = await rig.leave(mailbox_id, account_id=account_id)
    assert await rig.worker().run_once() == 1
    return message.id


async def test_search_is_ranked_and_stays_in_the_account(rig: Rig) -> None:
    front = await rig.mailbox()
    back = await rig.mailbox(name="Back office")
    callback = await transcribed(rig, front, "Please call me back about the invoice")
    overdue = await transcribed(rig, back, "Invoice, invoice: the invoice is overdue")
    other_account, other_headers = await rig.login("Other Co")
    other_box = await rig.mailbox(other_account)
    theirs = await transcribed(rig, other_box, "an invoice of the other account", other_account)

    found = await rig.get("/v1/messages", q="INVOICE")
    assert found.status_code == 200, found.text
    assert [m["id"] for m in found.json()["items"]] == [overdue, callback]  # best match first
    assert [m["id"] for m in (await rig.get("/v1/messages", q="call back")).json()["items"]] == [
        callback
    ]
    in_box = await rig.get(f"/v1/mailboxes/{front}/messages", q="invoice")
    assert [m["id"] for m in in_box.json()["items"]] == [callback]
    assert (await rig.get("/v1/messages", q="nothing like this")).json()["items"] == []

    # The other account finds only its own, and cannot search this account's mailbox.
    their_search = await rig.client.get(
        "/v1/messages", params={"q": "invoice"}, headers=other_headers
    )
    assert [m["id"] for m in their_search.json()["items"]] == [theirs]
    probe = await rig.client.get(
        f"/v1/mailboxes/{front}/messages", params={"q": "invoice"}, headers=other_headers
    )
    assert probe.status_code == 404

    # Pages of a ranked result.
    first = (await rig.get("/v1/messages", q="invoice", limit=1)).json()
    assert [m["id"] for m in first["items"]] == [overdue] and first["next_cursor"]
    second = (await rig.get("/v1/messages", q="invoice", limit=1, cursor=first["next_cursor"])).json()
    assert [m["id"] for m in second["items"]] == [callback] and second["next_cursor"] is None

    # Without q: every mailbox's messages, newest first.
    listed = (await rig.get("/v1/messages")).json()["items"]
    assert [m["id"] for m in listed] == [overdue, callback]

    if not rig.rt.db.is_sqlite:
        # The repository's expression is the GIN index's: PostgreSQL can answer from it.
        async with rig.rt.db.begin() as conn:
            await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = await conn.exec_driver_sql(
                "EXPLAIN SELECT id FROM messages WHERE to_tsvector('simple', "
                "coalesce(messages.transcript ->> 'text', '')) @@ plainto_tsquery('simple', 'x')"
            )
            assert "ix_messages_transcript_search" in " ".join(row[0] for row in plan)


async def test_a_message_deleted_in_the_inbox_is_not_found_until_restored(rig: Rig) -> None:
    assert rig.rt.store is not None
    box = await rig.mailbox()
    message_id = await transcribed(rig, box, "please call the pharmacy")
    messages = MessageService(rig.rt.uow, rig.rt.store, rig.clock)
    await messages.trash(rig.account_id, message_id)
    assert (await rig.get("/v1/messages", q="pharmacy")).json()["items"] == []
    assert (await rig.get(f"/v1/mailboxes/{box}/messages", q="pharmacy")).json()["items"] == []
    await messages.restore(rig.account_id, message_id)
    found = (await rig.get("/v1/messages", q="pharmacy")).json()["items"]
    assert [m["id"] for m in found] == [message_id]


async def test_search_words_that_are_fts_syntax_are_just_words(rig: Rig) -> None:
    box = await rig.mailbox()
    quoted = await transcribed(rig, box, 'he said "NEAR" and OR not AND')
    for q in ('"near"', "near OR", "AND*", "not: and"):
        found = await rig.get("/v1/messages", q=q)
        assert found.status_code == 200, (q, found.text)
        assert [m["id"] for m in found.json()["items"]] == [quoted], q


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": ""}, "query.q"),
        ({"q": "?!"}, "q"),
        ({"q": "x" * 201}, "query.q"),
        ({"q": "invoice", "cursor": "bm90IGEgY3Vyc29y"}, "cursor"),
        ({"q": "invoice", "qq": "1"}, "query.qq"),
    ],
)
async def test_a_bad_search_is_refused(
    rig: Rig, params: dict[str, str], field: str
) -> None:
    response = await rig.get("/v1/messages", **params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in {error["field"] for error in response.json()["errors"]}


def wav(seconds: float) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(speech(seconds, seed=5).tobytes())
    return buffer.getvalue()


async def test_media_is_transcribed_on_request_and_searchable(rig: Rig) -> None:
    rig.engine.script = ["your appointment is tomorrow at nine"]
    upload = await rig.client.post(
        "/v1/media",
        files={"file": ("reminder.wav", wav(3.0), "audio/wav")},
        data={"transcribe": "true"},
        headers=rig.headers,
    )
    assert upload.status_code == 201, upload.text
    media = upload.json()
    assert media["transcription_status"] == "pending" and media["transcript"] is None
    plain = await rig.client.post(
        "/v1/media", files={"file": ("other.wav", wav(1.0), "audio/wav")}, headers=rig.headers
    )
    assert plain.json()["transcription_status"] is None  # not asked for

    assert await rig.worker().run_once() == 1
    assert rig.engine.calls == [(24000, "en")]  # the account's language
    got = (await rig.get(f"/v1/media/{media['id']}")).json()
    assert got["transcription_status"] == "done"
    assert got["transcript"]["text"] == "your appointment is tomorrow at nine"
    found = (await rig.get("/v1/media", q="appointment tomorrow")).json()["items"]
    assert [m["id"] for m in found] == [media["id"]]

    refused = await rig.client.post(
        "/v1/media",
        files={"file": ("x.wav", wav(1.0), "audio/wav")},
        data={"transcribe": "maybe"},
        headers=rig.headers,
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "transcribe"


def test_the_email_carries_the_transcript_or_says_it_will_follow() -> None:
    mail = NewMessageMail(
        to_addr=OWNER,
        mailbox_name="Front desk",
        timezone="UTC",
        caller="+12025550123",
        caller_name=None,
        duration_ms=2000,
        received_at=datetime(2026, 12, 7, tzinfo=UTC),
        listen_url="http://afterbeep.test/x",
        wav=None,
        message_id="msg_x",
        transcript="Call me back <soon> & thanks",
    )
    for kwargs, plain, html in (
        ({}, "Call me back <soon> & thanks", "Call me back &lt;soon&gt; &amp; thanks"),
        ({"transcript": None, "transcript_pending": True}, "will follow in the inbox", "will follow"),
    ):
        email = compose_new_message(dataclasses.replace(mail, **kwargs), "a@b.example")
        text_part, html_part = email.get_body(("plain",)), email.get_body(("html",))
        assert text_part is not None and html_part is not None
        assert plain in str(text_part.get_content())
        assert html in str(html_part.get_content())


class BlockingEngine:
    """Transcribes only once `release` is set (from the test), as a long message would take."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def transcribe(self, audio: npt.NDArray[np.int16], language: str) -> Transcript:
        self.started.set()
        self.release.wait(timeout=60)
        return Transcript("a long message", language, ())


async def test_a_long_transcription_keeps_its_lease(rig: Rig) -> None:
    message = await rig.leave(await rig.mailbox())
    engine = BlockingEngine()
    worker = rig.worker(engine=engine, lease_seconds=0.3)
    attempt = asyncio.ensure_future(worker.run_once())
    try:
        await asyncio.to_thread(engine.started.wait, 30)
        [job] = await rig.rows(t.transcription_jobs)
        first = job.claimed_until
        rig.clock.advance(10)  # far past the first lease: only the heartbeat keeps the claim
        async with asyncio.timeout(30):
            while (await rig.rows(t.transcription_jobs))[0].claimed_until == first:  # noqa: ASYNC110 (another task's writes)
                await asyncio.sleep(0.05)
        [job] = await rig.rows(t.transcription_jobs)
        assert job.claimed_until == rig.clock.now() + timedelta(seconds=0.3)
        assert await rig.worker().run_once() == 0  # nobody else can claim it meanwhile
    finally:
        engine.release.set()
        assert await attempt == 1
    assert (await rig.message(message.id))["transcript"]["text"] == "a long message"


async def test_the_email_goes_without_the_transcript_after_the_wait(rig: Rig) -> None:
    assert rig.rt.store is not None
    message = await rig.leave(await rig.mailbox())
    with smtp_server() as smtp:
        emails = EmailDispatcher(
            rig.rt.uow,
            rig.rt.store,
            rig.clock,
            SmtpSender(SmtpTarget(smtp.url())),
            from_addr="voicemail@afterbeep.test",
            public_url=PUBLIC_URL,
            secret_key=b"k" * 32,
        )
        assert await emails.run_once() == 0  # waiting for the transcript
        rig.clock.advance(WAIT_S - 1)
        assert await emails.run_once() == 0
        rig.clock.advance(1)
        assert await emails.run_once() == 1
        [mail] = smtp.messages()
        body = mail.message.get_body(("plain",))
        assert body is not None
        assert "The transcript is not ready yet; it will follow in the inbox." in body.get_content()

        # The transcript comes later: in the inbox (the API), and no second email.
        assert await rig.worker().run_once() == 1
        assert (await rig.message(message.id))["transcription_status"] == "done"
        assert await emails.run_once() == 0
        assert len(smtp.messages()) == 1
