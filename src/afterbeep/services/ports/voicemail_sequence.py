"""Storage of the seed 002 sequence: its deliveries (a durable queue, claimed under a lease),
the requests and answers of each, and the connectors to outside contact centers."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from afterbeep.domain.connectors import Connector
from afterbeep.domain.voicemail_sequence import Delivery, DeliveryStatus, Exchange

if TYPE_CHECKING:
    from afterbeep.services.ports import Page


@dataclass(slots=True)
class ClaimedDelivery:
    """A due delivery leased to one worker until `lease_until`."""

    delivery: Delivery
    lease_until: datetime


class DeliveryRepo(Protocol):
    async def add_if_absent(self, delivery: Delivery) -> bool:
        """Insert unless the message already has a delivery; True if inserted."""
        ...

    async def get(self, account_id: str, delivery_id: str) -> Delivery | None: ...

    async def list(
        self,
        account_id: str,
        *,
        status: DeliveryStatus | None,
        message_id: str | None,
        cursor: str | None,
        limit: int,
    ) -> Page[Delivery]: ...

    async def claim_due(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> builtins.list[ClaimedDelivery]: ...

    async def save(
        self, claim: ClaimedDelivery, delivery: Delivery, *, lease_until: datetime | None
    ) -> bool:
        """Write the delivery's progress while the claim's lease holds, and move the lease to
        `lease_until` (None: drop it); False when the lease was lost."""
        ...

    async def extend(self, claim: ClaimedDelivery, lease_until: datetime) -> bool: ...

    async def release(self, claims: builtins.list[ClaimedDelivery]) -> None: ...

    async def release_all(self) -> int: ...

    async def next_wakeup(self) -> datetime | None: ...

    async def hasten(self, account_id: str, message_id: str, now: datetime) -> bool:
        """The message's transcript is final: its pending delivery is due now."""
        ...

    async def add_exchanges(
        self, account_id: str, delivery_id: str, exchanges: builtins.list[Exchange]
    ) -> None: ...

    async def exchanges(self, account_id: str, delivery_id: str) -> builtins.list[Exchange]: ...


class ConnectorRepo(Protocol):
    async def add(self, connector: Connector) -> None: ...

    async def get(self, account_id: str, connector_id: str) -> Connector | None: ...

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[Connector]: ...

    async def update(self, connector: Connector) -> None: ...

    async def delete(self, account_id: str, connector_id: str) -> bool: ...

    async def mailboxes_using(self, account_id: str, connector_id: str) -> builtins.list[str]: ...
