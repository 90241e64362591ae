"""The phone menu's way in and mailbox (`telephony.scripts.phone_menu`), over the
`PhoneMenuService`, and the voice it speaks with (the shipped prompts)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from afterbeep.domain.mailboxes import Mailbox
from afterbeep.domain.messages import Folder
from afterbeep.services.phone_menu import PhoneMenuService, PinCheck
from afterbeep.telephony.interface import Audio, Call
from afterbeep.telephony.prompts import sequence
from afterbeep.telephony.scripts.phone_menu import (
    GreetingKind,
    LoginResult,
    MenuMessage,
)

# Calls `number` back from the menu (bridged until that call ends).
CallBack = Callable[[Call, str], Awaitable[None]]

def voice(names: Sequence[str], language: str) -> Audio:
    """The shipped prompts and `domain.say` fragments, one after the other."""
    return sequence(names, language)


class ServiceDoor:
    def __init__(
        self,
        service: PhoneMenuService,
        account_id: str,
        source: str,
        language: str,
        mailbox: Mailbox | None,
        *,
        needs_pin: bool = True,
        call_back: CallBack | None = None,
    ) -> None:
        self._service = service
        self._account_id = account_id
        self._source = source
        self._mailbox = mailbox
        self._call_back = call_back
        self.language = mailbox.language if mailbox is not None else language
        self.needs_mailbox = mailbox is None
        self.needs_pin = needs_pin

    async def choose(self, extension: str) -> bool:
        self._mailbox = await self._service.by_extension(self._account_id, extension)
        if self._mailbox is not None:
            self.language = self._mailbox.language
        return self._mailbox is not None

    async def locked(self) -> bool:
        return self._mailbox is not None and await self._service.locked(self._mailbox, self._source)

    async def check(self, pin: str) -> LoginResult:
        if self._mailbox is None:
            return LoginResult.WRONG
        checked = await self._service.check_pin(self._mailbox, self._source, pin)
        return {
            PinCheck.OK: LoginResult.OK,
            PinCheck.WRONG: LoginResult.WRONG,
            PinCheck.LOCKED: LoginResult.LOCKED,
        }[checked]

    async def open(self) -> ServiceSession:
        assert self._mailbox is not None
        return ServiceSession(self._service, self._mailbox, self._call_back)


class ServiceSession:
    def __init__(
        self, service: PhoneMenuService, mailbox: Mailbox, call_back: CallBack | None
    ) -> None:
        self._service = service
        self._mailbox = mailbox
        self._call_back = call_back
        self.language = mailbox.language

    def now(self) -> datetime:
        return self._service.now().astimezone(ZoneInfo(self._mailbox.timezone))

    async def messages(self) -> list[MenuMessage]:
        zone = ZoneInfo(self._mailbox.timezone)
        return [
            MenuMessage(m.id, m.caller, m.created_at.astimezone(zone), m.read)
            for m in await self._service.messages(self._mailbox)
        ]

    async def audio(self, message_id: str) -> Audio:
        return await self._service.audio(self._mailbox.account_id, message_id)

    async def mark_read(self, message_id: str) -> None:
        await self._service.mark_read(self._mailbox.account_id, message_id)

    async def move(self, message_id: str, folder: Folder) -> None:
        await self._service.move(self._mailbox.account_id, message_id, folder)

    async def forward(self, message_id: str, extension: str) -> bool:
        return await self._service.forward(self._mailbox, message_id, extension)

    async def can_call_back(self) -> bool:
        return self._call_back is not None

    async def call_back(self, call: Call, number: str) -> None:
        if self._call_back is not None:
            await self._call_back(call, number)

    async def save_greeting(self, kind: GreetingKind, audio: Audio) -> None:
        self._mailbox = await self._service.save_greeting(self._mailbox, kind.value, audio)

    async def remove_greeting(self, kind: GreetingKind) -> None:
        self._mailbox = await self._service.remove_greeting(self._mailbox, kind.value)

    async def has_greeting(self, kind: GreetingKind) -> bool:
        return getattr(self._mailbox, kind.value) is not None

    async def change_pin(self, pin: str) -> None:
        await self._service.change_pin(self._mailbox, pin)

    async def finish(self, deleted: Sequence[str]) -> None:
        await self._service.delete(self._mailbox.account_id, deleted)
