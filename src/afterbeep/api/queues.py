"""/v1/queues routes: call queues, their members (agents by tier) and live statistics.

A waiting caller presses `*` to leave the queue for its `abandon_dest` (to leave a message).
"""

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
from afterbeep.domain.queues import (
    ABANDON_KEY,
    MAX_WORK_SECONDS,
    Queue,
    QueueMember,
    QueueSettings,
    QueueStrategy,
)
from afterbeep.services.queues import UNSET, QueueChanges

router = APIRouter(tags=["queues"])

_DESTS = (
    "timeout_dest",
    "abandon_dest",
    "no_agents_dest",
    "queue_full_dest",
    "closed_dest",
    "holiday_dest",
)
_SETTINGS = tuple(QueueSettings.__dataclass_fields__)
_DEFAULTS = QueueSettings()
_NULLABLE_SETTINGS = frozenset({"work_fallback_queue_id"})
Seconds = Annotated[int | None, Field(ge=0, le=86_400)]
WorkSeconds = Annotated[int | None, Field(ge=0, le=MAX_WORK_SECONDS)]


class QueueMemberIn(StrictModel):
    user_id: RefId = Field(description="an agent user (`usr_...`)")
    tier_level: int = Field(default=1, ge=0, le=9, description="lower tiers are offered first")


class QueueIn(StrictModel):
    """Create: `name` required, the rest has defaults. Update (PATCH): only the fields given
    change; `members` replaces the list; a destination changes by giving its `_kind`."""

    name: Name | None = None
    strategy: QueueStrategy | None = Field(
        default=None,
        description="`longest_idle` (default), `round_robin`, `ring_all`, `fewest_calls`",
    )
    agent_ring_timeout_sec: Seconds = Field(
        default=None, description=f"default {_DEFAULTS.agent_ring_timeout_sec}"
    )
    max_wait_sec: Seconds = Field(
        default=None,
        description=f"then timeout_dest; 0: no limit; default {_DEFAULTS.max_wait_sec}",
    )
    wrap_up_sec: Seconds = Field(default=None, description=f"default {_DEFAULTS.wrap_up_sec}")
    max_no_answer: Seconds = Field(
        default=None, description="missed offers in a row before on_break; 0: never"
    )
    announce_position: bool | None = Field(
        default=None, description="true or 1: 'You are caller number N'"
    )
    announce_first_sec: Seconds = None
    announce_interval_sec: Seconds = Field(default=None, description="0: announce once")
    max_queued: Seconds = Field(default=None, description="then queue_full_dest; 0: no limit")
    moh_media_id: RefId | None = Field(default=None, description="hold music; null: a soft tone")
    language: str | None = Field(
        default=None, max_length=35, description="prompts; null: the account's"
    )
    members: list[QueueMemberIn] | None = Field(default=None, max_length=200)
    work_offer_timeout_sec: WorkSeconds = Field(
        default=None,
        description=f"work items: how long an agent has to accept an offer; default {_DEFAULTS.work_offer_timeout_sec}",
    )
    work_overflow_sec: WorkSeconds = Field(
        default=None,
        description="work items: a pending item waiting this long moves to work_fallback_queue_id; 0 (default): never",
    )
    work_fallback_queue_id: RefId | None = Field(
        default=None, description="work items: the queue overflowing items move to (`q_...`)"
    )
    work_ttl_sec: WorkSeconds = Field(
        default=None,
        description=f"work items: time to live, then canceled 'TTL exceeded'; default {_DEFAULTS.work_ttl_sec}",
    )
    timeout_dest_kind: DestKind | None = Field(
        default=None, description="waited max_wait_sec: " + KIND_DOC
    )
    timeout_dest_id: RefId | None = None
    abandon_dest_kind: DestKind | None = Field(
        default=None,
        description=f"the caller pressed `{ABANDON_KEY}` to leave a message: " + KIND_DOC,
    )
    abandon_dest_id: RefId | None = None
    no_agents_dest_kind: DestKind | None = Field(
        default=None, description="no agent logged in and reachable"
    )
    no_agents_dest_id: RefId | None = None
    queue_full_dest_kind: DestKind | None = Field(
        default=None, description="max_queued callers wait"
    )
    queue_full_dest_id: RefId | None = None
    schedule_id: RefId | None = None
    closed_dest_kind: DestKind | None = None
    closed_dest_id: RefId | None = None
    holiday_dest_kind: DestKind | None = None
    holiday_dest_id: RefId | None = None


class QueueMemberOut(BaseModel):
    user_id: str
    tier_level: int


