"""The email outbox (`email_outbox`): queued owner notifications, their delivery log, and the
"mailbox full" flag that makes that notice go out once until space frees up."""

from __future__ import annotations

import builtins
import enum
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from afterbeep.services.ports import Page


class NotificationKind(enum.StrEnum):
    NEW_MESSAGE = "new_message"
    MAILBOX_FULL = "mailbox_full"
    PIN_LOCKED = "pin_locked"  # wrong PINs at the phone menu locked the mailbox


class NotificationStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    # Given up: retries exhausted or refused for good; `notification.failed` was published.
    FAILED = "failed"
    # Nothing left to tell: the message or the mailbox was deleted before the email went out.
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Notification:
    id: str
    account_id: str
    kind: NotificationKind
    mailbox_id: str
    message_id: str | None
    # Unique: queueing the same notice twice (a retried deposit) keeps the first row.
    dedupe_key: str
    to_addr: str
    status: NotificationStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ClaimedNotification:
    """A due notification leased to one dispatcher until `lease_until`."""

    notification: Notification
    lease_until: datetime


@dataclass(frozen=True, slots=True)
class NotificationOutcome:
    """What one send attempt changes on its row."""

    status: NotificationStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None


class NotificationRepo(Protocol):
    async def enqueue(self, notification: Notification) -> bool:
        """Insert unless a row with the same `dedupe_key` exists; True if inserted."""
        ...

    async def get(self, account_id: str, notification_id: str) -> Notification | None: ...

    async def get_by_dedupe_key(self, dedupe_key: str) -> Notification | None: ...

    async def list(
        self,
        account_id: str,
        *,
        mailbox_id: str | None,
        status: NotificationStatus | None,
        cursor: str | None,
        limit: int,
    ) -> Page[Notification]:
        """Newest first; `cursor` is a `next_cursor` from an earlier page."""
        ...

    # The dispatcher's side of the outbox.
    async def claim_due(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> builtins.list[ClaimedNotification]:
        """Lease up to `limit` pending rows due at `now` that no live lease holds."""
        ...

    async def record_attempt(
        self, claimed: ClaimedNotification, outcome: NotificationOutcome, now: datetime
    ) -> bool:
        """Store an attempt and drop the lease; False when the lease was lost meanwhile."""
        ...

    async def release(self, claims: builtins.list[ClaimedNotification]) -> None:
        """Give leased rows back unattempted (shutdown)."""
        ...

    async def hasten(self, dedupe_key: str, now: datetime) -> bool:
        """Make the row due now if it is pending, never tried and due later (it was waiting
        for something that has happened); True when it changed."""
        ...

    async def next_wakeup(self) -> datetime | None:
        """When the earliest pending row becomes claimable (due and not leased)."""
        ...

    # `mailboxes.full_notified_at`: set while the owner has been told the mailbox is full.
    async def mark_full_notified(self, account_id: str, mailbox_id: str, now: datetime) -> bool:
        """Set the flag unless it is set already; True when this call set it."""
        ...

    async def clear_full_notified(self, account_id: str, mailbox_id: str) -> bool:
        """Clear the flag; True when it was set."""
        ...
