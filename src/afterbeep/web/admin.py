"""The admin pages (role `admin`): numbers and their destinations, schedules with their state
now, flows (the graph drawn from its JSON, the JSON editor with its errors on the nodes),
users and devices with their registrations, queues with their live stats, call centers,
webhooks with their delivery log, API keys. Each reads and writes through the service the
matching `/v1` resource uses; members of other roles get 403."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from afterbeep.domain.errors import Conflict, InvalidFlow, InvalidInput, NotFound
from afterbeep.domain.members import Member
from afterbeep.domain.numbers import Destination, DestKind, Number
from afterbeep.services.ports.flows import FlowVersion
from afterbeep.web.session import (
    Form,
    PageError,
    SignedIn,
    Visitor,
    Web,
    WebServices,
    admin_only,
    not_found,
)
from afterbeep.web.templating import page

router = APIRouter(include_in_schema=False)

MAX_ITEMS = 200
Cursor = Annotated[str | None, Query(max_length=200)]
Saved = Annotated[str | None, Query(max_length=20)]
# The drawing of a flow: boxes in columns by their distance from the entry.
NODE_W, NODE_H, COL_GAP, ROW_GAP, MARGIN = 150, 46, 100, 24, 10


def _context(who: Visitor, member: Member, **values: Any) -> dict[str, Any]:
    return {"csrf": who.csrf, "member": member, **values}


@router.get("/admin")
async def admin_home(request: Request, who: SignedIn) -> Response:
    member = admin_only(who)
    return page(request, "admin/index.html", _context(who, member))


# -- numbers ------------------------------------------------------------------------------


async def _names(web: WebServices, account_id: str) -> dict[str, str]:
    """Mailboxes', flows' and schedules' names by id, for the destinations shown."""
    names: dict[str, str] = {}
    for view in (await web.mailboxes.list(account_id, None, MAX_ITEMS)).items:
        names[view.mailbox.id] = view.mailbox.name
    for flow in (await web.api.flows.list(account_id, None, MAX_ITEMS)).items:
        names[flow.id] = flow.name
    for stored in (await web.api.schedules.list(account_id, None, MAX_ITEMS)).items:
        names[stored.id] = stored.schedule.name
    return names


def _shown(dest: Destination | None, names: dict[str, str]) -> dict[str, str] | None:
    if dest is None:
        return None
    link = {DestKind.VOICEMAIL: "/inbox/", DestKind.FLOW: "/admin/flows/"}.get(dest.kind)
    return {
        "kind": dest.kind.value.replace("_", " "),
        "name": names.get(dest.id or "", dest.id or ""),
        "href": f"{link}{dest.id}" if link and dest.id else "",
    }


@router.get("/admin/numbers")
async def numbers_page(request: Request, web: Web, who: SignedIn, cursor: Cursor = None) -> Response:
    member = admin_only(who)
    found = await web.api.numbers.list(member.account_id, cursor, 100)
    names = await _names(web, member.account_id)

    def row(n: Number) -> dict[str, Any]:
        return {
            "n": n,
            "dest": _shown(n.dest, names),
            "closed": _shown(n.closed_dest, names),
            "holiday": _shown(n.holiday_dest, names),
            "schedule": names.get(n.schedule_id or "", n.schedule_id),
        }

    context = _context(who, member, rows=[row(n) for n in found.items], next_cursor=found.next_cursor)
    return page(request, "admin/numbers.html", context)


# -- schedules ----------------------------------------------------------------------------


@router.get("/admin/schedules")
async def schedules_page(request: Request, web: Web, who: SignedIn) -> Response:
    member = admin_only(who)
    rows = []
    for stored in (await web.api.schedules.list(member.account_id, None, MAX_ITEMS)).items:
        state = await web.api.schedules.state(member.account_id, stored.id)
        rows.append({"s": stored, "state": state})
    return page(request, "admin/schedules.html", _context(who, member, rows=rows))


# -- flows --------------------------------------------------------------------------------


@dataclass
class DrawnNode:
    id: str
    kind: str
    x: int
    y: int
    errors: list[str] = field(default_factory=list)


