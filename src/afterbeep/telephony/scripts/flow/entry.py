"""entry: where every call starts. The call is answered; then the `default` edge."""

from __future__ import annotations

from afterbeep.domain.flows import DEFAULT, FlowNode
from afterbeep.telephony.interface import Call
from afterbeep.telephony.scripts.flow.base import FlowEnv, FlowRun


async def entry(call: Call, run: FlowRun, env: FlowEnv, node: FlowNode) -> str | None:
    await call.answer()
    return DEFAULT
