"""/v1/api-keys routes: the account's API keys. A key's secret is shown once, when created;
a revoked key is refused from the next request on."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.schemas import ListResponse
from afterbeep.domain.accounts import ApiKey, secret_prefix
from afterbeep.domain.clock import iso

router = APIRouter(tags=["api keys"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


class ApiKeyOut(BaseModel):
    id: str
    prefix: str = Field(description="how the key's secret begins, to recognise it")
    created_at: str
    last_used_at: str | None = Field(default=None, description="to the minute; null: never used")

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls(
            id=key.id,
            prefix=secret_prefix(key.id),
            created_at=iso(key.created_at),
            last_used_at=iso(key.last_used_at) if key.last_used_at else None,
        )


class ApiKeyCreated(ApiKeyOut):
    api_key: str = Field(description="the secret: shown this once, only its hash is kept")


@router.get("/api-keys")
async def list_api_keys(svc: Svc, account: CurrentAccount) -> ListResponse[ApiKeyOut]:
    keys = await svc.accounts.list_keys(account.id)
    return ListResponse[ApiKeyOut](items=[ApiKeyOut.of(k) for k in keys])


@router.post(
    "/api-keys", status_code=201, responses={409: {**_PROBLEM, "description": "too-many-api-keys"}}
)
async def create_api_key(svc: Svc, account: CurrentAccount, response: Response) -> ApiKeyCreated:
    issued = await svc.accounts.create_key(account.id)
    response.headers["Location"] = f"/v1/api-keys/{issued.key_id}"
    response.headers["Cache-Control"] = "no-store"
    return ApiKeyCreated(
        id=issued.key_id,
        prefix=secret_prefix(issued.key_id),
        created_at=iso(issued.created_at),
        api_key=issued.secret,
    )


@router.delete(
    "/api-keys/{key_id}",
    status_code=204,
    response_class=Response,
    responses={404: _PROBLEM, 409: {**_PROBLEM, "description": "last-api-key"}},
)
async def revoke_api_key(key_id: str, svc: Svc, account: CurrentAccount) -> Response:
    await svc.accounts.revoke_key(account.id, key_id)
    return Response(status_code=204)
