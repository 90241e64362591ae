"""/v1/admin routes: the operator's, behind AFTERBEEP_ADMIN_KEY (never an account's API key).

Only the operator says which caller ids an account may send from."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from afterbeep.api.deps import Svc, services
from afterbeep.api.problems import ProblemError
from afterbeep.api.schemas import StrictModel


async def operator(request: Request) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(401, "unauthorized", "Unauthorized", "send Authorization: Bearer <admin key>")
    expected = services(request).admin_key_hash
    if expected is None:
        raise ProblemError(
            403, "forbidden", "Forbidden", "the admin API is closed: AFTERBEEP_ADMIN_KEY is not set"
        )
    given = hashlib.sha256(token.strip().encode()).digest()
    if not hmac.compare_digest(given, expected):
        raise ProblemError(403, "forbidden", "Forbidden", "this is not the admin key")


router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(operator)])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _PROBLEM,
    403: _PROBLEM,
    404: _PROBLEM,
    409: {**_PROBLEM, "description": "number-taken: verified for another account"},
    422: _PROBLEM,
}

Id = Annotated[str, Field(min_length=1, max_length=40)]
Phone = Annotated[str, Field(min_length=1, max_length=32)]


class SenderNumberIn(StrictModel):
    account_id: Id
    number: Phone


class SenderNumberOut(BaseModel):
    account_id: str
    e164: str
    verified: bool


@router.post("/numbers/verify", responses=_RESPONSES, include_in_schema=False)
async def verify_number(body: SenderNumberIn, svc: Svc) -> SenderNumberOut:
    e164 = await svc.senders.verify(body.account_id, body.number)
    return SenderNumberOut(account_id=body.account_id, e164=e164, verified=True)


@router.post("/numbers/unverify", responses=_RESPONSES, include_in_schema=False)
async def unverify_number(body: SenderNumberIn, svc: Svc) -> SenderNumberOut:
    e164 = await svc.senders.unverify(body.account_id, body.number)
    return SenderNumberOut(account_id=body.account_id, e164=e164, verified=False)
