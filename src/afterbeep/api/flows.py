"""/v1/flows routes: call flows, a graph of nodes and edges in the shape of a visual editor.

The node kinds, their data and their outcomes: see `afterbeep.domain.flows`. Every save is
checked as a whole; a graph with errors answers one 422 problem (`invalid-flow`) whose `errors`
name the node (and edge) of each, and nothing is stored. `PUT` stores a new version. The texts a
version speaks are made into media when it is saved (its read-only `speech` map; a body that
sends `speech` is refused like any unknown field); 503 `speech-unavailable` when the speech
engine cannot run here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.domain.clock import iso
from afterbeep.domain.flows import MAX_EDGES, MAX_NODES
from afterbeep.services.ports.flows import Flow, FlowVersion

router = APIRouter(tags=["flows"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _PROBLEM}
_INVALID: dict[int | str, dict[str, Any]] = {422: _PROBLEM}
_SAVE: dict[int | str, dict[str, Any]] = {409: _PROBLEM, 422: _PROBLEM, 503: _PROBLEM}


class FlowBody(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    nodes: list[Any] = Field(
        description=f"`[{{id, type, data: {{kind, ...}}}}]`, at most {MAX_NODES}"
    )
    edges: list[Any] = Field(
        description=f"`[{{id, source, sourceHandle, target}}]`, at most {MAX_EDGES}"
    )


class FlowSummary(BaseModel):
    id: str
    name: str
    version: int = Field(description="the current version")
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, f: Flow) -> FlowSummary:
        return cls(
            id=f.id,
            name=f.name,
            version=f.version,
            created_at=iso(f.created_at),
            updated_at=iso(f.updated_at),
        )


class FlowOut(FlowSummary):
    current_version: int
    nodes: list[Any]
    edges: list[Any]
    speech: dict[str, str] = Field(
        description="read-only: the audio made for each text the version speaks, when it was"
        ' saved, `{"<node id>/<field>": "<media id>"}` (field `text` of a say node,'
        " `promptText` of a menu or collect); `GET /v1/media/{id}/audio` plays it"
    )
    version_created_at: str

    @classmethod
    def of_version(cls, v: FlowVersion) -> FlowOut:
        return cls(
            **FlowSummary.of(v.flow).model_dump(exclude={"version"}),
            version=v.version,
            current_version=v.flow.version,
            nodes=list(v.graph.get("nodes") or []),
            edges=list(v.graph.get("edges") or []),
            speech=dict(v.speech),
            version_created_at=iso(v.created_at),
        )


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=100)]
VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post("/flows", status_code=201, responses=_SAVE)
async def create_flow(
    body: FlowBody, svc: Svc, account: CurrentAccount, response: Response
) -> FlowOut:
    saved = await svc.flows.create(account.id, body.name, body.nodes, body.edges)
    response.headers["Location"] = f"/v1/flows/{saved.flow.id}"
    return FlowOut.of_version(saved)


@router.get("/flows", responses=_INVALID)
async def list_flows(
    svc: Svc, account: CurrentAccount, limit: Limit = 50, cursor: Cursor = None
) -> ListResponse[FlowSummary]:
    """Newest first, without their graphs."""
    page = await svc.flows.list(account.id, cursor, limit)
    return ListResponse[FlowSummary](
        items=[FlowSummary.of(f) for f in page.items], next_cursor=page.next_cursor
    )


@router.get("/flows/{flow_id}", responses=_NOT_FOUND)
async def get_flow(flow_id: str, svc: Svc, account: CurrentAccount) -> FlowOut:
    """The current version."""
    return FlowOut.of_version(await svc.flows.get(account.id, flow_id))


@router.get("/flows/{flow_id}/versions/{version}", responses={**_NOT_FOUND, **_INVALID})
async def get_flow_version(
    flow_id: str, version: VersionNumber, svc: Svc, account: CurrentAccount
) -> FlowOut:
    """A version saved earlier (calls started on it keep it)."""
    return FlowOut.of_version(await svc.flows.version(account.id, flow_id, version))


@router.put("/flows/{flow_id}", responses={**_NOT_FOUND, **_SAVE})
async def replace_flow(flow_id: str, body: FlowBody, svc: Svc, account: CurrentAccount) -> FlowOut:
    """Saves the graph as a new version and makes it current."""
    saved = await svc.flows.replace(account.id, flow_id, body.name, body.nodes, body.edges)
    return FlowOut.of_version(saved)


@router.delete(
    "/flows/{flow_id}",
    status_code=204,
    response_class=Response,
    responses={**_NOT_FOUND, 409: _PROBLEM},
)
async def delete_flow(flow_id: str, svc: Svc, account: CurrentAccount) -> Response:
    """The flow and every version; 409 while a number routes calls to it."""
    await svc.flows.delete(account.id, flow_id)
    return Response(status_code=204)
