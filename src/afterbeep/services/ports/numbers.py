"""Repository for phone numbers."""

from __future__ import annotations

import builtins
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
        """Numbers whose destination or closed-hours destination is this object."""
        ...
