"""Where an inbound call goes: the dialled number's destination, resolved before answering.

Only voicemail destinations exist today. Schedules (`schedule_id` → `closed_dest_*`), flows,
queues and users plug in here: `route()` is the one seam, and the telephony layer only acts on
the `Route` it returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from afterbeep.domain import mailboxes as mailbox_rules
from afterbeep.domain.mailboxes import Mailbox
from afterbeep.domain.numbers import DestKind, Number
from afterbeep.services.mailboxes import find_mailbox
from afterbeep.services.numbers import NumberService
from afterbeep.services.ports import UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class VoicemailRoute:
    number: Number
    mailbox: Mailbox
    full: bool
    greeting_key: str | None
    greeting_original_key: str | None = None  # to render the greeting when it is still pending
    greeting_duration_ms: int | None = None


@dataclass(frozen=True, slots=True)
class NoRoute:
    """The call cannot be placed: `code` is the SIP answer (404 unknown number, 480 unavailable)."""

    code: int
    reason: str


Route = VoicemailRoute | NoRoute


class CallRouter:
    def __init__(self, uow: UnitOfWorkFactory, numbers: NumberService) -> None:
        self._uow = uow
        self._numbers = numbers

    async def route(self, dialed: str) -> Route:
        number = await self._numbers.resolve(dialed)
        if number is None:
            return NoRoute(404, "Not Found")
        kind, dest_id = number.dest_kind, number.dest_id
        if kind is not DestKind.VOICEMAIL:
            return NoRoute(480, "Temporarily Unavailable")
        async with self._uow() as uow:
            mailbox = await find_mailbox(uow, number.account_id, dest_id)
            if mailbox is None:
                return NoRoute(480, "Temporarily Unavailable")
            usage = (await uow.messages.usage(number.account_id, [mailbox.id]))[mailbox.id]
            media = None
            if mailbox.greeting_media_id is not None:
                media = await uow.media.get(number.account_id, mailbox.greeting_media_id)
        full = mailbox_rules.is_full(mailbox, usage)
        if media is None:
            return VoicemailRoute(number, mailbox, full, None)
        return VoicemailRoute(
            number, mailbox, full, media.telephony_key, media.original_key, media.duration_ms
        )
