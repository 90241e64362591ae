"""/v1/call-centers routes: the Telephony API's call centers and their routing configuration.

`call_center_api_name` is the seed's `callCenterApiName` (unique in the account); `org_id` is
the issuer (`iss`) of the call center's RS256 tokens, checked with `public_key_pem`; `routes`
give per dialed number the queue of live calls and the queue of voicemails; `flows` name the
same for omniFlow's `flowDevName`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from afterbeep.api._pbx import INVALID, NOT_FOUND, PROBLEM, RefId
from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.domain.call_centers import CallCenter, Flow, Route
from afterbeep.domain.clock import iso
from afterbeep.domain.errors import InvalidInput, Unavailable
from afterbeep.services.call_centers import CallCenterChanges, CallCenterService
from afterbeep.services.ring_groups import UNSET

router = APIRouter(tags=["call centers"])

ApiName = Annotated[str, Field(min_length=1, max_length=80, examples=["MyContactCenter"])]
OrgId = Annotated[str, Field(min_length=1, max_length=100)]
Pem = Annotated[str, Field(min_length=1, max_length=10_000)]


class RouteIn(StrictModel):
    dialed_number: Annotated[str, Field(min_length=1, max_length=32, description="E.164")]
    call_queue_id: RefId | None = Field(default=None, description="live calls")
    voicemail_queue_id: RefId | None = Field(default=None, description="callOrigin Voicemail")


class FlowIn(StrictModel):
    dev_name: ApiName
    call_queue_id: RefId | None = None
    voicemail_queue_id: RefId | None = None


class CallCenterIn(StrictModel):
    """Create: every field but `routes` and `flows` is required. Update (PATCH): only the
    fields given change; `routes` and `flows` replace the lists."""

    call_center_api_name: ApiName | None = None
    org_id: OrgId | None = Field(default=None, description="the `iss` of its tokens")
    public_key_pem: Pem | None = Field(
        default=None, description="RSA public key (PEM, at least 2048 bits) checking RS256 tokens"
    )
    routes: list[RouteIn] | None = Field(default=None, max_length=200)
    flows: list[FlowIn] | None = Field(default=None, max_length=200)


class RouteOut(BaseModel):
    dialed_number: str
    call_queue_id: str | None
    voicemail_queue_id: str | None


class FlowOut(BaseModel):
    dev_name: str
    call_queue_id: str | None
    voicemail_queue_id: str | None


class CallCenterOut(BaseModel):
    id: str
    call_center_api_name: str
    org_id: str
    public_key_pem: str
    routes: list[RouteOut]
    flows: list[FlowOut]
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, c: CallCenter) -> CallCenterOut:
        return cls(
            id=c.id,
            call_center_api_name=c.api_name,
            org_id=c.org_id,
            public_key_pem=c.public_key_pem,
            routes=[
                RouteOut(
                    dialed_number=r.dialed_number,
                    call_queue_id=r.call_queue_id,
                    voicemail_queue_id=r.voicemail_queue_id,
                )
                for r in c.routes
            ],
            flows=[
                FlowOut(
                    dev_name=f.dev_name,
                    call_queue_id=f.call_queue_id,
                    voicemail_queue_id=f.voicemail_queue_id,
                )
                for f in c.flows
            ],
            created_at=iso(c.created_at),
            updated_at=iso(c.updated_at),
        )


def _service(svc: Svc) -> CallCenterService:
    if svc.call_centers is None:
        raise Unavailable("call centers are not available on this service")
    return svc.call_centers


def _routes(body: CallCenterIn) -> list[Route]:
    return [
        Route(r.dialed_number, r.call_queue_id, r.voicemail_queue_id) for r in body.routes or []
    ]


def _flows(body: CallCenterIn) -> list[Flow]:
    return [Flow(f.dev_name, f.call_queue_id, f.voicemail_queue_id) for f in body.flows or []]


@router.post("/call-centers", status_code=201, responses={**INVALID, 409: PROBLEM})
async def create_call_center(
    body: CallCenterIn, svc: Svc, account: CurrentAccount, response: Response
) -> CallCenterOut:
    for name in ("call_center_api_name", "org_id", "public_key_pem"):
        if getattr(body, name) is None:
            raise InvalidInput(name, "is required")
    assert body.call_center_api_name and body.org_id and body.public_key_pem
    center = await _service(svc).create(
        account.id,
        body.call_center_api_name,
        body.org_id,
        body.public_key_pem,
        _routes(body),
        _flows(body),
    )
    response.headers["Location"] = f"/v1/call-centers/{center.id}"
    return CallCenterOut.of(center)


@router.get("/call-centers", responses=INVALID)
async def list_call_centers(
    svc: Svc,
    account: CurrentAccount,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> ListResponse[CallCenterOut]:
    page = await _service(svc).list(account.id, cursor, limit)
    return ListResponse[CallCenterOut](
        items=[CallCenterOut.of(c) for c in page.items], next_cursor=page.next_cursor
    )


@router.get("/call-centers/{call_center_id}", responses=NOT_FOUND)
async def get_call_center(call_center_id: str, svc: Svc, account: CurrentAccount) -> CallCenterOut:
    return CallCenterOut.of(await _service(svc).get(account.id, call_center_id))


@router.patch("/call-centers/{call_center_id}", responses={**NOT_FOUND, **INVALID, 409: PROBLEM})
async def update_call_center(
    call_center_id: str, body: CallCenterIn, svc: Svc, account: CurrentAccount
) -> CallCenterOut:
    given = body.model_fields_set
    for name in given:
        if getattr(body, name) is None:
            raise InvalidInput(name, "must not be null")
    changes = CallCenterChanges(
        api_name=body.call_center_api_name
        if "call_center_api_name" in given and body.call_center_api_name
        else UNSET,
        org_id=body.org_id if "org_id" in given and body.org_id else UNSET,
        public_key_pem=body.public_key_pem
        if "public_key_pem" in given and body.public_key_pem
        else UNSET,
        routes=_routes(body) if "routes" in given else UNSET,
        flows=_flows(body) if "flows" in given else UNSET,
    )
    return CallCenterOut.of(await _service(svc).update(account.id, call_center_id, changes))


@router.delete(
    "/call-centers/{call_center_id}",
    status_code=204,
    response_class=Response,
    responses={**NOT_FOUND, 409: {**PROBLEM, "description": "call-center-in-use"}},
)
async def delete_call_center(call_center_id: str, svc: Svc, account: CurrentAccount) -> Response:
    """409 once the call center has voice calls."""
    await _service(svc).delete(account.id, call_center_id)
    return Response(status_code=204)
