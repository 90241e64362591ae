"""/v1/ring-groups routes: users and devices rung together or in turn, with a way out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from afterbeep.api._pbx import (
    INVALID,
    KIND_DOC,
    NOT_FOUND,
    PROBLEM,
    Name,
    RefId,
    dest_out,
    dests_given,
)
from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.domain.clock import iso
from afterbeep.domain.errors import InvalidInput
from afterbeep.domain.numbers import DestKind
from afterbeep.domain.ring_groups import (
    DEFAULT_RING_TIMEOUT_SEC,
    RingGroup,
    RingGroupMember,
    RingStrategy,
)
from afterbeep.services.ring_groups import UNSET, RingGroupChanges

router = APIRouter(tags=["ring groups"])

_DESTS = ("exit_dest", "closed_dest", "holiday_dest")


class MemberIn(StrictModel):
    user_id: RefId | None = Field(default=None, description="a user (`usr_...`): all its devices")
    device_id: RefId | None = Field(default=None, description="one device (`dev_...`)")
    position: int = Field(default=0, ge=0, le=1000, description="ringing order, lower first")
    delay_sec: float = Field(default=0, description="ring_all: start this long after the others")
    timeout_sec: float | None = Field(
        default=None, description="null: the group's ring_timeout_sec"
    )

    def member(self) -> RingGroupMember:
        return RingGroupMember(
            self.user_id, self.device_id, self.position, self.delay_sec, self.timeout_sec
        )


class RingGroupIn(StrictModel):
    """Create: `name` required. Update (PATCH): only the fields given change; `members`
    replaces the list; a destination is changed by giving its `_kind` (and `_id`)."""

    name: Name | None = None
    strategy: RingStrategy | None = Field(
        default=None, description="`ring_all` (default), `sequential`, `round_robin`"
    )
    ring_timeout_sec: int | None = Field(
        default=None, description=f"default {DEFAULT_RING_TIMEOUT_SEC}"
    )
    moh_media_id: RefId | None = None
    members: list[MemberIn] | None = Field(default=None, max_length=50)
    exit_dest_kind: DestKind | None = Field(
        default=None, description="nobody answered: " + KIND_DOC
    )
    exit_dest_id: RefId | None = None
    schedule_id: RefId | None = Field(default=None, description="business hours")
    closed_dest_kind: DestKind | None = Field(default=None, description="out of hours: " + KIND_DOC)
    closed_dest_id: RefId | None = None
    holiday_dest_kind: DestKind | None = Field(
        default=None, description="on a holiday (else closed)"
    )
    holiday_dest_id: RefId | None = None


class MemberOut(BaseModel):
    user_id: str | None
    device_id: str | None
    position: int
    delay_sec: float
    timeout_sec: float | None


class RingGroupOut(BaseModel):
    id: str
    name: str
    strategy: RingStrategy
    ring_timeout_sec: int
    moh_media_id: str | None
    members: list[MemberOut]
    exit_dest_kind: str | None
    exit_dest_id: str | None
    schedule_id: str | None
    closed_dest_kind: str | None
    closed_dest_id: str | None
    holiday_dest_kind: str | None
    holiday_dest_id: str | None
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, g: RingGroup) -> RingGroupOut:
        return cls(
            id=g.id,
            name=g.name,
            strategy=g.strategy,
            ring_timeout_sec=g.ring_timeout_sec,
            moh_media_id=g.moh_media_id,
            members=[
                MemberOut(
                    user_id=m.user_id,
                    device_id=m.device_id,
                    position=m.position,
                    delay_sec=m.delay_sec,
                    timeout_sec=m.timeout_sec,
                )
                for m in g.members
            ],
            schedule_id=g.schedule_id,
            created_at=iso(g.created_at),
            updated_at=iso(g.updated_at),
            **dest_out("exit_dest", g.exit_dest),
            **dest_out("closed_dest", g.closed_dest),
            **dest_out("holiday_dest", g.holiday_dest),
        )


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=100)]


def _given(body: RingGroupIn) -> dict[str, Any]:
    return {name: getattr(body, name) for name in body.model_fields_set}


@router.post("/ring-groups", status_code=201, responses=INVALID)
async def create_ring_group(
    body: RingGroupIn, svc: Svc, account: CurrentAccount, response: Response
) -> RingGroupOut:
    given = _given(body)
    dests = dests_given(given, _DESTS)
    if body.name is None:
        raise InvalidInput("name", "is required")
    group = await svc.ring_groups.create(
        account.id,
        body.name,
        [m.member() for m in body.members or []],
        strategy=body.strategy or RingStrategy.RING_ALL,
        ring_timeout_sec=(
            DEFAULT_RING_TIMEOUT_SEC if body.ring_timeout_sec is None else body.ring_timeout_sec
        ),
        moh_media_id=body.moh_media_id,
        schedule_id=body.schedule_id,
        exit_dest=dests.get("exit_dest"),
        closed_dest=dests.get("closed_dest"),
        holiday_dest=dests.get("holiday_dest"),
    )
    response.headers["Location"] = f"/v1/ring-groups/{group.id}"
    return RingGroupOut.of(group)


@router.get("/ring-groups", responses=INVALID)
async def list_ring_groups(
    svc: Svc, account: CurrentAccount, limit: Limit = 50, cursor: Cursor = None
) -> ListResponse[RingGroupOut]:
    page = await svc.ring_groups.list(account.id, cursor, limit)
    return ListResponse[RingGroupOut](
        items=[RingGroupOut.of(g) for g in page.items], next_cursor=page.next_cursor
    )


@router.get("/ring-groups/{group_id}", responses=NOT_FOUND)
async def get_ring_group(group_id: str, svc: Svc, account: CurrentAccount) -> RingGroupOut:
    return RingGroupOut.of(await svc.ring_groups.get(account.id, group_id))


@router.patch("/ring-groups/{group_id}", responses={**NOT_FOUND, **INVALID})
async def update_ring_group(
    group_id: str, body: RingGroupIn, svc: Svc, account: CurrentAccount
) -> RingGroupOut:
    given = _given(body)
    dests = dests_given(given, _DESTS)
    for required in ("name", "strategy", "ring_timeout_sec", "members"):
        if required in given and given[required] is None:
            raise InvalidInput(required, "must not be null")
    changes = RingGroupChanges(
        name=given.get("name", UNSET),
        strategy=given.get("strategy", UNSET),
        ring_timeout_sec=given.get("ring_timeout_sec", UNSET),
        moh_media_id=given.get("moh_media_id", UNSET),
        members=[m.member() for m in body.members or []] if "members" in given else UNSET,
        schedule_id=given.get("schedule_id", UNSET),
        exit_dest=dests.get("exit_dest", UNSET),
        closed_dest=dests.get("closed_dest", UNSET),
        holiday_dest=dests.get("holiday_dest", UNSET),
    )
    return RingGroupOut.of(await svc.ring_groups.update(account.id, group_id, changes))


@router.delete(
    "/ring-groups/{group_id}",
    status_code=204,
    response_class=Response,
    responses={**NOT_FOUND, 409: {**PROBLEM, "description": "ring-group-in-use: named"}},
)
async def delete_ring_group(group_id: str, svc: Svc, account: CurrentAccount) -> Response:
    """409 while a number or a flow's current version leads to it."""
    await svc.ring_groups.delete(account.id, group_id)
    return Response(status_code=204)
