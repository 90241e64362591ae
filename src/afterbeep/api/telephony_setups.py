"""/v1/telephony-setups routes: SIP trunks, the numbers they own, and their deposit settings.

The trunk password is write-only: it goes to the secret store and is never returned; the
response tells only whether one is set."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.domain.clock import iso
from afterbeep.domain.ringless import TelephonySetup, Transport
from afterbeep.services.ringless import SetupSpec

router = APIRouter(tags=["telephony setups"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _PROBLEM}

Host = Annotated[str, Field(min_length=1, max_length=255)]
Port = Annotated[int, Field(ge=1, le=65535)]
Cps = Annotated[float, Field(gt=0, le=1000)]
Concurrency = Annotated[int, Field(ge=1, le=10_000)]
DepositUri = Annotated[
    str,
    Field(
        max_length=500,
        description='a sip: URI with `{to}`, e.g. sip:{to}@vm.carrier.example; "" for none (drops only)',
    ),
]


class NumberIn(StrictModel):
    """A caller id of the setup. Whether it is verified is the operator's word (`afterbeep
    numbers verify`), never the client's: `verified` is refused here."""

    e164: Annotated[str, Field(min_length=1, max_length=32)]


class SetupCreate(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    trunk_host: Host
    trunk_port: Port = 5060
    transport: Transport = Transport.UDP
    username: Annotated[str, Field(max_length=200)] | None = None
    password: Annotated[str, Field(max_length=500, description="write-only")] | None = None
    outbound_proxy: Annotated[str, Field(max_length=300)] | None = None
    from_domain: Annotated[str, Field(max_length=255)] | None = None
    max_calls_per_second: Cps = 1.0
    max_concurrent_calls: Concurrency = 10
    numbers: Annotated[list[NumberIn], Field(max_length=1000)] = []
    deposit_uri: DepositUri = ""
    deposit_headers: Annotated[dict[str, str], Field(max_length=20)] = {}


@with_config(ConfigDict(extra="forbid"))
class SetupUpdate(TypedDict, total=False):
    """Only the fields given change; `password: null` removes the password."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    trunk_host: Host
    trunk_port: Port
    transport: Transport
    username: Annotated[str, Field(max_length=200)] | None
    password: Annotated[str, Field(max_length=500)] | None
    outbound_proxy: Annotated[str, Field(max_length=300)] | None
    from_domain: Annotated[str, Field(max_length=255)] | None
    max_calls_per_second: Cps
    max_concurrent_calls: Concurrency
    numbers: Annotated[list[NumberIn], Field(max_length=1000)]
    deposit_uri: DepositUri
    deposit_headers: Annotated[dict[str, str], Field(max_length=20)]


class NumberOut(BaseModel):
    e164: str
    verified: bool = Field(description="verified for this account by the operator (read-only)")


class SetupOut(BaseModel):
    id: str
    name: str
    trunk_host: str
    trunk_port: int
    transport: Transport
    username: str | None
    password_set: bool
    outbound_proxy: str | None
    from_domain: str | None
    max_calls_per_second: float
    max_concurrent_calls: int
    numbers: list[NumberOut]
    deposit_uri: str
    deposit_headers: dict[str, str]
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, s: TelephonySetup) -> SetupOut:
        return cls(
            id=s.id,
            name=s.name,
            trunk_host=s.trunk_host,
            trunk_port=s.trunk_port,
            transport=s.transport,
            username=s.username,
            password_set=s.password_ref is not None,
            outbound_proxy=s.outbound_proxy,
            from_domain=s.from_domain,
            max_calls_per_second=s.max_calls_per_second,
            max_concurrent_calls=s.max_concurrent_calls,
            numbers=[NumberOut(e164=n.e164, verified=n.verified) for n in s.numbers],
            deposit_uri=s.deposit_uri,
            deposit_headers=dict(s.deposit_headers),
            created_at=iso(s.created_at),
            updated_at=iso(s.updated_at),
        )


def _numbers(items: list[NumberIn]) -> tuple[str, ...]:
    return tuple(n.e164 for n in items)


@router.post(
    "/telephony-setups", status_code=201, response_model=SetupOut, responses={422: _PROBLEM}
)
async def create_setup(
    body: SetupCreate, response: Response, svc: Svc, account: CurrentAccount
) -> SetupOut:
    values = body.model_dump(exclude={"numbers"})
    setup = await svc.ringless.create_setup(
        account.id, SetupSpec(**values, numbers=_numbers(body.numbers))
    )
    response.headers["Location"] = f"/v1/telephony-setups/{setup.id}"
    return SetupOut.of(setup)


@router.get("/telephony-setups", response_model=ListResponse[SetupOut])
async def list_setups(
    svc: Svc,
    account: CurrentAccount,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ListResponse[SetupOut]:
    page = await svc.ringless.list_setups(account.id, cursor, limit)
    return ListResponse[SetupOut](
        items=[SetupOut.of(s) for s in page.items], next_cursor=page.next_cursor
    )


@router.get("/telephony-setups/{setup_id}", response_model=SetupOut, responses=_NOT_FOUND)
async def get_setup(setup_id: str, svc: Svc, account: CurrentAccount) -> SetupOut:
    return SetupOut.of(await svc.ringless.get_setup(account.id, setup_id))


@router.patch(
    "/telephony-setups/{setup_id}",
    response_model=SetupOut,
    responses={**_NOT_FOUND, 422: _PROBLEM},
)
async def update_setup(
    setup_id: str, body: SetupUpdate, svc: Svc, account: CurrentAccount
) -> SetupOut:
    changes: dict[str, Any] = dict(body)
    if "numbers" in body:
        changes["numbers"] = _numbers([NumberIn.model_validate(n) for n in body["numbers"]])
    return SetupOut.of(await svc.ringless.update_setup(account.id, setup_id, changes))


@router.delete(
    "/telephony-setups/{setup_id}",
    status_code=204,
    response_class=Response,
    responses={**_NOT_FOUND, 409: {**_PROBLEM, "description": "setup-in-use"}},
)
async def delete_setup(setup_id: str, svc: Svc, account: CurrentAccount) -> Response:
    await svc.ringless.delete_setup(account.id, setup_id)
    return Response(status_code=204)
