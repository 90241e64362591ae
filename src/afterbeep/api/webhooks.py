"""/v1/webhooks routes: subscriptions and their delivery log.

How deliveries are signed and retried: see `afterbeep.notify.webhooks`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.domain import webhooks as rules
from afterbeep.domain.clock import iso
from afterbeep.domain.webhooks import Delivery, DeliveryStatus, Webhook

router = APIRouter(tags=["webhooks"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _PROBLEM}
_INVALID: dict[int | str, dict[str, Any]] = {422: _PROBLEM}

_SIGNING = (
    "Each delivery is a POST with `Afterbeep-Timestamp` (unix seconds) and "
    '`Afterbeep-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>`.'
)


class WebhookCreate(StrictModel):
    url: str = Field(
        min_length=1, max_length=rules.MAX_URL_LENGTH, description="http:// or https:// URL"
    )
    events: list[str] = Field(
        min_length=1,
        max_length=len(rules.EVENTS),
        description=f"any of {', '.join(sorted(rules.EVENTS))}",
    )
    secret: str | None = Field(
        default=None,
        min_length=rules.SECRET_MIN_LENGTH,
        max_length=rules.SECRET_MAX_LENGTH,
        description="signing secret; generated when absent. " + _SIGNING,
    )


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    created_at: str

    @classmethod
    def of(cls, w: Webhook) -> WebhookOut:
        return cls(id=w.id, url=w.url, events=list(w.events), created_at=iso(w.created_at))


class WebhookCreated(WebhookOut):
    secret: str = Field(description="shown only in this response. " + _SIGNING)


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    event: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: str
    last_status_code: int | None
    last_error: str | None
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(
            id=d.id,
            event_id=d.event_id,
            event=d.event,
            status=d.status,
            attempts=d.attempts,
            next_attempt_at=iso(d.next_attempt_at),
            last_status_code=d.last_status_code,
            last_error=d.last_error,
            created_at=iso(d.created_at),
            updated_at=iso(d.updated_at),
        )


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=100)]


@router.post("/webhooks", status_code=201, responses=_INVALID)
async def create_webhook(
    body: WebhookCreate, svc: Svc, account: CurrentAccount, response: Response
) -> WebhookCreated:
    webhook = await svc.webhooks.create(account.id, body.url, body.events, body.secret)
    response.headers["Location"] = f"/v1/webhooks/{webhook.id}"
    return WebhookCreated(**WebhookOut.of(webhook).model_dump(), secret=webhook.secret)


@router.get("/webhooks", responses=_INVALID)
async def list_webhooks(
    svc: Svc, account: CurrentAccount, limit: Limit = 50, cursor: Cursor = None
) -> ListResponse[WebhookOut]:
    page = await svc.webhooks.list(account.id, cursor, limit)
    return ListResponse[WebhookOut](
        items=[WebhookOut.of(w) for w in page.items], next_cursor=page.next_cursor
    )


@router.get("/webhooks/{webhook_id}", responses=_NOT_FOUND)
async def get_webhook(webhook_id: str, svc: Svc, account: CurrentAccount) -> WebhookOut:
    return WebhookOut.of(await svc.webhooks.get(account.id, webhook_id))


@router.delete(
    "/webhooks/{webhook_id}", status_code=204, response_class=Response, responses=_NOT_FOUND
)
async def delete_webhook(webhook_id: str, svc: Svc, account: CurrentAccount) -> Response:
    """Stops deliveries; the subscription's delivery log goes with it."""
    await svc.webhooks.delete(account.id, webhook_id)
    return Response(status_code=204)


@router.get("/webhooks/{webhook_id}/deliveries", responses={**_NOT_FOUND, **_INVALID})
async def list_deliveries(
    webhook_id: str, svc: Svc, account: CurrentAccount, limit: Limit = 50, cursor: Cursor = None
) -> ListResponse[DeliveryOut]:
    """Newest first."""
    page = await svc.webhooks.deliveries(account.id, webhook_id, cursor, limit)
    return ListResponse[DeliveryOut](
        items=[DeliveryOut.of(d) for d in page.items], next_cursor=page.next_cursor
    )
