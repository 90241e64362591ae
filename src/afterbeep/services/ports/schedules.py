"""Repository for schedules (business hours)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from afterbeep.domain.schedules import StoredSchedule

if TYPE_CHECKING:
    from afterbeep.services.ports import Page


class ScheduleRepo(Protocol):
    async def add(self, schedule: StoredSchedule) -> None: ...
    async def get(self, account_id: str, schedule_id: str) -> StoredSchedule | None: ...

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[StoredSchedule]:
        """Newest first."""
        ...

    async def update(self, schedule: StoredSchedule) -> bool:
        """False when it is not in the account."""
        ...

    async def delete(self, account_id: str, schedule_id: str) -> bool: ...
