"""hangup: the call ends."""

from __future__ import annotations

from afterbeep.domain.flows import FlowNode
from afterbeep.telephony.interface import Call
from afterbeep.telephony.scripts.flow.base import FlowEnv, FlowRun


async def hangup(call: Call, run: FlowRun, env: FlowEnv, node: FlowNode) -> str | None:
    await call.hangup()
    return None
