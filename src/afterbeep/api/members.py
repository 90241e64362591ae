"""/v1/members routes: the people who sign in to the account's web pages (`mem_...`).

A password may be set when creating or changing a member; it is never returned (only
`has_password`). Changing it signs the member out of every browser.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.domain import members as rules
from afterbeep.domain.clock import iso
from afterbeep.domain.members import Member, Role

router = APIRouter(tags=["members"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}

Email = Annotated[str, Field(min_length=3, max_length=rules.EMAIL_MAX)]
Name = Annotated[str, Field(min_length=1, max_length=rules.NAME_MAX)]
Password = Annotated[
    str,
    Field(min_length=rules.PASSWORD_MIN, max_length=rules.PASSWORD_MAX, description="write-only"),
]
UserId = Annotated[
    str | None,
    Field(max_length=40, description="a user (usr_...) of the account: a `member` also sees its mailbox, an `agent` works in its name on the console"),
]


class MemberCreate(StrictModel):
    email: Email = Field(description="signs the member in; unique over the whole service")
    name: Name
    role: Role = Field(description="admin: the whole account; member: the mailboxes they own (and their user's); agent: the console")
    user_id: UserId = None
    password: Password | None = None


@with_config(ConfigDict(extra="forbid"))
class MemberUpdate(TypedDict, total=False):
    name: Name
    role: Role
    user_id: UserId
    password: Password


class MemberOut(BaseModel):
    id: str
    account_id: str
    email: str
    name: str
    role: Role
    user_id: str | None
    has_password: bool = Field(description="false: the member signs in by emailed link only")
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, member: Member) -> MemberOut:
        return cls(
            id=member.id,
            account_id=member.account_id,
            email=member.email,
            name=member.name,
            role=member.role,
            user_id=member.user_id,
            has_password=member.has_password,
            created_at=iso(member.created_at),
            updated_at=iso(member.updated_at),
        )


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=100)]


@router.post("/members", status_code=201, responses={409: _PROBLEM, 422: _PROBLEM})
async def create_member(
    body: MemberCreate, svc: Svc, account: CurrentAccount, response: Response
) -> MemberOut:
    member = await svc.members.create(account.id, body.model_dump(exclude_unset=True))
    response.headers["Location"] = f"/v1/members/{member.id}"
    return MemberOut.of(member)


@router.get("/members", responses={422: _PROBLEM})
async def list_members(
    svc: Svc, account: CurrentAccount, limit: Limit = 50, cursor: Cursor = None
) -> ListResponse[MemberOut]:
    page = await svc.members.list(account.id, cursor, limit)
    return ListResponse[MemberOut](
        items=[MemberOut.of(m) for m in page.items], next_cursor=page.next_cursor
    )


@router.get("/members/{member_id}", responses={404: _PROBLEM})
async def get_member(member_id: str, svc: Svc, account: CurrentAccount) -> MemberOut:
    return MemberOut.of(await svc.members.get(account.id, member_id))


@router.patch("/members/{member_id}", responses={404: _PROBLEM, 422: _PROBLEM})
async def update_member(
    member_id: str, body: MemberUpdate, svc: Svc, account: CurrentAccount
) -> MemberOut:
    return MemberOut.of(await svc.members.update(account.id, member_id, dict(body)))


@router.delete(
    "/members/{member_id}", status_code=204, response_class=Response, responses={404: _PROBLEM}
)
async def delete_member(member_id: str, svc: Svc, account: CurrentAccount) -> Response:
    """Deletes the member and signs them out; mailboxes they owned keep no owner."""
    await svc.members.delete(account.id, member_id)
    return Response(status_code=204)
