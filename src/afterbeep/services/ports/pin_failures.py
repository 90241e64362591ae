"""Wrong PINs at the phone menu, per mailbox and calling source (`domain.pin_lockout`)."""

from __future__ import annotations

from typing import Protocol

from afterbeep.domain.pin_lockout import PinFailures


class PinFailureRepo(Protocol):
    async def get(self, mailbox_id: str, source: str) -> PinFailures | None: ...
    async def put(self, record: PinFailures) -> None: ...
    async def clear(self, mailbox_id: str, source: str) -> None: ...
    async def clear_mailbox(self, mailbox_id: str) -> None: ...
