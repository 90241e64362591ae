"""The representatives' console (role `agent`, or an admin, linked to a user who is a queue
agent): the status switch, the offers with their countdown, accept and decline, the voicemail's
player and transcript, the callback, wrap-up notes, complete, and the completed items.

It calls the services `/v1/agents/me` uses (`QueueService` for the status, `WorkItemService`
for the rest) in the linked user's name, and streams that user's work item events (the same
feed as `/v1/agents/me/events`) as server-sent events carrying each item's HTML."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from afterbeep.domain.errors import Conflict, InvalidInput, NotFound, Unavailable
from afterbeep.domain.members import Member, Role
from afterbeep.domain.queues import AgentStatus
from afterbeep.domain.work_items import MAX_NOTES, WorkItem, WorkOffer
from afterbeep.services.work_items import (
    CANCELED,
    COMPLETED,
    DECLINED,
    TIMED_OUT,
    FeedEvent,
    WorkItemService,
    WorkItemView,
)
from afterbeep.web.inbox import LIVE_STREAMS_PER_MEMBER, live_stream
from afterbeep.web.session import Form, PageError, SignedIn, Visitor, Web, WebServices, not_found
from afterbeep.web.templating import page, templates

router = APIRouter(include_in_schema=False)

COMPLETED_SHOWN = 20
HEARTBEAT_SECONDS = 15.0
# The item leaves the console on these events; on the others it is drawn again.
GONE = frozenset({DECLINED, TIMED_OUT, CANCELED, COMPLETED})
STATUSES = [
    (AgentStatus.AVAILABLE, "Available"),
    (AgentStatus.ON_BREAK, "On break"),
    (AgentStatus.OFFLINE, "Offline"),
]


@dataclass(frozen=True, slots=True)
class Desk:
    """Who works on this console: the member and the agent user it acts for."""

    member: Member
    user_id: str
    work: WorkItemService


async def desk(web: WebServices, who: Visitor) -> Desk:
    member = who.signed_in
    if member.role not in (Role.AGENT, Role.ADMIN):
        raise PageError(403, "Representatives only", "The console is for representatives.")
    work, users = web.api.work_items, web.api.users
    if work is None or users is None:
        raise PageError(503, "Unavailable", "The console is not served here.")
    user = None
    if member.user_id is not None:
        with contextlib.suppress(NotFound):
            user = await users.get_user(member.account_id, member.user_id)
    if user is None or not user.is_agent:
        raise PageError(
            403,
            "Not a representative",
            "You are not linked to a queue agent: an admin links your member to your user.",
        )
    return Desk(member, user.id, work)


def _transcript(view: WorkItemView) -> list[dict[str, Any]]:
    """The lines with their time in the call (a click seeks the player there)."""
    lines = view.call.transcript if view.call is not None else ()
    return [
        {"seconds": max(0, t.start_ms) / 1000, "ms": max(0, t.start_ms), "text": t.content}
        for t in lines
    ]


def _item_context(web: WebServices, view: WorkItemView, offer: WorkOffer | None) -> dict[str, Any]:
    left = None
    if offer is not None:
        left = max(0, int((offer.expires_at - web.clock.now()).total_seconds()))
    return {
        "i": view.item,
        "offer": offer,
        "seconds_left": left,
        "call": view.call,
        "has_recording": view.recording_url is not None,
        "lines": _transcript(view),
        "max_notes": MAX_NOTES,
    }


async def _rendered(
    web: WebServices, work: WorkItemService, csrf: str, item: WorkItem, offer: WorkOffer | None
) -> str:
    view = await work.view(item)
    shown = offer if offer is not None and item.offer_id == offer.id else view.offer
    template = templates.env.get_template("_work_item.html")
    return template.render(csrf=csrf, **_item_context(web, view, shown))


@router.get("/console")
async def console_page(request: Request, web: Web, who: SignedIn) -> Response:
    d = await desk(web, who)
    account = d.member.account_id
    await d.work.load()
    agent = await web.api.queues.agent(account, d.user_id)
    capacity = (await d.work.capacities(account)).get(d.user_id)
    items = [
        _item_context(web, view, view.offer)
        for view in [await d.work.view(i) for i in d.work.agent_items(account, d.user_id)]
    ]
    queues = {q.id: q.name for q in (await web.api.queues.list(account, None, 200)).items}
    context = {
        "csrf": who.csrf,
        "member": d.member,
        "agent": agent,
        "capacity": capacity,
        "statuses": STATUSES,
        "items": items,
        "completed": await d.work.completed_by(account, d.user_id, COMPLETED_SHOWN),
        "queues": queues,
        "max_notes": MAX_NOTES,
    }
    return page(request, "console.html", context)


@router.post("/console/status")
async def set_status(web: Web, who: SignedIn, form: Form) -> Response:
    d = await desk(web, who)
    try:
        status = AgentStatus(str(form.get("status", "")))
    except ValueError as exc:
        raise PageError(422, "Unknown status", "Choose available, on break or offline.") from exc
    await web.api.queues.set_status(d.member.account_id, d.user_id, status)
    return RedirectResponse("/console", status_code=303)


def _refused(exc: Conflict | InvalidInput | Unavailable) -> PageError:
    status = 503 if isinstance(exc, Unavailable) else 409
    return PageError(status, "Not done", exc.message)


@router.post("/console/offers/{offer_id}/accept")
async def accept(offer_id: str, web: Web, who: SignedIn, form: Form) -> Response:
    d = await desk(web, who)
    try:
        item = await d.work.accept(d.member.account_id, d.user_id, offer_id)
    except NotFound as exc:
        raise not_found() from exc
    except Conflict as exc:
        raise PageError(
            409, "Offer closed", "This offer has ended: it timed out or went to someone else."
        ) from exc
    return RedirectResponse(f"/console#item-{item.id}", status_code=303)


@router.post("/console/offers/{offer_id}/decline")
async def decline(offer_id: str, web: Web, who: SignedIn, form: Form) -> Response:
    d = await desk(web, who)
    try:
        await d.work.decline(d.member.account_id, d.user_id, offer_id)
    except NotFound as exc:
        raise not_found() from exc
    except Conflict as exc:
        raise PageError(409, "Offer closed", "This offer has ended already.") from exc
    return RedirectResponse("/console", status_code=303)


@router.get("/console/items/{item_id}/recording")
async def recording(item_id: str, web: Web, who: SignedIn) -> Response:
    """To a fresh signed link of the voicemail (307: the player's Range requests follow)."""
    d = await desk(web, who)
    try:
        item = await d.work.agent_item(d.member.account_id, d.user_id, item_id)
    except NotFound as exc:
        raise not_found() from exc
    url = (await d.work.view(item)).recording_url
    if url is None:
        raise not_found()
    base = web.api.public_url.rstrip("/")
    if base and url.startswith(base + "/v1/links/"):
        url = url[len(base) :]  # relative, as the inbox's: whatever host the browser used
    return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})


