"""The queue line and agents' holds every node of a cluster shares (issue 23)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from afterbeep.domain.queues import AgentState, AgentStatus, WaitingCaller


@dataclass(frozen=True, slots=True)
class StoredAgent:
    """An agent as stored: its status and what holds it (None: nothing) until when; `at`: the
    database's time when it was read (the clock of `held_until` and `idle_since`)."""

    user_id: str
    status: AgentStatus
    held: AgentState | None = None
    ticket: str | None = None
    held_until: datetime | None = None
    idle_since: datetime | None = None
    missed_in_row: int = 0
    calls: int = 0
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class QueueTally:
    """What a queue's strategy and statistics keep: `offers` made (the version a claim checks),
    the agent offered last (round robin), callers answered, abandoned and timed out."""

    offers: int = 0
    last_offered: str | None = None
    answered: int = 0
    abandoned: int = 0
    timed_out: int = 0


@dataclass(frozen=True, slots=True)
class Look:
    """A queue as stored: its line, its members, its tally, and the database's time then."""

    waiting: list[WaitingCaller]
    agents: dict[str, StoredAgent]
    tally: QueueTally
    at: datetime


class SharedFloor(Protocol):
    """Rows of every node: callers waiting (renewed by their node) and agents' holds. Every
    write names this node; a hold or a caller its node stops renewing expires. A `lease` runs
    from the database's time when it is taken or renewed, and is compared with the database's
    time: the nodes' clocks need not agree."""

    node_id: str

    async def join(
        self, account_id: str, queue_id: str, ticket: str, lease: timedelta, waited: float = 0.0
    ) -> datetime:
        """The caller stands in the line as joined `waited` seconds before now, on the
        database's clock (one clock orders callers of every node): its `joined_at`."""
        ...

    async def look(
        self,
        account_id: str,
        queue_id: str,
        user_ids: Sequence[str],
        lease: timedelta,
        ticket: str | None = None,
    ) -> Look:
        """The queue's line (live rows), its members and tally as stored; `ticket`'s row
        renewed."""
        ...

    async def agents(self, account_id: str, user_ids: Sequence[str]) -> dict[str, StoredAgent]: ...

    async def claim(
        self,
        account_id: str,
        queue_id: str,
        user_ids: Sequence[str],
        ticket: str,
        lease: timedelta,
        offers_seen: int,
    ) -> list[str]:
        """Hold each agent free and available for `ticket`'s offer: those it got (none when
        another node or queue holds them, or when an offer of the queue was made since its
        tally showed `offers_seen`: the choice was made on a stale view). When it got any, the
        caller is marked offered and the tally counts the offer (the last agent got: round
        robin's position), all in one transaction."""
        ...

    async def release(
        self,
        account_id: str,
        user_id: str,
        ticket: str,
        *,
        still_offered: bool,
        missed: bool = False,
        max_no_answer: int = 0,
        now: datetime | None = None,
    ) -> int | None:
        """`ticket`'s offer to the agent ended unanswered; `missed` (it rang out): the agent's
        streak grows, and at `max_no_answer` (0: never) its status is `on_break`. The streak
        when `missed`."""
        ...

    async def answered(
        self,
        account_id: str,
        queue_id: str,
        user_id: str,
        ticket: str,
        others: Sequence[str],
        lease: timedelta,
    ) -> None:
        """The agent holds `ticket`'s call (its streak ends, its calls count one more);
        `others` (offered too) are free; the caller leaves, counted answered."""
        ...

    async def call_ended(self, account_id: str, user_id: str, wrap_up: timedelta) -> None: ...

    async def left(self, queue_id: str, ticket: str, counted: str | None = None) -> None:
        """The caller left unanswered: its row and its offers' holds go; `counted`: the tally
        it adds one to (`abandoned`, `timed_out`)."""
        ...

    async def status_changed(self, account_id: str, user_id: str) -> None:
        """Tell the other nodes the agent's status changed (stored by the caller)."""
        ...

    async def renew(self, lease: timedelta) -> None:
        """Every caller and every offer or call this node holds lives another `lease`."""
        ...
