"""Webhook subscriptions, the events they carry, and the retry schedule of deliveries."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

EVENTS = frozenset(
    {
        "message.created",
        "message.updated",
        "message.deleted",
        "notification.failed",
        "voicemail.status",
        "drop.status",
    }
)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    account_id: str
    url: str
    events: tuple[str, ...]
    secret: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    account_id: str
    webhook_id: str
    event_id: str
    event: str
    payload: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


def backoff(attempts: int, base_seconds: float = 5.0, cap_seconds: float = 3600.0) -> timedelta:
    """Delay before the next try after `attempts` failed ones: 5 s, 10 s, 20 s ... capped."""
    return timedelta(seconds=min(cap_seconds, base_seconds * 2 ** max(attempts - 1, 0)))
