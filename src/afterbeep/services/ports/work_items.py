"""Work items, their offers, agents' capacities and agents' tokens (issue 18)."""

from __future__ import annotations

import builtins
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from afterbeep.domain.queues import AgentStatus
from afterbeep.domain.work_items import WorkItem, WorkItemState, WorkOffer

if TYPE_CHECKING:
    from afterbeep.services.ports import Page


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """What is stored of an agent: its status (and since when) and its capacity (None: the
    default); `idle_since`: when it last became idle (its last item or call ended), on the
    database's clock in a cluster."""

    user_id: str
    status: AgentStatus
    capacity: int | None
    since: datetime | None
    idle_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class AgentToken:
    id: str
    account_id: str
    user_id: str
    name: str
    secret_hash: str
    created_at: datetime
    revoked_at: datetime | None = None


class RouterLock(Protocol):
    """One work router at a time across the nodes of a cluster (issue 23): held around each
    change, released when its holder's connection ends (a dead node holds nothing). Held
    `shared`, by readers at once, while no node holds it to change."""

    def hold(self, shared: bool = False) -> AbstractAsyncContextManager[None]: ...


class WorkItemRepo(Protocol):
    async def add(self, item: WorkItem) -> None: ...
    async def update(self, item: WorkItem) -> None: ...
    async def get(self, account_id: str, item_id: str) -> WorkItem | None: ...
    async def of_voice_call(
        self, account_id: str, voice_call_id: str
    ) -> builtins.list[WorkItem]: ...
    async def open_items(self) -> builtins.list[WorkItem]:
        """Every open item of every account (the router's state on start)."""
        ...

    async def list(
        self,
        account_id: str,
        queue_id: str | None,
        state: WorkItemState | None,
        cursor: str | None,
        limit: int,
    ) -> Page[WorkItem]: ...

    async def completed_by(
        self, account_id: str, agent_id: str, limit: int
    ) -> builtins.list[WorkItem]:
        """The agent's completed items, most recently ended first."""
        ...

    async def add_offer(self, offer: WorkOffer) -> None: ...
    async def update_offer(self, offer: WorkOffer) -> None: ...
    async def offer(self, offer_id: str) -> WorkOffer | None: ...
    async def offers(self, account_id: str, item_id: str) -> builtins.list[WorkOffer]:
        """The item's offers, oldest first."""
        ...

    async def agents(
        self, account_id: str, user_ids: builtins.list[str]
    ) -> dict[str, AgentRecord]: ...
    async def set_capacity(
        self, account_id: str, user_id: str, capacity: int | None, now: datetime
    ) -> None: ...
    async def capacities(self, account_id: str) -> dict[str, int | None]: ...

    async def add_token(self, token: AgentToken) -> None: ...
    async def token(self, token_id: str) -> AgentToken | None: ...
    async def tokens(self, account_id: str, user_id: str) -> builtins.list[AgentToken]: ...
    async def revoke_token(
        self, account_id: str, user_id: str, token_id: str, now: datetime
    ) -> bool: ...

    async def pending_offers(self) -> builtins.list[WorkOffer]:
        """Every offer still waiting for its agent's answer."""
        ...

    async def routing_memory(self) -> tuple[dict[str, str], dict[tuple[str, str], int]]:
        """What the strategies remember, from every offer made: the agent offered last in
        each queue (round robin), and the items each agent (account, user) accepted."""
        ...

    async def mark_idle(self, account_id: str, user_ids: builtins.list[str], now: datetime) -> None:
        """The agents hold nothing more from now (on PostgreSQL, the database's clock)."""
        ...

    async def changed(self, origin: str) -> None:
        """Tell the other nodes at commit that items or offers changed (`origin`: who)."""
        ...
