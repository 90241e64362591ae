"""PhoneMenuService: what the owner's voicemail by phone does (the telephony layer's phone menu
asks it): find the mailbox, check the PIN under the lockout, list, read, move, forward and
delete messages, keep greetings recorded by phone, change the PIN.

Messages change only through `MessageService` (so what follows a change, such as the
message-waiting indication, follows these too). A lockout queues the owner's email and
publishes `mailbox.pin_locked` in the transaction that records it.
"""

from __future__ import annotations

import enum
import io
import logging
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from afterbeep.audio.rendition import read_wav_pcm, write_wav
from afterbeep.domain import messages as message_rules
from afterbeep.domain.clock import Clock, iso
from afterbeep.domain.errors import NotFound
from afterbeep.domain.ids import is_id
from afterbeep.domain.mailboxes import Mailbox
from afterbeep.domain.messages import Folder, Message
from afterbeep.domain.pin_lockout import ALL_SOURCES, PinLockoutPolicy
from afterbeep.services import notifications as notification_rules
from afterbeep.services.mailboxes import MailboxService, find_mailbox
from afterbeep.services.media import MediaService
from afterbeep.services.messages import MessageService
from afterbeep.services.ports import UnitOfWork, UnitOfWorkFactory
from afterbeep.services.ports.notifications import NotificationKind
from afterbeep.services.ports.storage import ObjectStore

Audio = npt.NDArray[np.int16]

log = logging.getLogger("afterbeep.phone_menu")

PIN_LOCKED_EVENT = "mailbox.pin_locked"
LIST_PAGE = 100
GREETING_NAMES = {
    "greeting_media_id": "unavailable greeting",
    "busy_greeting_media_id": "busy greeting",
    "temp_greeting_media_id": "temporary greeting",
    "name_media_id": "recorded name",
}


class PinCheck(enum.StrEnum):
    OK = "ok"
    WRONG = "wrong"
    LOCKED = "locked"