class QueueOut(BaseModel):
    id: str
    name: str
    strategy: QueueStrategy
    agent_ring_timeout_sec: int
    max_wait_sec: int
    wrap_up_sec: int
    max_no_answer: int
    announce_position: bool
    announce_first_sec: int
    announce_interval_sec: int
    max_queued: int
    work_offer_timeout_sec: int
    work_overflow_sec: int
    work_fallback_queue_id: str | None
    work_ttl_sec: int
    moh_media_id: str | None
    language: str | None
    members: list[QueueMemberOut]
    timeout_dest_kind: str | None
    timeout_dest_id: str | None
    abandon_dest_kind: str | None
    abandon_dest_id: str | None
    no_agents_dest_kind: str | None
    no_agents_dest_id: str | None
    queue_full_dest_kind: str | None
    queue_full_dest_id: str | None
    schedule_id: str | None
    closed_dest_kind: str | None
    closed_dest_id: str | None
    holiday_dest_kind: str | None
    holiday_dest_id: str | None
    abandon_key: str = ABANDON_KEY
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, q: Queue) -> QueueOut:
        dests: dict[str, Any] = {}
        for name in _DESTS:
            dests.update(dest_out(name, getattr(q, name)))
        return cls(
            id=q.id,
            name=q.name,
            **{name: getattr(q.settings, name) for name in _SETTINGS},
            moh_media_id=q.moh_media_id,
            language=q.language,
            members=[QueueMemberOut(user_id=m.user_id, tier_level=m.tier_level) for m in q.members],
            schedule_id=q.schedule_id,
            created_at=iso(q.created_at),
            updated_at=iso(q.updated_at),
            **dests,
        )


class StatsOut(BaseModel):
    waiting: int = Field(description="callers waiting now (on this node)")
    longest_wait_sec: float
    agents_by_state: dict[str, int] = Field(
        description="members by `offline`/`on_break` (status), else `waiting`/`offering`/`in_call`/`wrap_up`"
    )
    abandoned: int = Field(description="callers who hung up or pressed the abandon key")
    answered: int
    timed_out: int


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=100)]


def _given(body: QueueIn) -> dict[str, Any]:
    return {name: getattr(body, name) for name in body.model_fields_set}


def _settings(given: dict[str, Any]) -> dict[str, Any]:
    found = {name: given[name] for name in _SETTINGS if name in given}
    for name, value in found.items():
        if value is None and name not in _NULLABLE_SETTINGS:
            raise InvalidInput(name, "must not be null")
    return found


def _members(body: QueueIn) -> list[QueueMember]:
    return [QueueMember(m.user_id, m.tier_level) for m in body.members or []]


@router.post("/queues", status_code=201, responses=INVALID)
async def create_queue(
    body: QueueIn, svc: Svc, account: CurrentAccount, response: Response
) -> QueueOut:
    given = _given(body)
    if body.name is None:
        raise InvalidInput("name", "is required")
    queue = await svc.queues.create(
        account.id,
        body.name,
        QueueSettings(**_settings(given)),
        _members(body),
        moh_media_id=body.moh_media_id,
        language=body.language,
        schedule_id=body.schedule_id,
        dests=dests_given(given, _DESTS),
    )
    response.headers["Location"] = f"/v1/queues/{queue.id}"
    return QueueOut.of(queue)


@router.get("/queues", responses=INVALID)
async def list_queues(
    svc: Svc, account: CurrentAccount, limit: Limit = 50, cursor: Cursor = None
) -> ListResponse[QueueOut]:
    page = await svc.queues.list(account.id, cursor, limit)
    return ListResponse[QueueOut](
        items=[QueueOut.of(q) for q in page.items], next_cursor=page.next_cursor
    )


@router.get("/queues/{queue_id}", responses=NOT_FOUND)
async def get_queue(queue_id: str, svc: Svc, account: CurrentAccount) -> QueueOut:
    return QueueOut.of(await svc.queues.get(account.id, queue_id))


@router.patch("/queues/{queue_id}", responses={**NOT_FOUND, **INVALID})
async def update_queue(queue_id: str, body: QueueIn, svc: Svc, account: CurrentAccount) -> QueueOut:
    given = _given(body)
    for required in ("name", "members"):
        if required in given and given[required] is None:
            raise InvalidInput(required, "must not be null")
    settings = _settings(given)
    changes = QueueChanges(
        name=given.get("name", UNSET),
        settings=settings if settings else UNSET,
        members=_members(body) if "members" in given else UNSET,
        moh_media_id=given.get("moh_media_id", UNSET),
        language=given.get("language", UNSET),
        schedule_id=given.get("schedule_id", UNSET),
        dests=dests_given(given, _DESTS),
    )
    return QueueOut.of(await svc.queues.update(account.id, queue_id, changes))


@router.delete(
    "/queues/{queue_id}",
    status_code=204,
    response_class=Response,
    responses={**NOT_FOUND, 409: {**PROBLEM, "description": "queue-in-use: named"}},
)
async def delete_queue(queue_id: str, svc: Svc, account: CurrentAccount) -> Response:
    """409 while a number or a flow's current version leads to it, or callers wait in it."""
    await svc.queues.delete(account.id, queue_id)
    return Response(status_code=204)


@router.get("/queues/{queue_id}/stats", responses=NOT_FOUND)
async def queue_stats(queue_id: str, svc: Svc, account: CurrentAccount) -> StatsOut:
    stats = await svc.queues.stats(account.id, queue_id)
    return StatsOut(
        waiting=stats.waiting,
        longest_wait_sec=round(stats.longest_wait_sec, 3),
        agents_by_state=dict(stats.agents_by_state),
        abandoned=stats.abandoned,
        answered=stats.answered,
        timed_out=stats.timed_out,
    )
