"""Webhook subscriptions and the durable event outbox (`webhook_deliveries`)."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from afterbeep.domain.webhooks import AttemptOutcome, Delivery, Webhook

if TYPE_CHECKING:
    from afterbeep.services.ports import Page


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A due delivery leased to one dispatcher until `lease_until`, with where to send it."""

    delivery: Delivery
    url: str
    secret: str
    lease_until: datetime


class WebhookRepo(Protocol):
    async def add(self, webhook: Webhook) -> None: ...
    async def get(self, account_id: str, webhook_id: str) -> Webhook | None: ...
    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[Webhook]:
        """Newest first; `cursor` is a `next_cursor` from an earlier page."""
        ...

    async def delete(self, account_id: str, webhook_id: str) -> bool:
        """Remove the subscription and its delivery log; False when not in the account."""
        ...

    async def deliveries(
        self, account_id: str, webhook_id: str, cursor: str | None, limit: int
    ) -> Page[Delivery]:
        """The webhook's deliveries, newest first."""
        ...

    # The dispatcher's side of the outbox.
    async def claim_due(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> builtins.list[ClaimedDelivery]:
        """Lease up to `limit` pending rows due at `now` that no live lease holds."""
        ...

    async def record_attempt(
        self, claimed: ClaimedDelivery, outcome: AttemptOutcome, now: datetime
    ) -> bool:
        """Store an attempt and drop the lease; False when the lease was lost meanwhile."""
        ...

    async def release(self, claims: builtins.list[ClaimedDelivery]) -> None:
        """Give leased rows back unattempted (shutdown)."""
        ...

    async def next_wakeup(self) -> datetime | None:
        """When the earliest pending row becomes claimable (due and not leased)."""
        ...

    def watch_published(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` after any transaction of this process that published an event
        ends on this database; returns the function that stops watching."""
        ...


class EventOutbox(Protocol):
    async def publish(self, account_id: str, event: str, data: Mapping[str, Any]) -> None:
        """Queue `event` for every webhook of the account subscribed to it, in this transaction."""
        ...
