"""Repositories for ring groups, queues and agents' statuses."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from afterbeep.domain.queues import AgentStatus, Queue
from afterbeep.domain.ring_groups import RingGroup

if TYPE_CHECKING:
    from afterbeep.services.ports import Page


class RingGroupRepo(Protocol):
    async def add(self, group: RingGroup) -> None: ...
    async def get(self, account_id: str, group_id: str) -> RingGroup | None: ...
    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[RingGroup]: ...

    async def update(self, group: RingGroup) -> bool:
        """False when it is not in the account."""
        ...

    async def delete(self, account_id: str, group_id: str) -> bool: ...


class QueueRepo(Protocol):
    async def add(self, queue: Queue) -> None: ...
    async def get(self, account_id: str, queue_id: str) -> Queue | None: ...
    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[Queue]: ...
    async def update(self, queue: Queue) -> bool: ...
    async def delete(self, account_id: str, queue_id: str) -> bool: ...

    async def member_user_ids(self, account_id: str) -> set[str]:
        """Every user who is a member of one of the account's queues."""
        ...

    async def statuses(
        self, account_id: str, user_ids: builtins.list[str] | None = None
    ) -> dict[str, AgentStatus]:
        """Stored agent statuses (of `user_ids`, or all); an agent missing is offline."""
        ...

    async def set_status(
        self, account_id: str, user_id: str, status: AgentStatus, now: datetime
    ) -> None: ...


class UserLookup(Protocol):
    """The account's users and devices, as ring groups and queues need them. Implemented by
    the users repository once it exists (`app.py` wires it); without one, ids are checked by
    their prefix only."""

    async def user_exists(self, account_id: str, user_id: str) -> bool: ...
    async def device_exists(self, account_id: str, device_id: str) -> bool: ...

    async def is_agent(self, account_id: str, user_id: str) -> bool:
        """The user exists in the account and has `is_agent` set."""
        ...

    async def agent_ids(self, account_id: str) -> builtins.list[str]:
        """The account's users with `is_agent` set."""
        ...
