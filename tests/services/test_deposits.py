"""From spool entry to stored message and owner email, on both backends, with a real SMTP server.

`DepositService.finalize` and the `SpoolWorker` are driven directly (the SIP side has its own
end-to-end tests); the email dispatcher is run with `run_once()` under a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from afterbeep.app import Runtime
from afterbeep.audio.rendition import read_wav_pcm
from afterbeep.db import tables as t
from afterbeep.db.repos.notifications import _notification
from afterbeep.domain.clock import iso
from afterbeep.domain.messages import Message
from afterbeep.notify.email import EmailDispatcher
from afterbeep.services.deposits import DepositService
from afterbeep.services.mailboxes import MailboxService
from afterbeep.services.messages import MessageService
from afterbeep.services.ports.notifications import Notification, NotificationKind
from afterbeep.services.ports.storage import (
    DEFAULT_CONTENT_TYPE,
    ObjectStore,
    StorageUnavailable,
    StoredObject,
)
from afterbeep.services.webhooks import WebhookService
from afterbeep.telephony.interface import Audio, EndedBy
from afterbeep.telephony.spool import Spool, SpoolEntry, SpoolMeta
from afterbeep.telephony.spool_worker import SpoolWorker
from tests.conftest import Backend, make_settings
from tests.fixtures.smtp import SmtpServer, smtp_server

OWNER = "owner@clinic.example"
SENDER = "voicemail@afterbeep.test"
CALLER = "+12025550123"
CALLER_NAME = "Ada Lovelace"
PUBLIC_URL = "http://afterbeep.test"
HOOK_SECRET = "test-webhook-secret-0123456789"
WAIT = 20.0  # upper bound on waiting for background work; never a speed assertion


class FakeClock:
    def __init__(self) -> None:
        # Ahead of the wall clock: webhook rows (stamped with wall time) are due at once.
        self._now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


def speech(seconds: float, seed: int = 1) -> Audio:
    """A speech-like signal, loud enough in every 20 ms frame: noise under a 4 Hz envelope."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 8000)
    envelope = 0.55 + 0.45 * np.sin(np.arange(n) * 2 * np.pi * 4 / 8000)
    return (rng.normal(0, 3000, n) * envelope).clip(-32768, 32767).astype(np.int16)


