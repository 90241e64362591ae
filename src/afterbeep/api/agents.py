"""/v1/agents routes: queue agents' status (set here) and live state (kept by the engine)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from afterbeep.api._pbx import INVALID, NOT_FOUND
from afterbeep.api.deps import ApiServices, CurrentAccount, Svc
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.domain.errors import InvalidInput
from afterbeep.domain.queues import AgentState, AgentStatus
from afterbeep.domain.work_items import DEFAULT_CAPACITY, MAX_CAPACITY
from afterbeep.services.queues import AgentView

router = APIRouter(tags=["agents"])


class AgentOut(BaseModel):
    user_id: str
    status: AgentStatus = Field(description="set through this API: offline, available, on_break")
    state: AgentState = Field(description="kept by the engine: waiting, offering, in_call, wrap_up")
    missed_in_row: int = Field(description="offers missed in a row (max_no_answer: on_break)")
    calls: int = Field(description="queue calls answered on this node")
    queue_ids: list[str]
    capacity: int | None = Field(
        default=None,
        description="units its work items and live calls share (a voicemail 3, a callback 5, a call 10)",
    )

    @classmethod
    def of(cls, a: AgentView, capacity: int | None = None) -> AgentOut:
        return cls(
            user_id=a.user_id,
            status=a.status,
            state=a.state,
            missed_in_row=a.missed_in_row,
            calls=a.calls,
            queue_ids=list(a.queue_ids),
            capacity=capacity,
        )


class AgentUpdate(StrictModel):
    status: AgentStatus | None = None
    capacity: int | None = Field(
        default=None, ge=0, le=MAX_CAPACITY, description=f"work items; default {DEFAULT_CAPACITY}"
    )


async def _capacities(svc: ApiServices, account_id: str) -> dict[str, int]:
    return await svc.work_items.capacities(account_id) if svc.work_items is not None else {}


@router.get("/agents")
async def list_agents(svc: Svc, account: CurrentAccount) -> ListResponse[AgentOut]:
    """Every member of the account's queues and every agent with a status set."""
    capacities = await _capacities(svc, account.id)
    return ListResponse[AgentOut](
        items=[
            AgentOut.of(a, capacities.get(a.user_id, DEFAULT_CAPACITY))
            for a in await svc.queues.agents(account.id)
        ]
    )


@router.get("/agents/{user_id}", responses=NOT_FOUND)
async def get_agent(user_id: str, svc: Svc, account: CurrentAccount) -> AgentOut:
    agent = await svc.queues.agent(account.id, user_id)
    capacities = await _capacities(svc, account.id)
    return AgentOut.of(agent, capacities.get(user_id, DEFAULT_CAPACITY))


@router.patch("/agents/{user_id}", responses={**NOT_FOUND, **INVALID})
async def update_agent(
    user_id: str, body: AgentUpdate, svc: Svc, account: CurrentAccount
) -> AgentOut:
    """`status`, `capacity` or both."""
    given = body.model_fields_set
    if not given or ("status" in given and body.status is None):
        raise InvalidInput("status", "is required (or capacity)")
    if "capacity" in given:
        if svc.work_items is None:
            raise InvalidInput("capacity", "work items are not served here")
        await svc.queues.agent(account.id, user_id)  # 404 for an unknown agent
        await svc.work_items.set_capacity(account.id, user_id, body.capacity)
    if body.status is not None:
        agent = await svc.queues.set_status(account.id, user_id, body.status)
    else:
        agent = await svc.queues.agent(account.id, user_id)
    capacities = await _capacities(svc, account.id)
    return AgentOut.of(agent, capacities.get(user_id, DEFAULT_CAPACITY))