@router.post("/console/items/{item_id}/callback")
async def call_back(item_id: str, web: Web, who: SignedIn, form: Form) -> Response:
    d = await desk(web, who)
    try:
        await d.work.call_back(d.member.account_id, d.user_id, item_id)
    except NotFound as exc:
        raise not_found() from exc
    except (Conflict, InvalidInput, Unavailable) as exc:
        raise _refused(exc) from exc
    return RedirectResponse(f"/console?calling={item_id}#item-{item_id}", status_code=303)


@router.post("/console/items/{item_id}/wrap-up")
async def wrap_up(item_id: str, web: Web, who: SignedIn, form: Form) -> Response:
    d = await desk(web, who)
    try:
        await d.work.wrap_up(d.member.account_id, d.user_id, item_id)
    except NotFound as exc:
        raise not_found() from exc
    except (Conflict, InvalidInput) as exc:
        raise _refused(exc) from exc
    return RedirectResponse(f"/console#item-{item_id}", status_code=303)


@router.post("/console/items/{item_id}/complete")
async def complete(item_id: str, web: Web, who: SignedIn, form: Form) -> Response:
    d = await desk(web, who)
    notes = str(form.get("notes", "")).strip()
    if len(notes) > MAX_NOTES:
        raise PageError(422, "Notes too long", f"Notes are at most {MAX_NOTES} characters.")
    try:
        await d.work.complete(d.member.account_id, d.user_id, item_id, notes or None)
    except NotFound as exc:
        raise not_found() from exc
    except (Conflict, InvalidInput) as exc:
        raise _refused(exc) from exc
    return RedirectResponse("/console", status_code=303)


@router.get("/console/events")
async def events(web: Web, who: SignedIn) -> Response:
    """Server-sent events: `event: item` with the item's HTML (`gone`: it left the console),
    for each of the agent's work item events, starting with the offers open now."""
    d = await desk(web, who)
    member = d.member
    if web.live_streams.get(member.id, 0) >= LIVE_STREAMS_PER_MEMBER:
        raise PageError(429, "Too many open pages", "Close another tab to get live updates here.")
    await d.work.load()
    feed = d.work.subscribe(member.account_id, d.user_id)
    first = d.work.open_offer_events(member.account_id, d.user_id)

    async def frame(event: FeedEvent) -> str:
        data: dict[str, object] = {"id": event.item.id, "event": event.event}
        if event.event in GONE:
            data["gone"] = True
        else:
            data["html"] = await _rendered(web, d.work, who.csrf, event.item, event.offer)
        return f"event: item\ndata: {json.dumps(data)}\n\n"

    async def _stream() -> AsyncGenerator[str, None]:
        loop = asyncio.get_running_loop()
        ends = loop.time() + web.live_stream_seconds
        yield "retry: 2000\n\n"
        for opened in first:
            yield await frame(opened)
        while not web.closing() and loop.time() < ends:
            try:
                event = await asyncio.wait_for(feed.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if event is None:
                return
            yield await frame(event)

    def unsubscribe() -> None:
        d.work.unsubscribe(member.account_id, d.user_id, feed)

    return live_stream(web, member.id, _stream(), on_close=unsubscribe)
