"""/v1/agents routes: queue agents' status (set here) and live state (kept by the engine)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from afterbeep.api._pbx import INVALID, NOT_FOUND
from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.domain.queues import AgentState, AgentStatus
from afterbeep.services.queues import AgentView

router = APIRouter(tags=["agents"])


class AgentOut(BaseModel):
    user_id: str
    status: AgentStatus = Field(description="set through this API: offline, available, on_break")
    state: AgentState = Field(description="kept by the engine: waiting, offering, in_call, wrap_up")
    missed_in_row: int = Field(description="offers missed in a row (max_no_answer: on_break)")
    calls: int = Field(description="queue calls answered on this node")
    queue_ids: list[str]

    @classmethod
    def of(cls, a: AgentView) -> AgentOut:
        return cls(
            user_id=a.user_id,
            status=a.status,
            state=a.state,
            missed_in_row=a.missed_in_row,
            calls=a.calls,
            queue_ids=list(a.queue_ids),
        )


class AgentUpdate(StrictModel):
    status: AgentStatus


@router.get("/agents")
async def list_agents(svc: Svc, account: CurrentAccount) -> ListResponse[AgentOut]:
    """Every member of the account's queues and every agent with a status set."""
    return ListResponse[AgentOut](
        items=[AgentOut.of(a) for a in await svc.queues.agents(account.id)]
    )


@router.get("/agents/{user_id}", responses=NOT_FOUND)
async def get_agent(user_id: str, svc: Svc, account: CurrentAccount) -> AgentOut:
    return AgentOut.of(await svc.queues.agent(account.id, user_id))


@router.patch("/agents/{user_id}", responses={**NOT_FOUND, **INVALID})
async def update_agent(
    user_id: str, body: AgentUpdate, svc: Svc, account: CurrentAccount
) -> AgentOut:
    return AgentOut.of(await svc.queues.set_status(account.id, user_id, body.status))
