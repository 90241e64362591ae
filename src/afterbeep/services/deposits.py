"""DepositService: a finished recording from the spool becomes a stored message, and the owner
is told.

`finalize` runs after the caller is gone (or at start-up, for a recording a crash left in the
spool). In order: trim the trailing silence (not after `#`), discard what is shorter than the
mailbox's `min_message_seconds`, write the 8 kHz mono 16-bit WAV, `MessageService.store_message`
(audio uploaded, then in one transaction the row, `message.created` published with a signed
audio link and the owner's email queued in the email outbox). Every step may run again after a crash: the message is
keyed by its call id and the email by `new:<message id>`, so a retry makes no duplicate.

The "mailbox is full" email goes out once per spell of fullness: `mailboxes.full_notified_at`
is set (atomically) when it is queued, and cleared whenever the mailbox is seen below its
limits: when a deposit starts to be stored, on `mailbox_full` and on `space_changed` (call it
after messages are deleted).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from afterbeep.audio.levels import DEFAULT_SILENCE_THRESHOLD, trim_trailing_silence
from afterbeep.audio.pcm import TELEPHONY_RATE
from afterbeep.audio.rendition import write_wav
from afterbeep.domain import mailboxes as mailbox_rules
from afterbeep.domain import messages as message_rules
from afterbeep.domain.clock import Clock, iso
from afterbeep.domain.errors import NotFound
from afterbeep.domain.mailboxes import Mailbox
from afterbeep.domain.messages import EndedBy, Message, RecordedCall
from afterbeep.domain.transcripts import TranscriptionStatus
from afterbeep.services import notifications as rules
from afterbeep.services.mailboxes import find_mailbox
from afterbeep.services.message_waiting import MessageWaiting, NoMessageWaiting
from afterbeep.services.messages import MessageService, message_audio_link
from afterbeep.services.ports import EventOutbox, UnitOfWork, UnitOfWorkFactory
from afterbeep.services.ports.notifications import NotificationKind
from afterbeep.services.ports.storage import ObjectStore
from afterbeep.services.transcripts import TranscriptionQueue
from afterbeep.services.voicemail_sequence import SequenceAdmission

Audio = npt.NDArray[np.int16]

log = logging.getLogger("afterbeep.deposits")

TRIM_KEEP_MS = 200


class _AudioLinkedEvents:
    """The event outbox, with a signed link to the audio added to `message.created`."""

    def __init__(self, inner: EventOutbox, link: Callable[[str], dict[str, str]]) -> None:
        self._inner = inner
        self._link = link

    async def publish(self, account_id: str, event: str, data: Mapping[str, Any]) -> None:
        message_id = data.get("id")
        if event == message_rules.CREATED and isinstance(message_id, str):
            data = {**data, **self._link(message_id)}
        await self._inner.publish(account_id, event, data)


class _AudioLinkingUnitOfWork:
    """A unit of work whose `events` is `_AudioLinkedEvents`; everything else is the inner one's."""

    def __init__(self, inner: UnitOfWork, link: Callable[[str], dict[str, str]]) -> None:
        self._inner = inner
        self._events = _AudioLinkedEvents(inner.events, link)

    @property
    def events(self) -> EventOutbox:
        return self._events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class DepositService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        store: ObjectStore,
        clock: Clock,
        *,
        public_url: str,
        secret_key: bytes,
        tmp_dir: Path,
        on_email_queued: Callable[[], None] | None = None,
        silence_threshold: int = DEFAULT_SILENCE_THRESHOLD,
        transcription: TranscriptionQueue | None = None,
        email_wait_transcript_seconds: float = 30.0,
        sequence: SequenceAdmission | None = None,
        message_waiting: MessageWaiting = NoMessageWaiting(),
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._public_url = public_url
        self._secret_key = secret_key
        self._tmp_dir = tmp_dir
        self._on_email_queued = on_email_queued
        self._silence_threshold = silence_threshold
        self._email_wait = timedelta(seconds=max(0.0, email_wait_transcript_seconds))
        self._messages = MessageService(
            self._uow_linking_audio, store, clock, transcription, message_waiting
        )
        self._sequence = sequence  # a team's mailbox: its messages go to the seed 002 sequence

    async def finalize(self, meta: RecordedCall, pcm: Audio, recovered: bool) -> Message | None:
        """Store the recording of `entry` as a message and queue its email; None when there is
        no message to keep (too short once trimmed, or the mailbox is gone).

        Safe to call again for the same entry (after a crash or a failed try): the message
        already stored is returned and nothing is duplicated. Storage and database errors
        propagate (`StorageUnavailable`, SQLAlchemy errors): the caller keeps the spool entry
        and retries.
        """
        async with self._uow() as uow:
            mailbox = await find_mailbox(uow, meta.account_id, meta.mailbox_id)
            existing = None
            if mailbox is not None:
                existing = await uow.messages.get_by_call_id(meta.account_id, meta.call_id)
                if existing is None:
                    await self._clear_full_if_space(uow, mailbox)
        if mailbox is None:
            log.warning(
                "recording dropped: its mailbox no longer exists",
                extra={"mailbox_id": meta.mailbox_id, "call_id": meta.call_id},
            )
            return None
        if existing is not None:
            await self._notify_owner(existing)  # a retry: queued already, or now
            return existing
        keep_all = not recovered and meta.ended_by == EndedBy.FINISH_KEY.value
        audio = (
            pcm if keep_all else trim_trailing_silence(pcm, self._silence_threshold, TRIM_KEEP_MS)
        )
        if audio.size < mailbox.min_message_seconds * TELEPHONY_RATE:
            log.info(
                "recording discarded: shorter than the mailbox minimum",
                extra={
                    "mailbox_id": mailbox.id,
                    "call_id": meta.call_id,
                    "duration_ms": audio.size * 1000 // TELEPHONY_RATE,
                    "recovered": recovered,
                },
            )
            return None
        try:
            return await self._store(meta, audio, recovered)
        except NotFound:
            log.warning(
                "recording dropped: its mailbox was deleted while it was stored",
                extra={"mailbox_id": meta.mailbox_id, "call_id": meta.call_id},
            )
            return None

    async def mailbox_full(self, account_id: str, mailbox_id: str) -> bool:
        """A caller found the mailbox full: queue the "mailbox is full" email unless the owner
        was told already in this spell. True when an email was queued."""
        async with self._uow() as uow:
            mailbox = await find_mailbox(uow, account_id, mailbox_id)
            if mailbox is None:
                return False
            if await self._clear_full_if_space(uow, mailbox):
                return False
            queued = await self._queue_full_notice(uow, mailbox)
        if queued:
            self._email_queued()
        return queued

    async def space_changed(self, account_id: str, mailbox_id: str) -> None:
        """Messages were removed (or limits raised): re-arm the "full" email once there is room."""
        async with self._uow() as uow:
            mailbox = await find_mailbox(uow, account_id, mailbox_id)
            if mailbox is not None:
                await self._clear_full_if_space(uow, mailbox)

    async def copied(self, message: Message) -> None:
        """`message` was copied into its mailbox (forwarded by phone): its owner is told as
        of a deposit (the new-message email, once)."""
        await self._notify_owner(message)

    async def _store(self, meta: RecordedCall, audio: Audio, recovered: bool) -> Message:
        """Upload and add the message; the owner's emails are queued in the transaction that
        adds its row (one transaction fewer than after it), or after, when another writer's
        row was found. Should queueing them fail, the message is stored alone first, then
        they are queued as for a retry: a broken email path never keeps a message out."""
        told: list[tuple[bool, bool]] = []
        email_failed = False

        async def with_row(uow: UnitOfWork, mailbox: Mailbox, message: Message) -> None:
            nonlocal email_failed
            try:
                told.append(await self._queue_owner_emails(uow, mailbox, message))
            except Exception:
                email_failed = True
                raise

        fd, name = tempfile.mkstemp(prefix="deposit-", suffix=".wav", dir=self._tmp_dir)
        os.close(fd)
        path = Path(name)
        try:
            await asyncio.to_thread(write_wav, path, audio)
            store = functools.partial(
                self._messages.store_message,
                account_id=meta.account_id,
                mailbox_id=meta.mailbox_id,
                call_id=meta.call_id,
                caller=meta.caller,
                caller_name=meta.caller_name,
                callee=meta.callee,
                wav_path=path,
                duration_ms=audio.size * 1000 // TELEPHONY_RATE,
                recovered=recovered,
                checked=True,
            )
            try:
                message = await store(with_row=with_row)
            except Exception:
                if not email_failed:
                    raise
                log.exception(
                    "owner email not queued with the message: storing the message alone",
                    extra={"mailbox_id": meta.mailbox_id, "call_id": meta.call_id},
                )
                message = await store()
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        if told:
            self._owner_emails_queued(*told[0])
        else:
            await self._notify_owner(message)
        return message

    async def _notify_owner(self, message: Message) -> None:
        """Queue the new-message email (once), and the "full" one if this message filled it."""
        async with self._uow() as uow:
            mailbox = await find_mailbox(uow, message.account_id, message.mailbox_id)
            if mailbox is None:
                return
            told = await self._queue_owner_emails(uow, mailbox, message)
        self._owner_emails_queued(*told)

    def _owner_emails_queued(self, queued: bool, team: bool) -> None:
        if queued:
            self._email_queued()
        if team and self._sequence is not None:
            self._sequence.queued()

    async def _queue_owner_emails(
        self, uow: UnitOfWork, mailbox: Mailbox, message: Message
    ) -> tuple[bool, bool]:
        """In `uow`: the emails of `_notify_owner` and the team sequence's admission; whether
        an email was queued, whether the sequence took the message."""
        queued = team = False
        if self._sequence is not None:
            team = await self._sequence.admit(uow, mailbox, message)
        if mailbox.notify_email:
            now = self._clock.now()
            email = rules.pending(
                account_id=message.account_id,
                kind=NotificationKind.NEW_MESSAGE,
                mailbox_id=mailbox.id,
                message_id=message.id,
                dedupe_key=rules.new_message_key(message.id),
                to_addr=mailbox.notify_email,
                now=now,
            )
            # The email waits for the transcript, in the row (a crash keeps the wait): the
            # transcription worker makes it due when the transcript is written, and
            # otherwise it goes at the deadline saying the transcript will follow. The
            # status is read with the row locked, so a transcript written meanwhile sees
            # this email and makes it due.
            status = await uow.transcripts.message_status(message.account_id, message.id, lock=True)
            if status is TranscriptionStatus.PENDING:
                email = dataclasses.replace(email, next_attempt_at=now + self._email_wait)
            queued = await uow.notifications.enqueue(email)
        usage = (await uow.messages.usage(mailbox.account_id, [mailbox.id]))[mailbox.id]
        if mailbox_rules.is_full(mailbox, usage):
            queued = await self._queue_full_notice(uow, mailbox) or queued
        return queued, team

    async def _queue_full_notice(self, uow: UnitOfWork, mailbox: Mailbox) -> bool:
        if not mailbox.notify_email:
            return False
        now = self._clock.now()
        if not await uow.notifications.mark_full_notified(mailbox.account_id, mailbox.id, now):
            return False
        await uow.notifications.enqueue(
            rules.pending(
                account_id=mailbox.account_id,
                kind=NotificationKind.MAILBOX_FULL,
                mailbox_id=mailbox.id,
                message_id=None,
                dedupe_key=rules.mailbox_full_key(mailbox.id),
                to_addr=mailbox.notify_email,
                now=now,
            )
        )
        log.info("mailbox full: owner notice queued", extra={"mailbox_id": mailbox.id})
        return True

    async def _clear_full_if_space(self, uow: UnitOfWork, mailbox: Mailbox) -> bool:
        """Clear the "owner told" flag when the mailbox has room; True when it has room."""
        usage = (await uow.messages.usage(mailbox.account_id, [mailbox.id]))[mailbox.id]
        if mailbox_rules.is_full(mailbox, usage):
            return False
        await uow.notifications.clear_full_notified(mailbox.account_id, mailbox.id)
        return True

    def _email_queued(self) -> None:
        if self._on_email_queued is not None:
            self._on_email_queued()

    def _audio_link(self, message_id: str) -> dict[str, str]:
        link = message_audio_link(
            self._public_url, self._secret_key, message_id, now=self._clock.now()
        )
        return {"audio_url": link.url, "audio_url_expires_at": iso(link.expires_at)}

    @asynccontextmanager
    async def _uow_linking_audio(self) -> AsyncIterator[UnitOfWork]:
        async with self._uow() as uow:
            yield _AudioLinkingUnitOfWork(uow, self._audio_link)
