"""The queue line and agents' holds every node of a cluster shares (issue 23)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from afterbeep.domain.queues import AgentState, AgentStatus, WaitingCaller


@dataclass(frozen=True, slots=True)
class StoredAgent:
    """An agent as stored: its status and what holds it (None: nothing) until when."""

    user_id: str
    status: AgentStatus
    held: AgentState | None = None
    ticket: str | None = None
    held_until: datetime | None = None
    idle_since: datetime | None = None


class SharedFloor(Protocol):
    """Rows of every node: callers waiting (renewed by their node) and agents' holds. Every
    write names this node; a hold or a caller its node stops renewing expires."""

    node_id: str

    async def join(
        self, account_id: str, queue_id: str, ticket: str, joined_at: datetime, until: datetime
    ) -> None: ...

    async def look(
        self,
        account_id: str,
        queue_id: str,
        user_ids: Sequence[str],
        now: datetime,
        until: datetime,
        ticket: str | None = None,
    ) -> tuple[list[WaitingCaller], dict[str, StoredAgent]]:
        """The queue's line (live rows) and its members as stored; `ticket`'s row renewed."""
        ...

    async def claim(
        self,
        account_id: str,
        user_ids: Sequence[str],
        ticket: str,
        now: datetime,
        until: datetime,
    ) -> list[str]:
        """Hold each agent free and available for `ticket`'s offer: those it got (none when
        another node or queue holds them); the caller is marked offered when it got any."""
        ...

    async def release(
        self, account_id: str, user_id: str, ticket: str, *, still_offered: bool
    ) -> None:
        """`ticket`'s offer to the agent ended unanswered."""
        ...

    async def answered(
        self, account_id: str, user_id: str, ticket: str, others: Sequence[str], until: datetime
    ) -> None:
        """The agent holds `ticket`'s call; `others` (offered too) are free; the caller leaves."""
        ...

    async def call_ended(self, account_id: str, user_id: str, wrap_up_until: datetime) -> None: ...

    async def left(self, ticket: str) -> None:
        """The caller left unanswered: its row and its offers' holds go."""
        ...

    async def renew(self, now: datetime, until: datetime) -> None:
        """Every caller and every offer or call this node holds lives until `until`."""
        ...