@dataclass
class DrawnEdge:
    x1: int
    y1: int
    x2: int
    y2: int
    label: str
    errors: list[str] = field(default_factory=list)


@dataclass
class Drawing:
    width: int
    height: int
    nodes: list[DrawnNode]
    edges: list[DrawnEdge]


def draw(graph: object, errors: list[dict[str, str | None]]) -> Drawing:
    """Boxes and arrows for a flow's raw JSON (read defensively: it may be the invalid text
    just typed), with each validation error on its node or edge."""
    raw_nodes = graph.get("nodes") if isinstance(graph, dict) else None
    raw_edges = graph.get("edges") if isinstance(graph, dict) else None
    nodes: dict[str, str] = {}
    for raw in raw_nodes if isinstance(raw_nodes, list) else []:
        if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"] not in nodes:
            data = raw.get("data")
            kind = data.get("kind") if isinstance(data, dict) else None
            nodes[raw["id"]] = str(kind or raw.get("type") or "?")[:40]
    links: list[tuple[str, str, str, str | None]] = []
    for raw in raw_edges if isinstance(raw_edges, list) else []:
        if isinstance(raw, dict) and raw.get("source") in nodes and raw.get("target") in nodes:
            edge_id = raw.get("id") if isinstance(raw.get("id"), str) else None
            links.append((raw["source"], raw["target"], str(raw.get("sourceHandle") or ""), edge_id))
    # Columns by breadth-first distance from the entry (unreached nodes in a last column).
    entry = next((i for i, k in nodes.items() if k == "entry"), next(iter(nodes), None))
    depth: dict[str, int] = {}
    if entry is not None:
        depth[entry] = 0
        frontier = [entry]
        while frontier:
            nxt = []
            for source in frontier:
                for s, t, _h, _e in links:
                    if s == source and t not in depth:
                        depth[t] = depth[source] + 1
                        nxt.append(t)
            frontier = nxt
    last = max(depth.values(), default=-1) + 1
    rows: dict[int, int] = {}
    drawn: dict[str, DrawnNode] = {}
    for node_id, kind in nodes.items():
        col = depth.get(node_id, last)
        row = rows.get(col, 0)
        rows[col] = row + 1
        x = MARGIN + col * (NODE_W + COL_GAP)
        y = MARGIN + row * (NODE_H + ROW_GAP)
        drawn[node_id] = DrawnNode(node_id, kind, x, y)
    edges_by_id: dict[str, DrawnEdge] = {}
    edges: list[DrawnEdge] = []
    for s, t, handle, edge_id in links:
        a, b = drawn[s], drawn[t]
        edge = DrawnEdge(a.x + NODE_W, a.y + NODE_H // 2, b.x, b.y + NODE_H // 2, handle)
        edges.append(edge)
        if edge_id is not None:
            edges_by_id[edge_id] = edge
    for error in errors:
        text = f"{error.get('field')}: {error.get('message')}"
        on_node, on_edge = error.get("node_id"), error.get("edge_id")
        if on_node is not None and on_node in drawn:
            drawn[on_node].errors.append(text)
        elif on_edge is not None and on_edge in edges_by_id:
            edges_by_id[on_edge].errors.append(text)
    width = MARGIN * 2 + (max(rows, default=0) + 1) * (NODE_W + COL_GAP)
    height = MARGIN * 2 + max(rows.values(), default=1) * (NODE_H + ROW_GAP)
    return Drawing(width, height, list(drawn.values()), edges)


async def _flow(web: WebServices, member: Member, flow_id: str) -> FlowVersion:
    try:
        return await web.api.flows.get(member.account_id, flow_id)
    except NotFound as exc:
        raise not_found() from exc


@router.get("/admin/flows")
async def flows_page(request: Request, web: Web, who: SignedIn) -> Response:
    member = admin_only(who)
    flows = (await web.api.flows.list(member.account_id, None, MAX_ITEMS)).items
    return page(request, "admin/flows.html", _context(who, member, flows=flows))


def _flow_page(
    request: Request, who: Visitor, member: Member, saved: FlowVersion, text: str,
    errors: list[dict[str, str | None]], status: int = 200, notice: str | None = None,
) -> Response:  # fmt: skip
    try:
        shown: object = json.loads(text)
    except ValueError:
        shown = saved.graph
    drawing = draw(shown, errors)
    context = _context(
        who, member, saved=saved, text=text, drawing=drawing, errors=errors,
        node_w=NODE_W, node_h=NODE_H, notice=notice,
    )  # fmt: skip
    return page(request, "admin/flow.html", context, status=status)


@router.get("/admin/flows/{flow_id}")
async def flow_page(
    request: Request, flow_id: str, web: Web, who: SignedIn, saved: Saved = None
) -> Response:
    member = admin_only(who)
    current = await _flow(web, member, flow_id)
    text = json.dumps(current.graph, indent=2)
    notice = "Saved." if saved else None
    return _flow_page(request, who, member, current, text, [], notice=notice)


@router.post("/admin/flows/{flow_id}")
async def save_flow(
    request: Request, flow_id: str, web: Web, who: SignedIn, form: Form
) -> Response:
    """The JSON of the textarea saved as the flow's next version, as `PUT /v1/flows/{id}`."""
    member = admin_only(who)
    saved = await _flow(web, member, flow_id)
    text = str(form.get("graph", ""))
    try:
        graph = json.loads(text)
    except ValueError as exc:
        errors: list[dict[str, str | None]] = [
            {"node_id": None, "edge_id": None, "field": "JSON", "message": str(exc)}
        ]
        return _flow_page(request, who, member, saved, text, errors, status=422)
    if not isinstance(graph, dict):
        errors = [{"node_id": None, "edge_id": None, "field": "JSON", "message": "must be an object"}]
        return _flow_page(request, who, member, saved, text, errors, status=422)
    nodes, edges = graph.get("nodes"), graph.get("edges")
    try:
        await web.api.flows.replace(
            member.account_id, flow_id, saved.flow.name,
            nodes if isinstance(nodes, list) else [], edges if isinstance(edges, list) else [],
        )  # fmt: skip
    except InvalidFlow as exc:
        return _flow_page(request, who, member, saved, text, exc.errors, status=422)
    except InvalidInput as exc:
        errors = [{"node_id": None, "edge_id": None, "field": exc.field, "message": exc.message}]
        return _flow_page(request, who, member, saved, text, errors, status=422)
    except NotFound as exc:
        raise not_found() from exc
    return RedirectResponse(f"/admin/flows/{flow_id}?saved=1", status_code=303)


# -- webhooks -----------------------------------------------------------------------------


@router.get("/admin/webhooks")
async def webhooks_page(request: Request, web: Web, who: SignedIn) -> Response:
    member = admin_only(who)
    hooks = (await web.api.webhooks.list(member.account_id, None, MAX_ITEMS)).items
    return page(request, "admin/webhooks.html", _context(who, member, hooks=hooks))


@router.get("/admin/webhooks/{webhook_id}")
async def webhook_page(
    request: Request, webhook_id: str, web: Web, who: SignedIn, cursor: Cursor = None
) -> Response:
    member = admin_only(who)
    try:
        hook = await web.api.webhooks.get(member.account_id, webhook_id)
        log = await web.api.webhooks.deliveries(member.account_id, webhook_id, cursor, 50)
    except NotFound as exc:
        raise not_found() from exc
    context = _context(who, member, hook=hook, deliveries=log.items, next_cursor=log.next_cursor)
    return page(request, "admin/webhook.html", context)


# -- API keys -----------------------------------------------------------------------------


async def _keys_page(
    request: Request, web: WebServices, who: Visitor, member: Member, **extra: Any
) -> Response:
    keys = await web.api.accounts.list_keys(member.account_id)
    response = page(request, "admin/api_keys.html", _context(who, member, keys=keys, **extra))
    return response


@router.get("/admin/api-keys")
async def api_keys_page(request: Request, web: Web, who: SignedIn) -> Response:
    member = admin_only(who)
    return await _keys_page(request, web, who, member)


@router.post("/admin/api-keys")
async def create_api_key(request: Request, web: Web, who: SignedIn, form: Form) -> Response:
    """The new key's secret is on this answer only (no redirect: a reload must not show it)."""
    member = admin_only(who)
    try:
        issued = await web.api.accounts.create_key(member.account_id)
    except Conflict as exc:
        raise PageError(409, "Too many keys", exc.message) from exc
    return await _keys_page(request, web, who, member, issued=issued)


@router.post("/admin/api-keys/{key_id}/revoke")
async def revoke_api_key(key_id: str, web: Web, who: SignedIn, form: Form) -> Response:
    member = admin_only(who)
    try:
        await web.api.accounts.revoke_key(member.account_id, key_id)
    except NotFound as exc:
        raise not_found() from exc
    except Conflict as exc:
        raise PageError(409, "Not revoked", exc.message) from exc
    return RedirectResponse("/admin/api-keys", status_code=303)


# -- users and devices --------------------------------------------------------------------


@router.get("/admin/users")
async def users_page(request: Request, web: Web, who: SignedIn) -> Response:
    """Users with their devices, each device registered (its Contacts, from the registrar) or
    not; the members linked to each user."""
    member = admin_only(who)
    users = web.api.users
    if users is None:
        raise PageError(503, "Unavailable", "Users are not served here.")
    account = member.account_id
    names = await _names(web, account)
    linked: dict[str, list[str]] = {}
    for m in (await web.members.list(account, None, MAX_ITEMS)).items:
        if m.user_id is not None:
            linked.setdefault(m.user_id, []).append(m.email)
    devices: dict[str, list[Any]] = {}
    for device in (await users.list_devices(account, None, MAX_ITEMS)).items:
        devices.setdefault(device.user_id, []).append(device)
    rows = []
    for user in (await users.list_users(account, None, MAX_ITEMS)).items:
        contacts: dict[str, list[Any]] = {}
        for registration in await users.registrations(account, user.id):
            contacts.setdefault(registration.device_id, []).append(registration)
        rows.append(
            {
                "u": user,
                "mailbox": names.get(user.voicemail_id or "", user.voicemail_id),
                "members": linked.get(user.id, []),
                "devices": [
                    {"d": d, "contacts": contacts.get(d.id, [])} for d in devices.get(user.id, [])
                ],
            }
        )
    return page(request, "admin/users.html", _context(who, member, rows=rows))


# -- queues -------------------------------------------------------------------------------


@router.get("/admin/queues")
async def queues_page(request: Request, web: Web, who: SignedIn) -> Response:
    """Queues with the stats of `GET /v1/queues/{id}/stats` (the table refreshes itself)."""
    member = admin_only(who)
    account = member.account_id
    rows = []
    for queue in (await web.api.queues.list(account, None, MAX_ITEMS)).items:
        stats = await web.api.queues.stats(account, queue.id)
        rows.append({"q": queue, "stats": stats})
    agents = await web.api.queues.agents(account)
    usernames: dict[str, str] = {}
    if web.api.users is not None:
        for user in (await web.api.users.list_users(account, None, MAX_ITEMS)).items:
            usernames[user.id] = user.display_name or user.username
    context = _context(who, member, rows=rows, agents=agents, usernames=usernames)
    return page(request, "admin/queues.html", context)


# -- call centers -------------------------------------------------------------------------


@router.get("/admin/call-centers")
async def call_centers_page(request: Request, web: Web, who: SignedIn) -> Response:
    member = admin_only(who)
    if web.api.call_centers is None:
        raise PageError(503, "Unavailable", "Call centers are not served here.")
    centers = (await web.api.call_centers.list(member.account_id, None, MAX_ITEMS)).items
    queues = {q.id: q.name for q in (await web.api.queues.list(member.account_id, None, MAX_ITEMS)).items}
    return page(request, "admin/call_centers.html", _context(who, member, centers=centers, queues=queues))
