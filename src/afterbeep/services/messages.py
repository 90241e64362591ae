"""MessageService: voicemail messages, their audio and signed links to it.

A message's audio is uploaded before its row is committed, so a listed message always has its
audio; a crash in between leaves at most an object that a retry with the same call id
overwrites. The row, its `message.*` event and (on delete) the object removal share one
transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import unicodedata
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from afterbeep import signing
from afterbeep.domain import mailboxes as mailbox_rules
from afterbeep.domain import messages as rules
from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import InvalidInput, NotFound
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.mailboxes import Mailbox, Usage
from afterbeep.domain.messages import Folder, Message
from afterbeep.domain.transcripts import TranscriptionStatus
from afterbeep.services.mailboxes import find_mailbox
from afterbeep.services.message_waiting import MessageWaiting, NoMessageWaiting
from afterbeep.services.ports import Page, UnitOfWork, UnitOfWorkFactory
from afterbeep.services.ports.storage import (
    ByteStream,
    ObjectNotFound,
    ObjectStore,
    StoredObject,
    message_key,
)
from afterbeep.services.ports.transcripts import SubjectKind
from afterbeep.services.transcripts import OFF_REASON, TranscriptionQueue

log = logging.getLogger("afterbeep.messages")

LINK_TTL_SECONDS = signing.MAX_TTL_SECONDS
# A message deleted from the inbox can be restored for this long; then it is purged.
UNDO_SECONDS = 60
PURGE_BATCH = 100
CALLER_MAX = 300
CALLER_NAME_MAX = 200


@dataclass(frozen=True, slots=True)
class SignedLink:
    url: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class MessageAudio:
    message: Message
    size: int
    etag: str
    content_type: str


def message_audio_path(message_id: str) -> str:
    """Where the API serves a message's audio to holders of a signed link (no API key)."""
    return f"/v1/links/messages/{message_id}/audio"


def message_audio_link(
    public_url: str,
    secret_key: bytes,
    message_id: str,
    *,
    now: datetime,
    ttl_seconds: int = LINK_TTL_SECONDS,
) -> SignedLink:
    """A URL to the message's audio that works without an API key for `ttl_seconds` (≤ 900)."""
    url = signing.make_signed_url(
        public_url, message_audio_path(message_id), secret_key, ttl_seconds, now.timestamp()
    )
    expires = datetime.fromtimestamp(int(now.timestamp()) + ttl_seconds, UTC)
    return SignedLink(url=url, expires_at=expires)


def _clean_text(value: str | None, limit: int) -> str | None:
    """Caller details come from the far end: keep the message whatever they hold, so drop
    control characters and cut to `limit` rather than refuse."""
    if value is None:
        return None
    value = "".join(ch for ch in value if unicodedata.category(ch) != "Cc").strip()
    return value[:limit] or None