async def until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) for background work to reach a state no event announces."""
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110  (no event to wait on)
            await asyncio.sleep(0.01)


def said_then_silence(said_s: float, silence_s: float, seed: int = 1) -> Audio:
    return np.concatenate([speech(said_s, seed), np.zeros(int(silence_s * 8000), np.int16)])


@dataclass
class Rig:
    rt: Runtime
    clock: FakeClock
    account_id: str
    client: httpx.AsyncClient

    @property
    def deposits(self) -> DepositService:
        assert self.rt.deposits is not None
        return self.rt.deposits

    @property
    def emails(self) -> EmailDispatcher:
        assert self.rt.email_dispatcher is not None
        return self.rt.email_dispatcher

    @property
    def spool(self) -> Spool:
        assert self.rt.spool is not None
        return self.rt.spool

    @property
    def store(self) -> ObjectStore:
        assert self.rt.store is not None
        return self.rt.store

    @property
    def headers(self) -> dict[str, str]:
        return self._headers

    async def login(self) -> None:
        issued = await self.rt.accounts.create_account("Acme Clinic")
        self.account_id = issued.account_id
        self._headers = {"Authorization": f"Bearer {issued.secret}"}

    async def mailbox(self, **settings: Any) -> str:
        values: dict[str, Any] = {"name": "Front desk", "notify_email": OWNER, **settings}
        view = await MailboxService(self.rt.uow, self.store, self.clock).create(
            self.account_id, values
        )
        return view.mailbox.id

    def entry(
        self,
        mailbox_id: str,
        pcm: Audio,
        ended_by: EndedBy | None,
        call_id: str | None = None,
        spool: Spool | None = None,
    ) -> SpoolEntry:
        """A spool entry as a call leaves it; `ended_by=None` is a process killed mid-message."""
        meta = SpoolMeta(
            call_id=call_id or f"call_{secrets.token_hex(8)}",
            account_id=self.account_id,
            mailbox_id=mailbox_id,
            caller=CALLER,
            caller_name=CALLER_NAME,
            callee="+12025550100",
            started_at=iso(self.clock.now()),
        )
        writer = (spool or self.spool).open(meta)
        writer.write(pcm)
        if ended_by is not None:
            return writer.close(ended_by)
        writer.flush()
        assert writer._fd is not None
        os.close(writer._fd)  # what a kill -9 does: the data written so far stays
        return writer.entry

    async def finalize(self, entry: SpoolEntry) -> Message | None:
        return await self.deposits.finalize(
            entry.meta, Spool.read_pcm(entry), recovered=entry.meta.ended_by is None
        )

    async def outbox(self) -> list[Notification]:
        async with self.rt.db.begin() as conn:
            rows = (await conn.execute(select(t.email_outbox).order_by(t.email_outbox.c.id))).all()
        return [_notification(r) for r in rows]

    async def messages(self) -> list[Message]:
        page = await MessageService(self.rt.uow, self.store, self.clock).list(
            self.account_id, await self._any_mailbox()
        )
        return page.items

    async def _any_mailbox(self) -> str:
        async with self.rt.uow() as uow:
            page = await uow.mailboxes.list(self.account_id, None, 1)
        return page.items[0].id

    async def webhook(self, *events: str) -> None:
        await WebhookService(self.rt.uow, self.clock).create(
            self.account_id, "http://127.0.0.1:9/hook", events, HOOK_SECRET
        )

    async def webhook_events(self) -> list[tuple[str, dict[str, Any]]]:
        async with self.rt.db.begin() as conn:
            rows = (
                await conn.execute(select(t.webhook_deliveries).order_by(t.webhook_deliveries.c.id))
            ).all()
        return [(r.event, json.loads(r.payload)["data"]) for r in rows]

    async def fetch(self, url: str) -> httpx.Response:
        return await self.client.get(url)


@contextlib.asynccontextmanager
async def open_rig(
    backend: Backend, smtp_url: str, clock: FakeClock | None = None
) -> AsyncIterator[Rig]:
    clock = clock or FakeClock()
    settings = make_settings(backend, smtp_url=smtp_url, smtp_from=SENDER, public_url=PUBLIC_URL)
    rt = Runtime(settings, clock=clock)
    await rt.start(workers=False)
    try:
        transport = httpx.ASGITransport(app=rt.app)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
            rig = Rig(rt, clock, "", client)
            await rig.login()
            yield rig
    finally:
        await rt.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
async def rig(backend: Backend, smtp: SmtpServer) -> AsyncIterator[Rig]:
    async with open_rig(backend, smtp.url()) as r:
        yield r


def text_and_html(mail: EmailMessage) -> tuple[str, str]:
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def attachments(mail: EmailMessage) -> list[tuple[str | None, str, bytes]]:
    found = []
    for part in mail.iter_attachments():
        assert isinstance(part, EmailMessage)
        payload = part.get_content()
        assert isinstance(payload, bytes)
        found.append((part.get_filename(), part.get_content_type(), payload))
    return found


async def test_deposit_is_stored_then_emailed_with_audio_and_link(
    rig: Rig, smtp: SmtpServer
) -> None:
    mailbox_id = await rig.mailbox(timezone="America/New_York")
    await rig.webhook("message.created")
    pcm = said_then_silence(3.0, 2.0)
    entry = rig.entry(mailbox_id, pcm, EndedBy.HANGUP)

    message = await rig.finalize(entry)

    assert message is not None
    # Hang-up: trailing silence trimmed back to 200 ms after the last sound.
    assert message.duration_ms == 3200 and not message.recovered
    assert (message.caller, message.caller_name, message.callee) == (
        CALLER,
        CALLER_NAME,
        "+12025550100",
    )
    assert message.call_id == entry.meta.call_id and message.folder == "new"
    stored = await rig.store.get_bytes(message.audio_key)
    assert message.audio_key == f"{rig.account_id}/vm/{entry.meta.call_id}.wav"
    samples, rate = read_wav_pcm(stored)
    assert rate == 8000 and np.array_equal(samples, pcm[: 3200 * 8])

    [queued] = await rig.outbox()
    assert (queued.kind, queued.status, queued.message_id, queued.to_addr) == (
        "new_message",
        "pending",
        message.id,
        OWNER,
    )
    assert smtp.messages() == []
    assert await rig.emails.run_once() == 1

    [received] = smtp.messages()
    assert received.rcpt_tos == [OWNER] and received.mail_from == SENDER
    mail = received.message
    assert mail["Subject"] == f"New voicemail from {CALLER_NAME} ({CALLER}) (0:03)"
    text, html = text_and_html(mail)
    local = message.created_at.astimezone(ZoneInfo("America/New_York"))
    for body in (text, html):
        assert CALLER_NAME in body and CALLER in body and "0:03" in body
        assert local.strftime("%H:%M") in body and local.strftime("%Z") in body
    [(filename, content_type, wav)] = attachments(mail)
    assert (filename, content_type) == (f"{message.id}.wav", "audio/wav")
    assert wav == stored

    match = re.search(r"Listen: (\S+)", text)
    assert match is not None and match.group(1) in html.replace("&amp;", "&")
    listened = await rig.fetch(match.group(1))
    assert listened.status_code == 200 and listened.content == stored

    [(event, data)] = await rig.webhook_events()
    assert event == "message.created" and data["id"] == message.id
    assert data["duration_ms"] == 3200
    expires = datetime.fromisoformat(data["audio_url_expires_at"].replace("Z", "+00:00"))
    assert timedelta(0) < expires - rig.clock.now() <= timedelta(minutes=15)
    linked = await rig.fetch(data["audio_url"])
    assert linked.status_code == 200 and linked.content == stored

    [sent] = await rig.outbox()
    assert (sent.status, sent.attempts, sent.last_error) == ("sent", 1, None)
    assert await rig.emails.run_once() == 0
    assert len(smtp.messages()) == 1


async def test_hash_keeps_the_whole_recording(rig: Rig) -> None:
    mailbox_id = await rig.mailbox()
    pcm = said_then_silence(3.0, 2.0)
    message = await rig.finalize(rig.entry(mailbox_id, pcm, EndedBy.FINISH_KEY))
    assert message is not None and message.duration_ms == 5000
    samples, _ = read_wav_pcm(await rig.store.get_bytes(message.audio_key))
    assert np.array_equal(samples, pcm)


async def test_too_short_once_trimmed_is_no_message(rig: Rig, smtp: SmtpServer) -> None:
    mailbox_id = await rig.mailbox(min_message_seconds=3)
    # 5.5 s on the spool, but only 2.5 s of it is kept after trimming the silence.
    entry = rig.entry(mailbox_id, said_then_silence(2.3, 3.2), EndedBy.SILENCE)
    assert await rig.finalize(entry) is None
    assert await rig.messages() == []
    assert await rig.store.list(f"{rig.account_id}/") == []
    assert await rig.outbox() == []
    assert await rig.emails.run_once() == 0 and smtp.messages() == []


async def test_no_attachment_when_attach_audio_is_off(rig: Rig, smtp: SmtpServer) -> None:
    mailbox_id = await rig.mailbox(attach_audio=False)
    message = await rig.finalize(rig.entry(mailbox_id, speech(3.0), EndedBy.HANGUP))
    assert message is not None
    assert await rig.emails.run_once() == 1
    [received] = smtp.messages()
    assert attachments(received.message) == []
    text, _ = text_and_html(received.message)
    assert "Listen: " + PUBLIC_URL in text


async def test_no_email_without_notify_email(rig: Rig, smtp: SmtpServer) -> None:
    mailbox_id = await rig.mailbox(notify_email=None)
    message = await rig.finalize(rig.entry(mailbox_id, speech(3.0), EndedBy.HANGUP))
    assert message is not None
    assert await rig.outbox() == []
    assert await rig.emails.run_once() == 0
    assert smtp.messages() == []


async def test_finalize_twice_gives_one_message_and_one_email(rig: Rig, smtp: SmtpServer) -> None:
    mailbox_id = await rig.mailbox()
    entry = rig.entry(mailbox_id, speech(3.0), EndedBy.HANGUP)
    first = await rig.finalize(entry)
    again = await rig.finalize(entry)
    assert first is not None and again == first
    assert len(await rig.messages()) == 1
    assert len(await rig.outbox()) == 1
    assert await rig.emails.run_once() == 1
    assert len(smtp.messages()) == 1


# The spool worker.


async def test_recovery_turns_an_interrupted_recording_into_a_message(rig: Rig) -> None:
    mailbox_id = await rig.mailbox()
    pcm = speech(4.0)
    entry = rig.entry(mailbox_id, pcm, ended_by=None)
    assert entry.meta.ended_by is None
    worker = SpoolWorker(rig.spool, rig.deposits, rig.clock)
    try:
        assert await worker.recover() == 1
        async with asyncio.timeout(WAIT):
            await worker.wait_idle()
    finally:
        await worker.stop()
    [message] = await rig.messages()
    assert message.recovered and message.call_id == entry.meta.call_id
    assert message.duration_ms == 4000
    samples, _ = read_wav_pcm(await rig.store.get_bytes(message.audio_key))
    assert np.array_equal(samples, pcm)
    assert rig.spool.entries() == []
    assert not entry.pcm_path.exists() and not entry.meta_path.exists()
    [queued] = await rig.outbox()
    assert queued.message_id == message.id


async def test_recovering_twice_or_after_a_late_crash_makes_no_duplicate(
    backend: Backend, smtp: SmtpServer
) -> None:
    clock = FakeClock()
    async with open_rig(backend, smtp.url(), clock) as rig:
        mailbox_id = await rig.mailbox()
        interrupted = rig.entry(mailbox_id, speech(3.0, seed=2), ended_by=None)
        finished = rig.entry(mailbox_id, speech(3.0, seed=3), EndedBy.HANGUP)
        # A crash after the commit but before the spool files were removed:
        stored_before_crash = await rig.finalize(finished)
        assert stored_before_crash is not None
        account_id = rig.account_id
        spool_dir = rig.spool.directory

    for _ in range(2):  # two restarts on the same data directory
        async with open_rig(backend, smtp.url(), clock) as rig:
            rig.account_id = account_id
            assert rig.spool.directory == spool_dir
            worker = SpoolWorker(rig.spool, rig.deposits, rig.clock)
            try:
                await worker.recover()
                await worker.recover()  # what is in hand is not taken twice
                async with asyncio.timeout(WAIT):
                    await worker.wait_idle()
            finally:
                await worker.stop()
            messages = await rig.messages()
            assert sorted(m.call_id for m in messages) == sorted(
                [interrupted.meta.call_id, finished.meta.call_id]
            )
            by_call = {m.call_id: m for m in messages}
            assert by_call[finished.meta.call_id] == stored_before_crash
            assert by_call[interrupted.meta.call_id].recovered
            assert rig.spool.entries() == []
            outbox = await rig.outbox()
            assert sorted(n.message_id or "" for n in outbox) == sorted(m.id for m in messages)


class FlakyStore:
    """The real store, except that uploads fail with StorageUnavailable while `down`."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.down = True
        self.refused = 0
        self.refusal = asyncio.Event()

    def _check(self) -> None:
        if self.down:
            self.refused += 1
            self.refusal.set()
            raise StorageUnavailable("injected: storage is down")

    async def put_file(
        self, key: str, path: Path, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> StoredObject:
        self._check()
        return await self.inner.put_file(key, path, content_type)

    async def put_bytes(
        self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> StoredObject:
        self._check()
        return await self.inner.put_bytes(key, data, content_type)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_storage_down_keeps_the_spool_and_retries(rig: Rig) -> None:
    mailbox_id = await rig.mailbox()
    flaky = FlakyStore(rig.store)
    deposits = DepositService(
        rig.rt.uow,
        flaky,
        rig.clock,
        public_url=PUBLIC_URL,
        secret_key=b"k" * 32,
        tmp_dir=rig.rt.data_dir / "tmp",
    )
    # Backoff long enough that only retry_now() can bring the retry.
    worker = SpoolWorker(
        rig.spool, deposits, rig.clock, retry_base_seconds=3600, retry_cap_seconds=3600
    )
    entry = rig.entry(mailbox_id, speech(3.0), EndedBy.HANGUP)
    try:
        worker.submit(entry)
        await until(lambda: len(worker.backlog()) == 1)
        [waiting] = worker.backlog()
        assert waiting.call_id == entry.meta.call_id and waiting.attempts == 1
        assert "StorageUnavailable" in waiting.last_error
        assert waiting.next_attempt_at == rig.clock.now() + timedelta(seconds=3600)
        assert entry.pcm_path.exists() and entry.meta_path.exists()
        assert await rig.messages() == []
        assert worker.in_hand == 1

        flaky.down = False
        worker.retry_now()
        async with asyncio.timeout(WAIT):
            await worker.wait_idle()
    finally:
        await worker.stop()
    [message] = await rig.messages()
    assert message.call_id == entry.meta.call_id and not message.recovered
    assert await rig.store.exists(message.audio_key)
    assert not entry.pcm_path.exists() and not entry.meta_path.exists()
    assert worker.backlog() == [] and flaky.refused == 1


async def test_stop_leaves_unstored_entries_in_the_spool(rig: Rig) -> None:
    mailbox_id = await rig.mailbox()
    flaky = FlakyStore(rig.store)
    deposits = DepositService(
        rig.rt.uow,
        flaky,
        rig.clock,
        public_url=PUBLIC_URL,
        secret_key=b"k" * 32,
        tmp_dir=rig.rt.data_dir / "tmp",
    )
    worker = SpoolWorker(rig.spool, deposits, rig.clock, retry_base_seconds=3600)
    entry = rig.entry(mailbox_id, speech(3.0), EndedBy.HANGUP)
    worker.submit(entry)
    async with asyncio.timeout(WAIT):
        await flaky.refusal.wait()
    await worker.stop(grace=5)
    assert worker.in_hand == 0
    assert [e.meta.call_id for e in rig.spool.entries()] == [entry.meta.call_id]
    worker.submit(entry)  # after stop: left for the next start, not an error
    assert worker.in_hand == 0


# The "mailbox is full" email.


async def test_full_mailbox_tells_the_owner_once_per_spell(rig: Rig, smtp: SmtpServer) -> None:
    mailbox_id = await rig.mailbox(max_messages=1)

    first = await rig.finalize(rig.entry(mailbox_id, speech(3.0, seed=4), EndedBy.HANGUP))
    assert first is not None
    # That message filled the mailbox: the owner is told now, and not again by callers.
    assert not await rig.deposits.mailbox_full(rig.account_id, mailbox_id)
    assert not await rig.deposits.mailbox_full(rig.account_id, mailbox_id)
    kinds = [n.kind for n in await rig.outbox()]
    assert sorted(kinds) == ["mailbox_full", "new_message"]

    assert await rig.emails.run_once() == 2
    subjects = sorted(str(r.message["Subject"]) for r in smtp.messages())
    assert subjects[1] == "Voicemail box Front desk is full"

    await MessageService(rig.rt.uow, rig.store, rig.clock).delete(rig.account_id, first.id)
    # A caller now finds room (no email), and the next message fills it again.
    assert not await rig.deposits.mailbox_full(rig.account_id, mailbox_id)
    second = await rig.finalize(rig.entry(mailbox_id, speech(3.0, seed=5), EndedBy.HANGUP))
    assert second is not None
    assert not await rig.deposits.mailbox_full(rig.account_id, mailbox_id)
    kinds = [n.kind for n in await rig.outbox()]
    assert (
        kinds.count(NotificationKind.MAILBOX_FULL) == 2
        and kinds.count(NotificationKind.NEW_MESSAGE) == 2
    )

    # The hook for deletions re-arms the notice at once.
    await MessageService(rig.rt.uow, rig.store, rig.clock).delete(rig.account_id, second.id)
    assert await full_notified_at(rig, mailbox_id) is not None
    await rig.deposits.space_changed(rig.account_id, mailbox_id)
    assert await full_notified_at(rig, mailbox_id) is None
    third = await rig.finalize(rig.entry(mailbox_id, speech(3.0, seed=6), EndedBy.HANGUP))
    assert third is not None
    assert not await rig.deposits.mailbox_full(rig.account_id, mailbox_id)
    assert [n.kind for n in await rig.outbox()].count(NotificationKind.MAILBOX_FULL) == 3

    assert await rig.emails.run_once() == 4
    full = [r for r in smtp.messages() if "is full" in str(r.message["Subject"])]
    assert len(full) == 3 and all(r.rcpt_tos == [OWNER] for r in full)


async def full_notified_at(rig: Rig, mailbox_id: str) -> datetime | None:
    async with rig.rt.db.begin() as conn:
        query = select(t.mailboxes.c.full_notified_at).where(t.mailboxes.c.id == mailbox_id)
        value = (await conn.execute(query)).scalar_one()
    assert value is None or isinstance(value, datetime)
    return value


async def test_callers_finding_it_full_tell_the_owner_once(rig: Rig) -> None:
    mailbox_id = await rig.mailbox(max_messages=3)
    for seed in (7, 8):
        assert await rig.finalize(rig.entry(mailbox_id, speech(3.0, seed), EndedBy.HANGUP))
    assert await full_notified_at(rig, mailbox_id) is None
    # The owner lowers the limit: full now, and nobody told yet. Five callers at once.
    await MailboxService(rig.rt.uow, rig.store, rig.clock).update(
        rig.account_id, mailbox_id, {"max_messages": 2}
    )
    results = await asyncio.gather(
        *(rig.deposits.mailbox_full(rig.account_id, mailbox_id) for _ in range(5))
    )
    assert sorted(results) == [False, False, False, False, True]
    assert [n.kind for n in await rig.outbox()].count(NotificationKind.MAILBOX_FULL) == 1
    assert await full_notified_at(rig, mailbox_id) == rig.clock.now()
