"""/v1/devices routes: users' SIP phones. The password is write-only: only its digest hashes
are kept, and neither it nor they are ever returned."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.schemas import ListResponse
from afterbeep.api.users import users_of
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.domain.clock import iso
from afterbeep.domain.users import Device

router = APIRouter(tags=["devices"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _PROBLEM}
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {
        **_PROBLEM,
        "description": "invalid-input, unknown-reference, weak-password (12 to 128 characters, "
        "at least 5 different ones, not containing the auth_username)",
    },
    409: {**_PROBLEM, "description": "auth-username-taken (unique across the service)"},
}


@with_config(ConfigDict(extra="forbid"))
class DeviceFields(TypedDict, total=False):
    """`user_id`, `auth_username` and `password` are required on create; on update only the
    fields given change (a new `auth_username` needs the `password` again)."""

    user_id: str
    auth_username: Annotated[str, Field(description="unique across the service")]
    password: Annotated[str, Field(description="write-only; 12 to 128 characters")]
    transport: Literal["udp", "tcp"]
    ring_order: Annotated[int, Field(description="lower rings first (sequential)")]


class DeviceOut(BaseModel):
    id: str
    user_id: str
    auth_username: str
    realm: str
    transport: str
    ring_order: int
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, d: Device) -> DeviceOut:
        return cls(
            id=d.id,
            user_id=d.user_id,
            auth_username=d.auth_username,
            realm=d.realm,
            transport=d.transport.value,
            ring_order=d.ring_order,
            created_at=iso(d.created_at),
            updated_at=iso(d.updated_at),
        )


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=100)]
UserFilter = Annotated[str | None, Query(max_length=40, description="only this user's")]


@router.post("/devices", status_code=201, responses=_INVALID)
async def create_device(
    body: DeviceFields, svc: Svc, account: CurrentAccount, response: Response
) -> DeviceOut:
    device = await users_of(svc).create_device(account.id, dict(body))
    response.headers["Location"] = f"/v1/devices/{device.id}"
    return DeviceOut.of(device)


@router.get("/devices", responses=_INVALID)
async def list_devices(
    svc: Svc,
    account: CurrentAccount,
    limit: Limit = 50,
    cursor: Cursor = None,
    user_id: UserFilter = None,
) -> ListResponse[DeviceOut]:
    page = await users_of(svc).list_devices(account.id, cursor, limit, user_id)
    return ListResponse[DeviceOut](
        items=[DeviceOut.of(d) for d in page.items], next_cursor=page.next_cursor
    )


@router.get("/devices/{device_id}", responses=_NOT_FOUND)
async def get_device(device_id: str, svc: Svc, account: CurrentAccount) -> DeviceOut:
    return DeviceOut.of(await users_of(svc).get_device(account.id, device_id))


@router.patch("/devices/{device_id}", responses={**_NOT_FOUND, **_INVALID})
async def update_device(
    device_id: str, body: DeviceFields, svc: Svc, account: CurrentAccount
) -> DeviceOut:
    return DeviceOut.of(await users_of(svc).update_device(account.id, device_id, dict(body)))


@router.delete("/devices/{device_id}", status_code=204, response_class=Response, responses=_NOT_FOUND)
async def delete_device(device_id: str, svc: Svc, account: CurrentAccount) -> Response:
    """Its registrations go with it."""
    await users_of(svc).delete_device(account.id, device_id)
    return Response(status_code=204)