def _utc(value: datetime | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except OverflowError as exc:
        raise InvalidInput(field, "is out of range") from exc


class MessageService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        store: ObjectStore,
        clock: Clock,
        transcription: TranscriptionQueue | None = None,
        message_waiting: MessageWaiting = NoMessageWaiting(),
    ) -> None:
        self._uow = uow
        self._store = store
        self._clock = clock
        self._transcription = transcription
        # told of every change of a mailbox's messages (phones' message-waiting lights)
        self._waiting = message_waiting

    async def store_message(
        self,
        *,
        account_id: str,
        mailbox_id: str,
        call_id: str,
        caller: str | None,
        caller_name: str | None,
        callee: str | None,
        wav_path: Path,
        duration_ms: int,
        recovered: bool = False,
        checked: bool = False,
        with_row: Callable[[UnitOfWork, Mailbox, Message], Awaitable[None]] | None = None,
    ) -> Message:
        """Keep a recorded message: audio first, then the row and `message.created`.

        Idempotent on (account, `call_id`): when that call already left a message it is
        returned as it is and nothing is uploaded. `call_id` must pass
        `domain.messages.check_call_id`; map a raw SIP Call-ID to such an id first.
        `checked`: the caller has just seen the mailbox there and no message of that call (the
        look-up before the upload is skipped). `with_row` runs in the transaction that adds
        the row, when this call adds it (not when another writer's row is found).
        """
        key = message_key(account_id, rules.check_call_id(call_id))
        if duration_ms < 0:
            raise InvalidInput("duration_ms", "must not be negative")
        caller = _clean_text(caller, CALLER_MAX)
        caller_name = _clean_text(caller_name, CALLER_NAME_MAX)
        callee = _clean_text(callee, CALLER_MAX)

        if not checked:
            async with self._uow() as uow:
                if await find_mailbox(uow, account_id, mailbox_id) is None:
                    raise NotFound("mailbox", mailbox_id)
                existing = await uow.messages.get_by_call_id(account_id, call_id)
            if existing is not None:
                return existing

        stored = await self._store.put_file(key, wav_path, rules.AUDIO_CONTENT_TYPE)
        now = self._clock.now()
        message = Message(
            id=new_id("msg"),
            account_id=account_id,
            mailbox_id=mailbox_id,
            call_id=call_id,
            caller=caller,
            caller_name=caller_name,
            callee=callee,
            duration_ms=duration_ms,
            folder=Folder.NEW,
            read=False,
            size_bytes=stored.size,
            audio_key=key,
            recovered=recovered,
            created_at=now,
            updated_at=now,
        )
        mailbox_gone = queued = False
        async with self._uow() as uow:
            mailbox = await find_mailbox(uow, account_id, mailbox_id)
            if mailbox is None:
                mailbox_gone = True
            elif await uow.messages.add_if_absent(
                message := await self._with_transcription(uow, message)
            ):
                # The job is written with the message: a crash after the commit loses neither.
                if self._transcription is not None and (
                    message.transcription_status is TranscriptionStatus.PENDING
                ):
                    queued = await self._transcription.enqueue(
                        uow, account_id, SubjectKind.MESSAGE, message.id, mailbox.language
                    )
                await uow.events.publish(account_id, rules.CREATED, rules.to_json(message))
                if with_row is not None:
                    await with_row(uow, mailbox, message)
            else:
                # Another writer stored this call's message between our two transactions.
                winner = await uow.messages.get_by_call_id(account_id, call_id)
                assert winner is not None
                message = winner
        if mailbox_gone:
            await self._store.delete(key)
            raise NotFound("mailbox", mailbox_id)
        if queued and self._transcription is not None:
            self._transcription.queued()
        self._waiting.mailbox_changed(account_id, mailbox_id)
        log.info(
            "message stored",
            extra={
                "message_id": message.id,
                "mailbox_id": mailbox_id,
                "duration_ms": message.duration_ms,
                "recovered": recovered,
            },
        )
        return message

    async def _with_transcription(self, uow: UnitOfWork, message: Message) -> Message:
        reason: str | None
        if self._transcription is None:
            status, reason = TranscriptionStatus.SKIPPED, OFF_REASON
        else:
            status, reason = await self._transcription.status_for_new(uow)
        return dataclasses.replace(
            message, transcription_status=status, transcription_reason=reason
        )

    async def get(self, account_id: str, message_id: str) -> Message:
        async with self._uow() as uow:
            return await self._message(uow, account_id, message_id)

    async def list(
        self,
        account_id: str,
        mailbox_id: str | None,
        *,
        folder: Folder | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[Message]:
        """Newest first, of one mailbox or (None) all the account's; `created_after` and
        `created_before` bound [after, before), naive = UTC."""
        created_after = _utc(created_after, "created_after")
        created_before = _utc(created_before, "created_before")
        async with self._uow() as uow:
            if mailbox_id is not None and await find_mailbox(uow, account_id, mailbox_id) is None:
                raise NotFound("mailbox", mailbox_id)
            return await uow.messages.list(
                account_id,
                mailbox_id,
                folder=folder,
                created_after=created_after,
                created_before=created_before,
                cursor=cursor,
                limit=limit,
            )

    async def update(
        self,
        account_id: str,
        message_id: str,
        *,
        folder: Folder | None = None,
        read: bool | None = None,
    ) -> Message:
        """Move the message to `folder` and/or mark it read; `message.updated` when it changed."""
        async with self._uow() as uow:
            current = await self._message(uow, account_id, message_id)
            changed = dataclasses.replace(
                current,
                folder=current.folder if folder is None else Folder(folder),
                read=current.read if read is None else read,
            )
            if changed == current:
                return current
            changed = dataclasses.replace(changed, updated_at=self._clock.now())
            await uow.messages.update(changed)
            await uow.events.publish(account_id, rules.UPDATED, rules.to_json(changed))
        self._waiting.mailbox_changed(account_id, changed.mailbox_id)
        return changed

    async def delete(self, account_id: str, message_id: str) -> None:
        """Remove the message and its audio; `message.deleted`."""
        async with self._uow() as uow:
            message = await self._message(uow, account_id, message_id)
            await uow.messages.delete(account_id, message_id)
            await uow.events.publish(account_id, rules.DELETED, rules.to_json(message))
            # Last, so a failure rolls the row back and the delete can be retried.
            await self._store.delete(message.audio_key)
        self._waiting.mailbox_changed(account_id, message.mailbox_id)
        log.info(
            "message deleted", extra={"message_id": message_id, "mailbox_id": message.mailbox_id}
        )

    async def trash(self, account_id: str, message_id: str) -> Message:
        """Delete the message from the inbox, restorable (`restore`) for `UNDO_SECONDS`; it is
        gone from every list, count and link at once. `purge_trashed` then removes the row
        and audio and publishes `message.deleted`, as `delete` does at once."""
        async with self._uow() as uow:
            message = await self._message(uow, account_id, message_id)
            await uow.messages.trash(account_id, message_id, self._clock.now())
        self._waiting.mailbox_changed(account_id, message.mailbox_id)
        log.info("message trashed", extra={"message_id": message_id})
        return message

    async def restore(
        self, account_id: str, message_id: str, mailbox_ids: Collection[str] | None = None
    ) -> Message:
        """Undo `trash` while the message has not been purged yet; with `mailbox_ids`, only
        a message of one of those mailboxes."""
        if not is_id(message_id, "msg"):
            raise NotFound("message", message_id)
        async with self._uow() as uow:
            message = await uow.messages.restore(account_id, message_id, mailbox_ids)
        if message is None:
            raise NotFound("message", message_id)
        self._waiting.mailbox_changed(account_id, message.mailbox_id)
        log.info("message restored", extra={"message_id": message_id})
        return message

    async def purge_trashed(self) -> int:
        """Remove for good the messages trashed more than `UNDO_SECONDS` ago; how many."""
        cutoff = self._clock.now() - timedelta(seconds=UNDO_SECONDS)
        purged = 0
        while True:
            async with self._uow() as uow:
                batch = await uow.messages.trashed_before(cutoff, PURGE_BATCH)
                for message in batch:
                    await uow.messages.delete(message.account_id, message.id)
                    await uow.events.publish(
                        message.account_id, rules.DELETED, rules.to_json(message)
                    )
                for message in batch:
                    await self._store.delete(message.audio_key)
            for account_id, mailbox_id in sorted({(m.account_id, m.mailbox_id) for m in batch}):
                self._waiting.mailbox_changed(account_id, mailbox_id)
            purged += len(batch)
            if len(batch) < PURGE_BATCH:
                return purged

    async def mailbox_usage(self, account_id: str, mailbox_id: str) -> Usage:
        async with self._uow() as uow:
            if await find_mailbox(uow, account_id, mailbox_id) is None:
                raise NotFound("mailbox", mailbox_id)
            return (await uow.messages.usage(account_id, [mailbox_id]))[mailbox_id]

    async def is_full(self, account_id: str, mailbox_id: str) -> bool:
        """Whether the mailbox has reached `max_messages` or `quota_mb`."""
        async with self._uow() as uow:
            mailbox = await find_mailbox(uow, account_id, mailbox_id)
            if mailbox is None:
                raise NotFound("mailbox", mailbox_id)
            usage = (await uow.messages.usage(account_id, [mailbox_id]))[mailbox_id]
        return mailbox_rules.is_full(mailbox, usage)

    async def audio(self, account_id: str, message_id: str) -> MessageAudio:
        """The message and the size and version of its audio, to answer a (range) request."""
        async with self._uow() as uow:
            message = await self._message(uow, account_id, message_id)
        return await self._audio_of(message)

    async def audio_by_link(
        self, message_id: str, exp: str, sig: str, secret_key: bytes
    ) -> MessageAudio | None:
        """Like `audio` for a signed link instead of an account; None when the link is not
        valid now (bad signature, expired, or too far ahead)."""
        path = message_audio_path(message_id)
        if not signing.verify_link(secret_key, path, exp, sig, self._clock.now().timestamp()):
            return None
        async with self._uow() as uow:
            message = await uow.messages.get_by_id(message_id) if is_id(message_id, "msg") else None
        if message is None:
            raise NotFound("message", message_id)
        return await self._audio_of(message)

    async def open_audio(self, audio: MessageAudio, start: int, end_inclusive: int) -> ByteStream:
        try:
            return await self._store.open_range(audio.message.audio_key, start, end_inclusive)
        except ObjectNotFound as exc:
            raise NotFound("message audio", audio.message.id) from exc

    async def audio_link(
        self,
        account_id: str,
        message_id: str,
        *,
        public_url: str,
        secret_key: bytes,
        ttl_seconds: int = LINK_TTL_SECONDS,
    ) -> SignedLink:
        if not 0 < ttl_seconds <= signing.MAX_TTL_SECONDS:
            raise InvalidInput("ttl_seconds", f"must be 1 to {signing.MAX_TTL_SECONDS}")
        async with self._uow() as uow:
            message = await self._message(uow, account_id, message_id)
        return message_audio_link(
            public_url, secret_key, message.id, now=self._clock.now(), ttl_seconds=ttl_seconds
        )

    async def _audio_of(self, message: Message) -> MessageAudio:
        try:
            stored: StoredObject = await self._store.stat(message.audio_key)
        except ObjectNotFound as exc:
            raise NotFound("message audio", message.id) from exc
        return MessageAudio(message, stored.size, stored.etag, rules.AUDIO_CONTENT_TYPE)

    async def _message(self, uow: UnitOfWork, account_id: str, message_id: str) -> Message:
        message = (
            await uow.messages.get(account_id, message_id) if is_id(message_id, "msg") else None
        )
        if message is None:
            raise NotFound("message", message_id)
        return message


class TrashPurger:
    """Runs `MessageService.purge_trashed` every `every` seconds until stopped."""

    def __init__(self, messages: MessageService, every: float = 15.0) -> None:
        self._messages = messages
        self._every = every
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="trash-purger")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self._stopping.set()
            await task

    async def _run(self) -> None:
        while True:
            try:
                purged = await self._messages.purge_trashed()
            except Exception:
                log.exception("purging deleted messages failed")
            else:
                if purged:
                    log.info("purged %d deleted messages", purged)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._every)
                return