class PhoneMenuService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        store: ObjectStore,
        clock: Clock,
        mailboxes: MailboxService,
        messages: MessageService,
        media: MediaService,
        policy: PinLockoutPolicy | None = None,
        on_email_queued: Callable[[], None] | None = None,
        tmp_dir: Path | None = None,
        on_copied: Callable[[Message], Awaitable[None]] | None = None,
    ) -> None:
        self._uow = uow
        self._store = store
        self._clock = clock
        self._mailboxes = mailboxes
        self._messages = messages
        self._media = media
        self._policy = policy or PinLockoutPolicy()
        self._on_email_queued = on_email_queued
        self._tmp_dir = tmp_dir
        self._on_copied = on_copied  # a forwarded copy: its owner is told as of a deposit

    def now(self) -> datetime:
        return self._clock.now()

    # -- getting in ----------------------------------------------------------------------------

    async def mailbox(self, account_id: str, mailbox_id: str) -> Mailbox | None:
        async with self._uow() as uow:
            return await find_mailbox(uow, account_id, mailbox_id)

    async def by_extension(self, account_id: str, extension: str) -> Mailbox | None:
        """The mailbox of the account's user whose extension is `extension`."""
        if not extension.isdigit() or len(extension) > 20:
            return None
        async with self._uow() as uow:
            user = await uow.users.by_username(account_id, extension)
            if user is None or user.voicemail_id is None:
                return None
            return await find_mailbox(uow, account_id, user.voicemail_id)

    async def of_user(self, account_id: str, user_id: str) -> Mailbox | None:
        if not is_id(user_id, "usr"):
            return None
        async with self._uow() as uow:
            user = await uow.users.get(account_id, user_id)
            if user is None or user.voicemail_id is None:
                return None
            return await find_mailbox(uow, account_id, user.voicemail_id)

    async def locked(self, mailbox: Mailbox, source: str) -> bool:
        now = self._clock.now()
        async with self._uow() as uow:
            for subject in (source, ALL_SOURCES):
                if self._policy.locked(await uow.mailbox_pin_failures.get(mailbox.id, subject), now):
                    return True
        return False

    async def check_pin(self, mailbox: Mailbox, source: str, pin: str) -> PinCheck:
        """The PIN checked (argon2, off the event loop) unless the mailbox is locked for this
        source; a wrong one is counted and may lock it (the owner is then told)."""
        if await self.locked(mailbox, source):
            return PinCheck.LOCKED
        if await self._mailboxes.verify_pin(mailbox.account_id, mailbox.id, pin):
            async with self._uow() as uow:
                await uow.mailbox_pin_failures.clear(mailbox.id, source)
                await uow.mailbox_pin_failures.clear(mailbox.id, ALL_SOURCES)
            return PinCheck.OK
        now = self._clock.now()
        locked_now = queued = False
        async with self._uow() as uow:
            for subject in (source, ALL_SOURCES):
                before = await uow.mailbox_pin_failures.get(mailbox.id, subject)
                after = self._policy.failed(before, mailbox.id, subject, now)
                await uow.mailbox_pin_failures.put(after)
                if self._policy.locked(after, now) and not self._policy.locked(before, now):
                    if not locked_now:
                        queued = await self._tell_locked(uow, mailbox, after.locked_until)
                    locked_now = True
        if queued and self._on_email_queued is not None:
            self._on_email_queued()
        if locked_now:
            log.warning("mailbox locked after wrong PINs", extra={"mailbox_id": mailbox.id})
            return PinCheck.LOCKED
        return PinCheck.WRONG

    async def _tell_locked(
        self, uow: UnitOfWork, mailbox: Mailbox, until: datetime | None
    ) -> bool:
        now = self._clock.now()
        await uow.events.publish(
            mailbox.account_id,
            PIN_LOCKED_EVENT,
            {
                "mailbox_id": mailbox.id,
                "locked_at": iso(now),
                "locked_until": iso(until) if until is not None else None,
            },
        )
        if not mailbox.notify_email:
            return False
        await uow.notifications.enqueue(
            notification_rules.pending(
                account_id=mailbox.account_id,
                kind=NotificationKind.PIN_LOCKED,
                mailbox_id=mailbox.id,
                message_id=None,
                dedupe_key=f"pin-locked:{mailbox.id}:{iso(now)}",
                to_addr=mailbox.notify_email,
                now=now,
            )
        )
        return True

    # -- messages ------------------------------------------------------------------------------

    async def messages(self, mailbox: Mailbox) -> list[Message]:
        """Unread first, then read; oldest first in each."""
        found: list[Message] = []
        cursor: str | None = None
        while True:
            page = await self._messages.list(
                mailbox.account_id, mailbox.id, cursor=cursor, limit=LIST_PAGE
            )
            found.extend(page.items)
            cursor = page.next_cursor
            if cursor is None or len(found) >= mailbox.max_messages:
                break
        found.sort(key=lambda m: (m.read, m.created_at, m.id))
        return found

    async def audio(self, account_id: str, message_id: str) -> Audio:
        message = await self._messages.get(account_id, message_id)
        data = await self._store.get_bytes(message.audio_key)
        pcm, _rate = read_wav_pcm(data)
        return pcm

    async def mark_read(self, account_id: str, message_id: str) -> None:
        await self._messages.update(account_id, message_id, read=True)

    async def move(self, account_id: str, message_id: str, folder: Folder) -> None:
        await self._messages.update(account_id, message_id, folder=folder)

    async def delete(self, account_id: str, message_ids: Sequence[str]) -> None:
        for message_id in message_ids:
            try:
                await self._messages.delete(account_id, message_id)
            except NotFound:
                continue  # deleted meanwhile (the API, another call)

    async def forward(self, mailbox: Mailbox, message_id: str, extension: str) -> bool:
        """A copy of the message in the mailbox of the account's user `extension` (not the
        same mailbox); False when there is none."""
        target = await self.by_extension(mailbox.account_id, extension)
        if target is None or target.id == mailbox.id:
            return False
        message = await self._messages.get(mailbox.account_id, message_id)
        data = await self._store.get_bytes(message.audio_key)
        with tempfile.TemporaryDirectory(dir=self._tmp_dir) as tmp:
            path = Path(tmp) / "forward.wav"
            path.write_bytes(data)
            call_id = message_rules.check_call_id(f"{message.call_id}.fwd.{target.id}"[-200:])
            copy = await self._messages.store_message(
                account_id=mailbox.account_id,
                mailbox_id=target.id,
                call_id=call_id,
                caller=message.caller,
                caller_name=message.caller_name,
                callee=message.callee,
                wav_path=path,
                duration_ms=message.duration_ms,
            )
        if self._on_copied is not None:
            await self._on_copied(copy)
        return True

    # -- options -------------------------------------------------------------------------------

    async def save_greeting(self, mailbox: Mailbox, field: str, audio: Audio) -> Mailbox:
        """The recording as media of the account, set as the mailbox's greeting `field`."""
        wav = io.BytesIO()
        write_wav(wav, audio)
        name = f"{mailbox.name} ({GREETING_NAMES.get(field, field)}, recorded by phone)"
        media, _new = await self._media.import_bytes(mailbox.account_id, wav.getvalue(), name[:200])
        view = await self._mailboxes.update(mailbox.account_id, mailbox.id, {field: media.id})
        log.info("greeting recorded by phone", extra={"mailbox_id": mailbox.id, "kind": field})
        return view.mailbox

    async def remove_greeting(self, mailbox: Mailbox, field: str) -> Mailbox:
        view = await self._mailboxes.update(mailbox.account_id, mailbox.id, {field: None})
        return view.mailbox

    async def change_pin(self, mailbox: Mailbox, pin: str) -> None:
        await self._mailboxes.set_pin(mailbox.account_id, mailbox.id, pin)
