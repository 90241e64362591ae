"""/v1/suppressions routes: the account's do-not-send list, checked before every attempt."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.domain.clock import iso
from afterbeep.domain.ringless import Suppression

router = APIRouter(tags=["suppressions"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


class SuppressionCreate(StrictModel):
    e164: Annotated[str, Field(min_length=1, max_length=32)]
    reason: Annotated[str, Field(max_length=500)] | None = None


class SuppressionOut(BaseModel):
    id: str
    e164: str
    reason: str | None
    created_at: str

    @classmethod
    def of(cls, s: Suppression) -> SuppressionOut:
        return cls(id=s.id, e164=s.e164, reason=s.reason, created_at=iso(s.created_at))


@router.post(
    "/suppressions",
    status_code=201,
    response_model=SuppressionOut,
    responses={409: {**_PROBLEM, "description": "already-suppressed"}, 422: _PROBLEM},
)
async def add_suppression(
    body: SuppressionCreate, response: Response, svc: Svc, account: CurrentAccount
) -> SuppressionOut:
    found = await svc.ringless.add_suppression(account.id, body.e164, body.reason)
    response.headers["Location"] = f"/v1/suppressions/{found.id}"
    return SuppressionOut.of(found)


@router.get("/suppressions", response_model=ListResponse[SuppressionOut])
async def list_suppressions(
    svc: Svc,
    account: CurrentAccount,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ListResponse[SuppressionOut]:
    page = await svc.ringless.list_suppressions(account.id, cursor, limit)
    return ListResponse[SuppressionOut](
        items=[SuppressionOut.of(s) for s in page.items], next_cursor=page.next_cursor
    )


@router.delete(
    "/suppressions/{suppression_id}",
    status_code=204,
    response_class=Response,
    responses={404: _PROBLEM},
)
async def delete_suppression(suppression_id: str, svc: Svc, account: CurrentAccount) -> Response:
    await svc.ringless.delete_suppression(account.id, suppression_id)
    return Response(status_code=204)
