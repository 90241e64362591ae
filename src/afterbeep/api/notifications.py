"""/v1/notifications: the delivery log of owner emails (new message, mailbox full).

How they are retried and when they fail: see `afterbeep.services.notifications`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.schemas import ListResponse
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.services.notifications import NotificationService, to_json
from afterbeep.services.ports.notifications import (
    Notification,
    NotificationKind,
    NotificationStatus,
)

router = APIRouter(tags=["notifications"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


class NotificationOut(BaseModel):
    id: str
    kind: NotificationKind
    mailbox_id: str
    message_id: str | None
    to: str
    status: NotificationStatus = Field(
        description="pending (queued or retrying), sent, failed (given up; a "
        "`notification.failed` webhook event was published) or cancelled (its message or "
        "mailbox was deleted first)"
    )
    attempts: int
    next_attempt_at: str
    last_error: str | None
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, n: Notification) -> NotificationOut:
        return cls.model_validate(to_json(n))


def notification_service(svc: Svc) -> NotificationService:
    return svc.notifications


Notifications = Annotated[NotificationService, Depends(notification_service)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=100)]
MailboxFilter = Annotated[str | None, Query(max_length=40)]


@router.get("/notifications", responses={404: _PROBLEM, 422: _PROBLEM})
async def list_notifications(
    account: CurrentAccount,
    notifications: Notifications,
    mailbox_id: MailboxFilter = None,
    status: NotificationStatus | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListResponse[NotificationOut]:
    """The email delivery log, newest first; filter by mailbox and status."""
    page = await notifications.list(
        account.id, mailbox_id=mailbox_id, status=status, cursor=cursor, limit=limit
    )
    return ListResponse[NotificationOut](
        items=[NotificationOut.of(n) for n in page.items], next_cursor=page.next_cursor
    )


@router.get("/notifications/{notification_id}", responses={404: _PROBLEM})
async def get_notification(
    notification_id: str, account: CurrentAccount, notifications: Notifications
) -> NotificationOut:
    return NotificationOut.of(await notifications.get(account.id, notification_id))
