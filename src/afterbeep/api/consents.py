"""/v1/consents routes: records of a recipient's consent (source, when), and revoking them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime, BaseModel, Field

from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.domain.clock import iso
from afterbeep.domain.ringless import Consent

router = APIRouter(tags=["consents"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


class ConsentCreate(StrictModel):
    e164: Annotated[str, Field(min_length=1, max_length=32)]
    source: Annotated[str, Field(min_length=1, max_length=500, examples=["web form /signup"])]
    captured_at: AwareDatetime


class ConsentOut(BaseModel):
    id: str
    e164: str
    source: str
    captured_at: str
    revoked_at: str | None
    created_at: str

    @classmethod
    def of(cls, c: Consent) -> ConsentOut:
        return cls(
            id=c.id,
            e164=c.e164,
            source=c.source,
            captured_at=iso(c.captured_at),
            revoked_at=iso(c.revoked_at) if c.revoked_at else None,
            created_at=iso(c.created_at),
        )


@router.post("/consents", status_code=201, response_model=ConsentOut, responses={422: _PROBLEM})
async def add_consent(
    body: ConsentCreate, response: Response, svc: Svc, account: CurrentAccount
) -> ConsentOut:
    captured: datetime = body.captured_at
    consent = await svc.ringless.add_consent(account.id, body.e164, body.source, captured)
    response.headers["Location"] = f"/v1/consents/{consent.id}"
    return ConsentOut.of(consent)


@router.get("/consents", response_model=ListResponse[ConsentOut])
async def list_consents(
    svc: Svc,
    account: CurrentAccount,
    e164: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ListResponse[ConsentOut]:
    page = await svc.ringless.list_consents(account.id, e164, cursor, limit)
    return ListResponse[ConsentOut](
        items=[ConsentOut.of(c) for c in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "/consents/{consent_id}/revoke",
    response_model=ConsentOut,
    responses={404: _PROBLEM, 409: {**_PROBLEM, "description": "consent-revoked"}},
)
async def revoke_consent(consent_id: str, svc: Svc, account: CurrentAccount) -> ConsentOut:
    return ConsentOut.of(await svc.ringless.revoke_consent(account.id, consent_id))
