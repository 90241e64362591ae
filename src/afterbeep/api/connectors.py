"""/v1/connectors: outside contact centers that receive a team's voicemails (seed 002's Telephony
API over HTTP), and /v1/cc-deliveries: what became of each message sent to a team, with every
request and answer of its sequence."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from afterbeep.api.deps import ApiServices, CurrentAccount, Svc
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.domain import connectors as rules
from afterbeep.domain.clock import iso
from afterbeep.domain.errors import Unavailable
from afterbeep.domain.voicemail_sequence import Delivery, DeliveryStatus, Exchange
from afterbeep.services.connectors import KEY_PEM_MAX, ConnectorService, ConnectorView
from afterbeep.services.voicemail_sequence import TeamDeliveries

router = APIRouter(tags=["connectors"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _PROBLEM}
_INVALID: dict[int | str, dict[str, Any]] = {422: _PROBLEM}

Name = Annotated[str, Field(min_length=1, max_length=rules.NAME_MAX)]
BaseUrl = Annotated[
    str,
    Field(
        min_length=1,
        max_length=rules.URL_MAX,
        description="the Telephony API's root (requests go to <base_url>/voiceCalls...)",
    ),
]
ApiName = Annotated[str, Field(min_length=1, max_length=80, description="JWT `sub`, callCenterApiName")]
OrgId = Annotated[str, Field(min_length=1, max_length=rules.ORG_ID_MAX, description="JWT `iss`")]
Audience = Annotated[str, Field(min_length=1, max_length=rules.AUDIENCE_MAX, description="JWT `aud`")]
Provider = Annotated[
    str, Field(min_length=1, max_length=rules.HEADER_MAX, description="Telephony-Provider-Name")
]
Fallback = Annotated[
    str,
    Field(
        min_length=1,
        max_length=rules.QUEUE_MAX,
        description="omniFlow `fallbackQueue` (default: the mailbox's queue id)",
    ),
]
KeyPem = Annotated[
    str,
    Field(
        min_length=1,
        max_length=KEY_PEM_MAX,
        description="RS256 private key (PEM, RSA >= 2048 bits); kept in the secret store, never returned",
    ),
]


class ConnectorCreate(StrictModel):
    name: Name
    base_url: BaseUrl
    call_center_api_name: ApiName
    org_id: OrgId
    audience: Audience | None = None
    provider_name: Provider | None = None
    fallback_queue: Fallback | None = None
    private_key_pem: KeyPem | None = Field(
        default=None, description="generated (2048 bits) when absent; see `public_key_pem`"
    )


@with_config(ConfigDict(extra="forbid"))
class ConnectorUpdate(TypedDict, total=False):
    name: Name
    base_url: BaseUrl
    call_center_api_name: ApiName
    org_id: OrgId
    audience: Audience | None
    provider_name: Provider | None
    fallback_queue: Fallback | None
    private_key_pem: KeyPem


class ConnectorOut(BaseModel):
    id: str
    name: str
    base_url: str
    call_center_api_name: str
    org_id: str
    audience: str | None
    provider_name: str | None
    fallback_queue: str | None
    public_key_pem: str | None = Field(
        description="register it on the far end's call center (the private key is never shown)"
    )
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, view: ConnectorView) -> ConnectorOut:
        c = view.connector
        return cls(
            id=c.id,
            name=c.name,
            base_url=c.base_url,
            call_center_api_name=c.call_center_api_name,
            org_id=c.org_id,
            audience=c.audience,
            provider_name=c.provider_name,
            fallback_queue=c.fallback_queue,
            public_key_pem=view.public_key_pem,
            created_at=iso(c.created_at),
            updated_at=iso(c.updated_at),
        )


class ExchangeOut(BaseModel):
    step: str
    attempt: int
    method: str
    path: str
    request: dict[str, Any] | None
    status: int | None
    answer: dict[str, Any] | None
    error: str | None
    at: str

    @classmethod
    def of(cls, x: Exchange) -> ExchangeOut:
        return cls(
            step=x.step.value,
            attempt=x.attempt,
            method=x.method,
            path=x.path,
            request=x.request,
            status=x.status,
            answer=x.answer,
            error=x.error,
            at=iso(x.at),
        )


class DeliveryOut(BaseModel):
    id: str
    message_id: str
    mailbox_id: str
    queue_id: str
    connector_id: str | None
    call_center_id: str | None
    vendor_call_key: str
    voice_call_id: str | None
    status: DeliveryStatus
    steps_done: list[str]
    attempts: int
    next_attempt_at: str
    routed: dict[str, Any] | None
    transcript_note: str | None
    last_error: str | None = Field(description="why it failed (or why the last try failed)")
    created_at: str
    updated_at: str
    exchanges: list[ExchangeOut] | None = None

    @classmethod
    def of(cls, d: Delivery, exchanges: tuple[Exchange, ...] | None = None) -> DeliveryOut:
        return cls(
            id=d.id,
            message_id=d.message_id,
            mailbox_id=d.mailbox_id,
            queue_id=d.queue_id,
            connector_id=d.connector_id,
            call_center_id=d.call_center_id,
            vendor_call_key=d.vendor_call_key,
            voice_call_id=d.voice_call_id,
            status=d.status,
            steps_done=[s.value for s in d.steps_done],
            attempts=d.attempts,
            next_attempt_at=iso(d.next_attempt_at),
            routed=d.routed,
            transcript_note=d.transcript_note,
            last_error=d.last_error,
            created_at=iso(d.created_at),
            updated_at=iso(d.updated_at),
            exchanges=None if exchanges is None else [ExchangeOut.of(x) for x in exchanges],
        )


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=100)]


def _connectors(svc: ApiServices) -> ConnectorService:
    if svc.connectors is None:
        raise Unavailable("connectors are not available on this node")
    return svc.connectors


def _deliveries(svc: ApiServices) -> TeamDeliveries:
    if svc.team_deliveries is None:
        raise Unavailable("deliveries are not available on this node")
    return svc.team_deliveries


@router.post("/connectors", status_code=201, responses=_INVALID)
async def create_connector(
    body: ConnectorCreate, svc: Svc, account: CurrentAccount, response: Response
) -> ConnectorOut:
    fields = body.model_dump(exclude_unset=True)
    key = fields.pop("private_key_pem", None)
    view = await _connectors(svc).create(account.id, fields, key)
    response.headers["Location"] = f"/v1/connectors/{view.connector.id}"
    return ConnectorOut.of(view)


@router.get("/connectors", responses=_INVALID)
async def list_connectors(
    svc: Svc, account: CurrentAccount, limit: Limit = 50, cursor: Cursor = None
) -> ListResponse[ConnectorOut]:
    page = await _connectors(svc).list(account.id, cursor, limit)
    return ListResponse[ConnectorOut](
        items=[ConnectorOut.of(v) for v in page.items], next_cursor=page.next_cursor
    )


@router.get("/connectors/{connector_id}", responses=_NOT_FOUND)
async def get_connector(connector_id: str, svc: Svc, account: CurrentAccount) -> ConnectorOut:
    return ConnectorOut.of(await _connectors(svc).get(account.id, connector_id))


@router.patch("/connectors/{connector_id}", responses={**_NOT_FOUND, **_INVALID})
async def update_connector(
    connector_id: str, body: ConnectorUpdate, svc: Svc, account: CurrentAccount
) -> ConnectorOut:
    changes: dict[str, Any] = dict(body)
    key = changes.pop("private_key_pem", None)
    return ConnectorOut.of(await _connectors(svc).update(account.id, connector_id, changes, key))


@router.delete(
    "/connectors/{connector_id}",
    status_code=204,
    response_class=Response,
    responses={**_NOT_FOUND, 409: {**_PROBLEM, "description": "a mailbox sends its messages through it"}},
)
async def delete_connector(connector_id: str, svc: Svc, account: CurrentAccount) -> Response:
    await _connectors(svc).delete(account.id, connector_id)
    return Response(status_code=204)


@router.get("/cc-deliveries", responses=_INVALID)
async def list_deliveries(
    svc: Svc,
    account: CurrentAccount,
    status: DeliveryStatus | None = None,
    message_id: Annotated[str | None, Query(max_length=40)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListResponse[DeliveryOut]:
    """Messages of a team's mailbox on their way to a contact center, newest first."""
    page = await _deliveries(svc).list(
        account.id, status=status, message_id=message_id, cursor=cursor, limit=limit
    )
    return ListResponse[DeliveryOut](
        items=[DeliveryOut.of(d) for d in page.items], next_cursor=page.next_cursor
    )


@router.get("/cc-deliveries/{delivery_id}", responses=_NOT_FOUND)
async def get_delivery(delivery_id: str, svc: Svc, account: CurrentAccount) -> DeliveryOut:
    """The delivery with every request it made and the answer to each."""
    view = await _deliveries(svc).get(account.id, delivery_id)
    return DeliveryOut.of(view.delivery, view.exchanges)
