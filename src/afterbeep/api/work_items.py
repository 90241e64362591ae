"""/v1/work-items (operators, account API key) and /v1/agents/{user_id}/tokens (agents' bearer
tokens for /v1/agents/me: the secret is shown once, only its hash is kept)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from afterbeep.api._pbx import INVALID, NOT_FOUND
from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.problems import ProblemError
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.domain.clock import iso
from afterbeep.domain.work_items import WorkItem, WorkItemState, WorkOffer
from afterbeep.services.contact_center import Channel
from afterbeep.services.ports.work_items import AgentToken
from afterbeep.services.work_items import WorkItemService

router = APIRouter(tags=["work items"])

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=100)]


def work_items_of(svc: Svc) -> WorkItemService:
    if svc.work_items is None:
        raise ProblemError(503, "unavailable", "Unavailable", "work items are not served here")
    return svc.work_items


def _when(value: Any) -> str | None:
    return iso(value) if value is not None else None


class OfferOut(BaseModel):
    id: str
    agent_id: str
    queue_id: str
    status: str = Field(description="pending, accepted, declined, timed_out, rescinded")
    offered_at: str
    expires_at: str
    ended_at: str | None

    @classmethod
    def of(cls, o: WorkOffer) -> OfferOut:
        return cls(
            id=o.id,
            agent_id=o.agent_id,
            queue_id=o.queue_id,
            status=o.status.value,
            offered_at=iso(o.offered_at),
            expires_at=iso(o.expires_at),
            ended_at=_when(o.ended_at),
        )


class WorkItemOut(BaseModel):
    id: str
    voice_call_id: str
    queue_id: str
    channel: str
    priority: int
    weight: int
    state: WorkItemState
    agent_id: str | None = Field(description="offered to (reserved) or held by")
    offer_id: str | None
    offer_expires_at: str | None
    reason: str | None = Field(description="why it was canceled")
    notes: str | None = Field(description="the agent's wrap-up notes")
    created_at: str
    queued_at: str
    expires_at: str = Field(description="time to live")
    ended_at: str | None
    updated_at: str
    offers: list[OfferOut] | None = Field(
        default=None, description="GET by id: every offer, oldest first"
    )

    @classmethod
    def of(cls, i: WorkItem, offers: list[WorkOffer] | None = None) -> WorkItemOut:
        return cls(
            id=i.id,
            voice_call_id=i.voice_call_id,
            queue_id=i.queue_id,
            channel=i.channel,
            priority=i.priority,
            weight=i.weight,
            state=i.state,
            agent_id=i.agent_id,
            offer_id=i.offer_id,
            offer_expires_at=_when(i.offer_expires_at),
            reason=i.reason,
            notes=i.notes,
            created_at=iso(i.created_at),
            queued_at=iso(i.queued_at),
            expires_at=iso(i.expires_at),
            ended_at=_when(i.ended_at),
            updated_at=iso(i.updated_at),
            offers=[OfferOut.of(o) for o in offers] if offers is not None else None,
        )


class RouteIn(StrictModel):
    voice_call_id: str = Field(max_length=40)
    queue_id: str = Field(max_length=40)
    channel: Channel = Channel.VOICEMAIL
    priority: int = Field(default=5, ge=1, le=100, description="1 is offered first")
    weight: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="null: the channel's (voicemail 3, callback 5, call 10)",
    )


class PlacementOut(BaseModel):
    work_item_id: str
    queue_id: str
    agent_id: str | None
    created: bool


@router.post("/work-items", status_code=201, responses={**NOT_FOUND, **INVALID})
async def route_work_item(
    body: RouteIn, svc: Svc, account: CurrentAccount, response: Response
) -> PlacementOut:
    """Route a voice call into a queue (as the Telephony API's omniFlow does); the same voice
    call again answers its existing item (200)."""
    placed = await work_items_of(svc).route(
        account.id,
        body.voice_call_id,
        body.queue_id,
        channel=body.channel.value,
        priority=body.priority,
        weight=body.weight,
    )
    if not placed.created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/work-items/{placed.work_item_id}"
    return PlacementOut(
        work_item_id=placed.work_item_id,
        queue_id=placed.queue_id,
        agent_id=placed.agent_id,
        created=placed.created,
    )


@router.get("/work-items", responses=INVALID)
async def list_work_items(
    svc: Svc,
    account: CurrentAccount,
    queue_id: Annotated[str | None, Query(max_length=40)] = None,
    state: WorkItemState | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListResponse[WorkItemOut]:
    """Newest first."""
    page = await work_items_of(svc).list(account.id, queue_id, state, cursor, limit)
    return ListResponse[WorkItemOut](
        items=[WorkItemOut.of(i) for i in page.items], next_cursor=page.next_cursor
    )


@router.get("/work-items/{item_id}", responses=NOT_FOUND)
async def get_work_item(item_id: str, svc: Svc, account: CurrentAccount) -> WorkItemOut:
    item, offers = await work_items_of(svc).get(account.id, item_id)
    return WorkItemOut.of(item, offers)


class TokenIn(StrictModel):
    name: str = Field(default="", max_length=200)


class TokenOut(BaseModel):
    id: str
    user_id: str
    name: str
    created_at: str
    revoked_at: str | None
    token: str | None = Field(default=None, description="the secret: shown once, at creation")

    @classmethod
    def of(cls, t: AgentToken, secret: str | None = None) -> TokenOut:
        return cls(
            id=t.id,
            user_id=t.user_id,
            name=t.name,
            created_at=iso(t.created_at),
            revoked_at=_when(t.revoked_at),
            token=secret,
        )


@router.post("/agents/{user_id}/tokens", status_code=201, responses={**NOT_FOUND, **INVALID})
async def create_agent_token(
    user_id: str, svc: Svc, account: CurrentAccount, body: TokenIn | None = None
) -> TokenOut:
    """A bearer token for the agent's own API (`/v1/agents/me`)."""
    issued = await work_items_of(svc).create_token(
        account.id, user_id, body.name if body is not None else ""
    )
    return TokenOut.of(issued.token, issued.secret)


@router.get("/agents/{user_id}/tokens", responses=NOT_FOUND)
async def list_agent_tokens(
    user_id: str, svc: Svc, account: CurrentAccount
) -> ListResponse[TokenOut]:
    tokens = await work_items_of(svc).tokens(account.id, user_id)
    return ListResponse[TokenOut](items=[TokenOut.of(t) for t in tokens])


@router.delete(
    "/agents/{user_id}/tokens/{token_id}",
    status_code=204,
    response_class=Response,
    responses=NOT_FOUND,
)
async def revoke_agent_token(
    user_id: str, token_id: str, svc: Svc, account: CurrentAccount
) -> Response:
    await work_items_of(svc).revoke_token(account.id, user_id, token_id)
    return Response(status_code=204)
