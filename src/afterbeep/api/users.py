"""/v1/users routes: the account's users (extensions), and where their devices are registered."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from afterbeep.api.deps import ApiServices, CurrentAccount, Svc
from afterbeep.api.schemas import ListResponse
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.domain.clock import iso
from afterbeep.domain.users import Registration, User
from afterbeep.services.users import UserService

router = APIRouter(tags=["users"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _PROBLEM}
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {**_PROBLEM, "description": "invalid-input or unknown-reference naming the field"},
    409: {**_PROBLEM, "description": "username-taken"},
}

FwdKindIn = Literal["voicemail", "flow", "queue", "user", "ring_group", "hangup"] | None
Flag = bool | Literal[0, 1]


@with_config(ConfigDict(extra="forbid"))
class UserFields(TypedDict, total=False):
    """`username` is required on create; on update only the fields given change."""

    username: Annotated[str, Field(description="the extension: 1 to 20 digits")]
    display_name: Annotated[str, Field(max_length=200)]
    voicemail_id: Annotated[str | None, Field(description="the user's mailbox (vm_...)")]
    ring_timeout_sec: Annotated[int, Field(description="5..300, default 25")]
    ring_strategy: Literal["simultaneous", "sequential"]
    dnd: Flag
    fwd_always_kind: FwdKindIn
    fwd_always_id: str | None
    fwd_busy_kind: FwdKindIn
    fwd_busy_id: str | None
    fwd_noanswer_kind: FwdKindIn
    fwd_noanswer_id: str | None
    max_simultaneous: int | None
    is_agent: Flag
    status: Literal["offline", "available", "on_break"]
    out_cid_number: Annotated[
        str | None, Field(description="E.164 caller id of calls out from its phones (null: the setup's)")
    ]


class UserOut(BaseModel):
    id: str
    username: str
    display_name: str
    voicemail_id: str | None
    ring_timeout_sec: int
    ring_strategy: str
    dnd: bool
    fwd_always_kind: str | None
    fwd_always_id: str | None
    fwd_busy_kind: str | None
    fwd_busy_id: str | None
    fwd_noanswer_kind: str | None
    fwd_noanswer_id: str | None
    max_simultaneous: int | None
    is_agent: bool
    status: str
    created_at: str
    updated_at: str
    out_cid_number: str | None = None

    @classmethod
    def of(cls, u: User) -> UserOut:
        forwards: dict[str, str | None] = {}
        for name in ("fwd_always", "fwd_busy", "fwd_noanswer"):
            fwd = getattr(u, name)
            forwards[f"{name}_kind"] = fwd.kind.value if fwd is not None else None
            forwards[f"{name}_id"] = fwd.id if fwd is not None else None
        return cls(
            id=u.id,
            username=u.username,
            display_name=u.display_name,
            voicemail_id=u.voicemail_id,
            ring_timeout_sec=u.ring_timeout_sec,
            ring_strategy=u.ring_strategy.value,
            dnd=u.dnd,
            max_simultaneous=u.max_simultaneous,
            is_agent=u.is_agent,
            status=u.status.value,
            created_at=iso(u.created_at),
            updated_at=iso(u.updated_at),
            out_cid_number=u.out_cid_number,
            **forwards,
        )


class RegistrationOut(BaseModel):
    device_id: str
    contact: str
    expires_at: str
    source: str = Field(description="host:port the REGISTER came from")
    transport: str
    path: list[str]
    user_agent: str | None

    @classmethod
    def of(cls, r: Registration) -> RegistrationOut:
        host = f"[{r.source_host}]" if ":" in r.source_host else r.source_host
        return cls(
            device_id=r.device_id,
            contact=r.contact,
            expires_at=iso(r.expires_at),
            source=f"{host}:{r.source_port}",
            transport=r.transport,
            path=list(r.path),
            user_agent=r.user_agent,
        )


class RegistrationList(BaseModel):
    items: list[RegistrationOut]


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=100)]


def users_of(svc: ApiServices) -> UserService:
    if svc.users is None:  # pragma: no cover - the runtime always builds it
        raise RuntimeError("users are not served here")
    return svc.users


@router.post("/users", status_code=201, responses=_INVALID)
async def create_user(
    body: UserFields, svc: Svc, account: CurrentAccount, response: Response
) -> UserOut:
    user = await users_of(svc).create_user(account.id, dict(body))
    response.headers["Location"] = f"/v1/users/{user.id}"
    return UserOut.of(user)


@router.get("/users", responses=_INVALID)
async def list_users(
    svc: Svc, account: CurrentAccount, limit: Limit = 50, cursor: Cursor = None
) -> ListResponse[UserOut]:
    page = await users_of(svc).list_users(account.id, cursor, limit)
    return ListResponse[UserOut](
        items=[UserOut.of(u) for u in page.items], next_cursor=page.next_cursor
    )


@router.get("/users/{user_id}", responses=_NOT_FOUND)
async def get_user(user_id: str, svc: Svc, account: CurrentAccount) -> UserOut:
    return UserOut.of(await users_of(svc).get_user(account.id, user_id))


@router.patch("/users/{user_id}", responses={**_NOT_FOUND, **_INVALID})
async def update_user(
    user_id: str, body: UserFields, svc: Svc, account: CurrentAccount
) -> UserOut:
    return UserOut.of(await users_of(svc).update_user(account.id, user_id, dict(body)))


@router.delete(
    "/users/{user_id}",
    status_code=204,
    response_class=Response,
    responses={**_NOT_FOUND, 409: {**_PROBLEM, "description": "user-in-use: named"}},
)
async def delete_user(user_id: str, svc: Svc, account: CurrentAccount) -> Response:
    """Removes the user's devices too; 409 while a number or another user's forward leads
    to it."""
    await users_of(svc).delete_user(account.id, user_id)
    return Response(status_code=204)


@router.get("/users/{user_id}/registrations", responses=_NOT_FOUND)
async def user_registrations(user_id: str, svc: Svc, account: CurrentAccount) -> RegistrationList:
    """The user's devices' unexpired contacts, in device `ring_order`."""
    found = await users_of(svc).registrations(account.id, user_id)
    return RegistrationList(items=[RegistrationOut.of(r) for r in found])
