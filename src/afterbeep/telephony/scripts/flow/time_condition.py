"""timeCondition: the state of the schedule `scheduleId` now: `in_hours`, `out_of_hours` or
`holiday` (the executor takes the `out_of_hours` edge for a holiday with no holiday edge).
A schedule that is missing or cannot be evaluated answers `in_hours` (the port fails open)."""

from __future__ import annotations

from afterbeep.domain.flows import IN_HOURS, FlowNode
from afterbeep.telephony.interface import Call
from afterbeep.telephony.scripts.flow.base import FlowEnv, FlowRun, log


async def time_condition(call: Call, run: FlowRun, env: FlowEnv, node: FlowNode) -> str | None:
    schedule_id = node.data.get("scheduleId")
    if not isinstance(schedule_id, str) or not schedule_id:
        log.warning("%s: no schedule; failing open (in_hours)", run.where(node))
        return IN_HOURS
    state = await env.schedule_state(run, schedule_id, env.now())
    return str(state)
