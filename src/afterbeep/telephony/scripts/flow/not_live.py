"""user: not live yet (the issue that builds users makes it so). Saving refuses it already;
should one be reached anyway, the caller hears "we cannot take your call right now" and the
call ends, logged."""

from __future__ import annotations

from afterbeep.domain.flows import FlowNode
from afterbeep.telephony.interface import Call
from afterbeep.telephony.prompts import prompt
from afterbeep.telephony.scripts.flow.base import FlowEnv, FlowRun, log


async def not_live(call: Call, run: FlowRun, env: FlowEnv, node: FlowNode) -> str | None:
    log.warning("%s: this node kind is not live yet; ending the call", run.where(node))
    await call.play(prompt("vm-try-later", run.language))
    return None
