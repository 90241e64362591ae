"""/v1/agents/me: an agent's own API, with `Authorization: Bearer <agent token>` (`atk_...`,
made by `POST /v1/agents/{user_id}/tokens`): its status (the same the live queues use), the
work items offered to it (accept, decline), the ones it holds (wrap up, complete with notes,
call the customer back), and a server-sent-events stream of its work item events.

Each event of the stream is `event: work_item.<offered|accepted|declined|timed_out|wrapping|
completed|canceled|updated>` with `data:` the item as this API shows it (`updated`: its voice
call's transcript or recording arrived after the offer). A stream starts with the offers open
at that moment, as `work_item.offered` events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from afterbeep.api._pbx import INVALID, NOT_FOUND, PROBLEM
from afterbeep.api.deps import Svc, bearer_token
from afterbeep.api.problems import ProblemError
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.api.work_items import OfferOut, WorkItemOut, work_items_of
from afterbeep.domain.queues import AgentState, AgentStatus
from afterbeep.domain.work_items import MAX_NOTES
from afterbeep.services.work_items import AgentIdentity, FeedEvent, WorkItemView

router = APIRouter(tags=["agent desk"])

HEARTBEAT_SECONDS = 15.0
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {**PROBLEM, "description": "offer-closed or work-item-state"}
}
NO_AGENT_TOKEN = "send Authorization: Bearer <agent token>"


async def current_agent(request: Request) -> AgentIdentity:
    known = getattr(request.state, "agent", None)
    if isinstance(known, AgentIdentity):  # checked by the request gate
        return known
    token = bearer_token(request.headers.get("authorization", ""))
    svc = request.app.state.services
    found: AgentIdentity | None = None
    if token is not None and svc.work_items is not None:
        found = await svc.work_items.authenticate(token)
    if found is None:
        detail = "the agent token is not valid" if token else NO_AGENT_TOKEN
        raise ProblemError(401, "unauthorized", "Unauthorized", detail)
    request.state.agent = found
    request.state.account_id = found.account_id
    return found


Me = Annotated[AgentIdentity, Depends(current_agent)]


class TranscriptLineOut(BaseModel):
    participant_id: str
    sender_type: str
    start_ms: int
    end_ms: int
    content: str


class VoiceCallOut(BaseModel):
    voice_call_id: str
    vendor_call_key: str
    from_number: str = Field(description="the caller's number")
    to_number: str
    call_origin: str | None
    callback_number: str | None
    recording_url: str | None = Field(
        description="a signed link (15 minutes) or the outside location"
    )
    recording_duration_sec: float | None
    transcript: list[TranscriptLineOut]


class AgentWorkItemOut(WorkItemOut):
    offer: OfferOut | None = Field(default=None, description="the open offer (reserved)")
    voice_call: VoiceCallOut | None = None

    @classmethod
    def view(cls, v: WorkItemView) -> AgentWorkItemOut:
        base = WorkItemOut.of(v.item).model_dump()
        call = None
        if v.call is not None:
            c = v.call
            call = VoiceCallOut(
                voice_call_id=c.voice_call_id,
                vendor_call_key=c.vendor_call_key,
                from_number=c.from_number,
                to_number=c.to_number,
                call_origin=c.call_origin,
                callback_number=c.callback_number,
                recording_url=v.recording_url,
                recording_duration_sec=c.total_recording_duration,
                transcript=[
                    TranscriptLineOut(
                        participant_id=t.participant_id,
                        sender_type=t.sender_type,
                        start_ms=t.start_ms,
                        end_ms=t.end_ms,
                        content=t.content,
                    )
                    for t in c.transcript
                ],
            )
        return cls(
            **base,
            offer=OfferOut.of(v.offer) if v.offer is not None else None,
            voice_call=call,
        )


class MeOut(BaseModel):
    user_id: str
    status: AgentStatus
    state: AgentState = Field(description="live calls: waiting, offering, in_call, wrap_up")
    capacity: int
    queue_ids: list[str]


class StatusIn(StrictModel):
    status: AgentStatus


class CompleteIn(StrictModel):
    notes: str | None = Field(default=None, max_length=MAX_NOTES)


class CallbackIn(StrictModel):
    number: str | None = Field(
        default=None,
        max_length=32,
        description="default: the voice call's callback number, else its caller",
    )
    caller_id: str | None = Field(
        default=None, max_length=32, description="default: the number the voice call was made to"
    )


class CallbackOut(BaseModel):
    id: str
    state: str
    reason: str | None


async def _me(svc: Svc, me: AgentIdentity) -> MeOut:
    agent = await svc.queues.agent(me.account_id, me.user_id)
    capacities = await work_items_of(svc).capacities(me.account_id)
    return MeOut(
        user_id=agent.user_id,
        status=agent.status,
        state=agent.state,
        capacity=capacities.get(me.user_id, 10),
        queue_ids=list(agent.queue_ids),
    )


@router.get("/agents/me", responses={401: PROBLEM})
async def get_me(svc: Svc, me: Me) -> MeOut:
    return await _me(svc, me)


@router.patch("/agents/me", responses={401: PROBLEM, **INVALID})
async def set_my_status(body: StatusIn, svc: Svc, me: Me) -> MeOut:
    """available, on_break or offline: the status the live queues use too."""
    await svc.queues.set_status(me.account_id, me.user_id, body.status)
    return await _me(svc, me)


@router.get("/agents/me/offers", responses={401: PROBLEM})
async def my_offers(svc: Svc, me: Me) -> ListResponse[AgentWorkItemOut]:
    work = work_items_of(svc)
    await work.load()
    items = []
    for offer in work.agent_offers(me.account_id, me.user_id):
        item = await work.agent_item(me.account_id, me.user_id, offer.work_item_id)
        items.append(AgentWorkItemOut.view(await work.view(item)))
    return ListResponse[AgentWorkItemOut](items=items)


@router.post(
    "/agents/me/offers/{offer_id}/accept", responses={401: PROBLEM, **NOT_FOUND, **CONFLICT}
)
async def accept_offer(offer_id: str, svc: Svc, me: Me) -> AgentWorkItemOut:
    work = work_items_of(svc)
    item = await work.accept(me.account_id, me.user_id, offer_id)
    return AgentWorkItemOut.view(await work.view(item))


@router.post(
    "/agents/me/offers/{offer_id}/decline", responses={401: PROBLEM, **NOT_FOUND, **CONFLICT}
)
async def decline_offer(offer_id: str, svc: Svc, me: Me) -> WorkItemOut:
    item = await work_items_of(svc).decline(me.account_id, me.user_id, offer_id)
    return WorkItemOut.of(item)


@router.get("/agents/me/work-items", responses={401: PROBLEM})
async def my_work_items(svc: Svc, me: Me) -> ListResponse[AgentWorkItemOut]:
    """The items offered to or held by the agent."""
    work = work_items_of(svc)
    await work.load()
    items = [
        AgentWorkItemOut.view(await work.view(i))
        for i in work.agent_items(me.account_id, me.user_id)
    ]
    return ListResponse[AgentWorkItemOut](items=items)


@router.get("/agents/me/work-items/{item_id}", responses={401: PROBLEM, **NOT_FOUND})
async def my_work_item(item_id: str, svc: Svc, me: Me) -> AgentWorkItemOut:
    work = work_items_of(svc)
    item = await work.agent_item(me.account_id, me.user_id, item_id)
    return AgentWorkItemOut.view(await work.view(item))


@router.post(
    "/agents/me/work-items/{item_id}/wrap-up", responses={401: PROBLEM, **NOT_FOUND, **CONFLICT}
)
async def wrap_up(item_id: str, svc: Svc, me: Me) -> WorkItemOut:
    """assigned -> wrapping (it still holds its weight until completed)."""
    return WorkItemOut.of(await work_items_of(svc).wrap_up(me.account_id, me.user_id, item_id))


@router.post(
    "/agents/me/work-items/{item_id}/complete", responses={401: PROBLEM, **NOT_FOUND, **CONFLICT}
)
async def complete(item_id: str, svc: Svc, me: Me, body: CompleteIn | None = None) -> WorkItemOut:
    notes = body.notes if body is not None else None
    item = await work_items_of(svc).complete(me.account_id, me.user_id, item_id, notes)
    return WorkItemOut.of(item)


@router.post(
    "/agents/me/work-items/{item_id}/callback",
    status_code=202,
    responses={401: PROBLEM, **NOT_FOUND, **CONFLICT, 503: PROBLEM},
)
async def call_back(item_id: str, svc: Svc, me: Me, body: CallbackIn | None = None) -> CallbackOut:
    """Ring the agent's registered device, then the customer, and bridge them (the result is
    recorded on the voice call)."""
    given = body or CallbackIn()
    status = await work_items_of(svc).call_back(
        me.account_id, me.user_id, item_id, given.number, given.caller_id
    )
    return CallbackOut(id=status.id, state=status.state.value, reason=status.reason)


@router.get(
    "/agents/me/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 401: PROBLEM},
)
async def my_events(svc: Svc, me: Me) -> Response:
    """Server-sent events of the agent's work items (see the module's description)."""
    work = work_items_of(svc)
    await work.load()
    feed = work.subscribe(me.account_id, me.user_id)
    first = work.open_offer_events(me.account_id, me.user_id)

    async def frame(event: FeedEvent) -> str:
        out = AgentWorkItemOut.view(await work.view(event.item))
        if event.offer is not None and out.offer is None:
            out.offer = OfferOut.of(event.offer)
        return f"event: {event.event}\ndata: {json.dumps(out.model_dump(mode='json'))}\n\n"

    async def events() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n\n"
            for opened in first:
                yield await frame(opened)
            while True:
                try:
                    event = await asyncio.wait_for(feed.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if event is None:
                    return
                yield await frame(event)
        finally:
            work.unsubscribe(me.account_id, me.user_id, feed)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
