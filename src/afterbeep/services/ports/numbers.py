"""Repository for phone numbers."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from afterbeep.domain.numbers import DestKind, Number

if TYPE_CHECKING:
    from afterbeep.services.ports import Page


class NumberRepo(Protocol):
    async def add(self, number: Number) -> bool:
        """Insert; False when the E.164 number is already held (by any account)."""
        ...

    async def get(self, account_id: str, number_id: str) -> Number | None: ...

    async def by_e164(self, e164: str) -> Number | None:
        """The number across all accounts (one number, one owner)."""
        ...

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[Number]:
        """Newest first; `cursor` is a `next_cursor` from an earlier page."""
        ...

    async def update(self, number: Number) -> bool:
        """Replace the row of `number` in its account; False when the E.164 number is taken."""
        ...

    async def delete(self, account_id: str, number_id: str) -> bool: ...

    async def destination_exists(self, account_id: str, kind: DestKind, dest_id: str) -> bool: ...

    async def numbers_pointing_to(
        self, account_id: str, dest_kind: DestKind, dest_id: str
    ) -> builtins.list[Number]:
        """Numbers whose destination, closed-hours or holiday destination is this object."""
        ...

    async def numbers_using_schedule(
        self, account_id: str, schedule_id: str
    ) -> builtins.list[Number]:
        """Numbers routing by this schedule."""
        ...


class VerifiedSenderRepo(Protocol):
    """Caller ids verified by the operator: each number for at most one account."""

    async def holder(self, e164: str) -> str | None:
        """The account the number is verified for, if any."""
        ...

    async def add(self, account_id: str, e164: str, now: datetime) -> bool:
        """Verify; False when the number is verified already (for any account). The
        account's setups listing the number send from it at once."""
        ...

    async def remove(self, account_id: str, e164: str) -> bool:
        """False when the number was not verified for this account."""
        ...

    async def verified_among(self, account_id: str, e164s: Iterable[str]) -> set[str]: ...
