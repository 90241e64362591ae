"""/v1/numbers routes: the account's phone numbers and where their calls go."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.domain.clock import iso
from afterbeep.domain.numbers import DestKind, Number, NumberStatus
from afterbeep.services.numbers import UNSET, NumberChanges

router = APIRouter(tags=["numbers"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _PROBLEM}
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {
        **_PROBLEM,
        "description": "invalid-phone-number, unknown-reference, unsupported-destination, ...",
    }
}
_TAKEN: dict[int | str, dict[str, Any]] = {
    409: {**_PROBLEM, "description": "number-taken: held by an account"}
}

PhoneIn = Annotated[
    str,
    Field(
        min_length=1,
        max_length=32,
        description="national (`(202) 555-0123`), `+` or `00` international form; stored in E.164",
    ),
]
RefId = Annotated[str, Field(min_length=1, max_length=40)]
KindDoc = (
    "`voicemail` (a mailbox id), `flow` (a flow id), `hangup` (no id: the call is declined); "
    "`user`, `ring_group`, `queue`; `voicemail_main` (no id: the owners' phone menu)"
)
AllowAnonymous = Annotated[
    bool,
    Field(
        description="false (or 0): calls whose caller hides its identity (From `anonymous`, "
        "`Privacy: id`, no caller id) are refused with SIP 403"
    ),
]
StatusDoc = "`disabled`: calls to the number are answered SIP 404, as if it were not held"


class NumberCreate(StrictModel):
    e164: PhoneIn
    dest_kind: DestKind = Field(description=KindDoc)
    dest_id: RefId | None = Field(default=None, description="null (or absent) for `hangup`")
    schedule_id: RefId | None = Field(
        default=None,
        description="business hours choosing closed_dest (out of hours) or holiday_dest",
    )
    closed_dest_kind: DestKind | None = Field(
        default=None, description="with closed_dest_id; used out of hours; " + KindDoc
    )
    closed_dest_id: RefId | None = None
    holiday_dest_kind: DestKind | None = Field(
        default=None,
        description="with holiday_dest_id; used on a holiday (else the closed destination)",
    )
    holiday_dest_id: RefId | None = None
    status: NumberStatus = Field(default=NumberStatus.ACTIVE, description=StatusDoc)
    allow_anonymous: AllowAnonymous = True


@with_config(ConfigDict(extra="forbid"))
class NumberUpdate(TypedDict, total=False):
    """Only the fields given change; the optional ones may be set to null."""

    e164: PhoneIn
    dest_kind: Annotated[DestKind, Field(description=KindDoc)]
    dest_id: RefId | None
    schedule_id: RefId | None
    closed_dest_kind: DestKind | None
    closed_dest_id: RefId | None
    holiday_dest_kind: DestKind | None
    holiday_dest_id: RefId | None
    status: Annotated[NumberStatus, Field(description=StatusDoc)]
    allow_anonymous: AllowAnonymous


class NumberOut(BaseModel):
    id: str
    e164: str
    dest_kind: DestKind
    dest_id: str | None
    schedule_id: str | None
    closed_dest_kind: DestKind | None
    closed_dest_id: str | None
    holiday_dest_kind: DestKind | None
    holiday_dest_id: str | None
    status: NumberStatus
    allow_anonymous: bool
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, n: Number) -> NumberOut:
        return cls(
            id=n.id,
            e164=n.e164,
            dest_kind=n.dest_kind,
            dest_id=n.dest_id,
            schedule_id=n.schedule_id,
            closed_dest_kind=n.closed_dest_kind,
            closed_dest_id=n.closed_dest_id,
            holiday_dest_kind=n.holiday_dest_kind,
            holiday_dest_id=n.holiday_dest_id,
            status=n.status,
            allow_anonymous=n.allow_anonymous,
            created_at=iso(n.created_at),
            updated_at=iso(n.updated_at),
        )


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=100)]


@router.post("/numbers", status_code=201, responses={**_INVALID, **_TAKEN})
async def create_number(
    body: NumberCreate, svc: Svc, account: CurrentAccount, response: Response
) -> NumberOut:
    number = await svc.numbers.create(
        account.id,
        body.e164,
        body.dest_kind,
        body.dest_id,
        schedule_id=body.schedule_id,
        closed_dest_kind=body.closed_dest_kind,
        closed_dest_id=body.closed_dest_id,
        holiday_dest_kind=body.holiday_dest_kind,
        holiday_dest_id=body.holiday_dest_id,
        status=body.status,
        allow_anonymous=body.allow_anonymous,
    )
    response.headers["Location"] = f"/v1/numbers/{number.id}"
    return NumberOut.of(number)


@router.get("/numbers", responses=_INVALID)
async def list_numbers(
    svc: Svc, account: CurrentAccount, limit: Limit = 50, cursor: Cursor = None
) -> ListResponse[NumberOut]:
    page = await svc.numbers.list(account.id, cursor, limit)
    return ListResponse[NumberOut](
        items=[NumberOut.of(n) for n in page.items], next_cursor=page.next_cursor
    )


@router.get("/numbers/{number_id}", responses=_NOT_FOUND)
async def get_number(number_id: str, svc: Svc, account: CurrentAccount) -> NumberOut:
    return NumberOut.of(await svc.numbers.get(account.id, number_id))


@router.patch("/numbers/{number_id}", responses={**_NOT_FOUND, **_INVALID, **_TAKEN})
async def update_number(
    number_id: str, body: NumberUpdate, svc: Svc, account: CurrentAccount
) -> NumberOut:
    changes = NumberChanges(
        e164=body.get("e164", UNSET),
        dest_kind=body.get("dest_kind", UNSET),
        dest_id=body.get("dest_id", UNSET),
        schedule_id=body.get("schedule_id", UNSET),
        closed_dest_kind=body.get("closed_dest_kind", UNSET),
        closed_dest_id=body.get("closed_dest_id", UNSET),
        holiday_dest_kind=body.get("holiday_dest_kind", UNSET),
        holiday_dest_id=body.get("holiday_dest_id", UNSET),
        status=body.get("status", UNSET),
        allow_anonymous=body.get("allow_anonymous", UNSET),
    )
    return NumberOut.of(await svc.numbers.update(account.id, number_id, changes))


@router.delete(
    "/numbers/{number_id}", status_code=204, response_class=Response, responses=_NOT_FOUND
)
async def delete_number(number_id: str, svc: Svc, account: CurrentAccount) -> Response:
    await svc.numbers.delete(account.id, number_id)
    return Response(status_code=204)
