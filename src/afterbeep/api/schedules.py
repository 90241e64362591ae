"""/v1/schedules routes: the account's business hours and their state at an instant."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.domain.clock import iso
from afterbeep.domain.schedules import ScheduleRule, ScheduleState, StoredSchedule
from afterbeep.services.schedules import UNSET, ScheduleChanges

router = APIRouter(tags=["schedules"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _PROBLEM}
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {**_PROBLEM, "description": "invalid-input naming the field, e.g. `rules[0].end_time`"}
}

Name = Annotated[str, Field(min_length=1, max_length=200)]
TimezoneIn = Annotated[
    str | None,
    Field(max_length=64, description="IANA name such as `America/New_York`; null: the account's"),
]
RulesIn = Annotated[
    list[dict[str, Any]],
    Field(
        description="rules `{kind: weekly|date|date_range, dow (0=Sunday..6), start_time, "
        "end_time (HH:MM), start_date, end_date (YYYY-MM-DD), is_closed}`"
    ),
]


class ScheduleCreate(StrictModel):
    name: Name
    timezone: TimezoneIn = None
    rules: RulesIn = []


@with_config(ConfigDict(extra="forbid"))
class ScheduleUpdate(TypedDict, total=False):
    """Only the fields given change; `timezone` may be set to null (the account's)."""

    name: Name
    timezone: TimezoneIn
    rules: RulesIn


class RuleOut(BaseModel):
    kind: str
    dow: int | None
    start_time: str | None
    end_time: str | None
    start_date: str | None
    end_date: str | None
    is_closed: bool

    @classmethod
    def of(cls, rule: ScheduleRule) -> RuleOut:
        return cls.model_validate(rule.to_dict())


class ScheduleOut(BaseModel):
    id: str
    name: str
    timezone: str | None
    rules: list[RuleOut]
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, s: StoredSchedule) -> ScheduleOut:
        return cls(
            id=s.id,
            name=s.schedule.name,
            timezone=s.schedule.timezone,
            rules=[RuleOut.of(r) for r in s.schedule.rules],
            created_at=iso(s.created_at),
            updated_at=iso(s.updated_at),
        )


class StateOut(BaseModel):
    state: ScheduleState
    at: str
    timezone: str = Field(description="the timezone used: the schedule's, else the account's")


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=100)]
At = Annotated[
    datetime | None,
    Query(description="an ISO 8601 instant with an offset or Z; default now"),
]


@router.post("/schedules", status_code=201, responses=_INVALID)
async def create_schedule(
    body: ScheduleCreate, svc: Svc, account: CurrentAccount, response: Response
) -> ScheduleOut:
    schedule = await svc.schedules.create(account.id, body.name, body.timezone, body.rules)
    response.headers["Location"] = f"/v1/schedules/{schedule.id}"
    return ScheduleOut.of(schedule)


@router.get("/schedules", responses=_INVALID)
async def list_schedules(
    svc: Svc, account: CurrentAccount, limit: Limit = 50, cursor: Cursor = None
) -> ListResponse[ScheduleOut]:
    page = await svc.schedules.list(account.id, cursor, limit)
    return ListResponse[ScheduleOut](
        items=[ScheduleOut.of(s) for s in page.items], next_cursor=page.next_cursor
    )


@router.get("/schedules/{schedule_id}", responses=_NOT_FOUND)
async def get_schedule(schedule_id: str, svc: Svc, account: CurrentAccount) -> ScheduleOut:
    return ScheduleOut.of(await svc.schedules.get(account.id, schedule_id))


@router.patch("/schedules/{schedule_id}", responses={**_NOT_FOUND, **_INVALID})
async def update_schedule(
    schedule_id: str, body: ScheduleUpdate, svc: Svc, account: CurrentAccount
) -> ScheduleOut:
    changes = ScheduleChanges(
        name=body.get("name", UNSET),
        timezone=body.get("timezone", UNSET),
        rules=body.get("rules", UNSET),
    )
    return ScheduleOut.of(await svc.schedules.update(account.id, schedule_id, changes))


@router.delete(
    "/schedules/{schedule_id}",
    status_code=204,
    response_class=Response,
    responses={**_NOT_FOUND, 409: {**_PROBLEM, "description": "schedule-in-use: named"}},
)
async def delete_schedule(schedule_id: str, svc: Svc, account: CurrentAccount) -> Response:
    """409 while a number routes by it or a flow's current version tests it."""
    await svc.schedules.delete(account.id, schedule_id)
    return Response(status_code=204)


@router.get("/schedules/{schedule_id}/state", responses={**_NOT_FOUND, **_INVALID})
async def schedule_state(
    schedule_id: str, svc: Svc, account: CurrentAccount, at: At = None
) -> StateOut:
    found = await svc.schedules.state(account.id, schedule_id, at)
    return StateOut(state=found.state, at=iso(found.at), timezone=found.timezone)
