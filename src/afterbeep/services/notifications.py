"""Owner notifications by email: the rules of the email outbox and its delivery log.

Rows are queued by `DepositService` (a new message, a full mailbox) in the email outbox and
sent by `afterbeep.notify.email.EmailDispatcher`. A send that fails for a while (server down,
4xx) is retried with `domain.webhooks.backoff`; a permanent refusal (5xx) or the last failed
try ends in `failed`, which also publishes a `notification.failed` webhook event, so a
notification never fails silently. `NotificationService` reads the delivery log for the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ulid import ULID

from afterbeep.domain.clock import Clock, iso
from afterbeep.domain.errors import NotFound
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.webhooks import backoff
from afterbeep.services.mailboxes import find_mailbox
from afterbeep.services.ports import Page, UnitOfWorkFactory
from afterbeep.services.ports.notifications import (
    Notification,
    NotificationKind,
    NotificationOutcome,
    NotificationStatus,
)

FAILED_EVENT = "notification.failed"
ID_PREFIX = "ntf"
DEFAULT_MAX_ATTEMPTS = 12
# 30 s, 1 min, 2 min ... capped at an hour: twelve tries span about five hours.
RETRY_BASE_SECONDS = 30.0
RETRY_CAP_SECONDS = 3600.0
ERROR_MAX = 500


def new_notification_id() -> str:
    return new_id(ID_PREFIX)


def new_message_key(message_id: str) -> str:
    return f"new:{message_id}"


def mailbox_full_key(mailbox_id: str) -> str:
    """Fresh for each spell of fullness: that notice is made once by the atomic flag
    (`mark_full_notified`) set in the transaction that queues it, not by this key."""
    return f"full:{mailbox_id}:{str(ULID()).lower()}"


def pending(
    *,
    account_id: str,
    kind: NotificationKind,
    mailbox_id: str,
    message_id: str | None,
    dedupe_key: str,
    to_addr: str,
    now: datetime,
) -> Notification:
    return Notification(
        id=new_notification_id(),
        account_id=account_id,
        kind=kind,
        mailbox_id=mailbox_id,
        message_id=message_id,
        dedupe_key=dedupe_key,
        to_addr=to_addr,
        status=NotificationStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        last_error=None,
        created_at=now,
        updated_at=now,
    )


def after_send(
    attempts_before: int,
    error: str | None,
    *,
    permanent: bool,
    now: datetime,
    max_attempts: int,
    retry_base_seconds: float = RETRY_BASE_SECONDS,
) -> NotificationOutcome:
    """The row's next state after one try: sent; failed (refused for good, or the last try);
    or pending again after the backoff."""
    attempts = attempts_before + 1
    if error is None:
        return NotificationOutcome(NotificationStatus.SENT, attempts, now, None)
    error = error[:ERROR_MAX]
    if permanent or attempts >= max_attempts:
        return NotificationOutcome(NotificationStatus.FAILED, attempts, now, error)
    delay = backoff(attempts, retry_base_seconds, RETRY_CAP_SECONDS)
    return NotificationOutcome(NotificationStatus.PENDING, attempts, now + delay, error)


def cancelled(attempts_before: int, reason: str, now: datetime) -> NotificationOutcome:
    """Nothing to send any more (its message or mailbox is gone); not a failure."""
    return NotificationOutcome(NotificationStatus.CANCELLED, attempts_before, now, reason)


def to_json(n: Notification) -> dict[str, Any]:
    """A delivery-log entry as the API returns it and `notification.failed` carries it."""
    return {
        "id": n.id,
        "kind": n.kind.value,
        "mailbox_id": n.mailbox_id,
        "message_id": n.message_id,
        "to": n.to_addr,
        "status": n.status.value,
        "attempts": n.attempts,
        "next_attempt_at": iso(n.next_attempt_at),
        "last_error": n.last_error,
        "created_at": iso(n.created_at),
        "updated_at": iso(n.updated_at),
    }


class NotificationService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def list(
        self,
        account_id: str,
        *,
        mailbox_id: str | None = None,
        status: NotificationStatus | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[Notification]:
        """The account's email delivery log, newest first; another account's mailbox is 404."""
        async with self._uow() as uow:
            if mailbox_id is not None and await find_mailbox(uow, account_id, mailbox_id) is None:
                raise NotFound("mailbox", mailbox_id)
            return await uow.notifications.list(
                account_id, mailbox_id=mailbox_id, status=status, cursor=cursor, limit=limit
            )

    async def get(self, account_id: str, notification_id: str) -> Notification:
        found = None
        if is_id(notification_id, ID_PREFIX):
            async with self._uow() as uow:
                found = await uow.notifications.get(account_id, notification_id)
        if found is None:
            raise NotFound("notification", notification_id)
        return found
