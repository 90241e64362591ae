"""voicemail: the caller leaves a message in the mailbox `mailboxId` (the deposit script); the
flow ends there."""

from __future__ import annotations

from afterbeep.domain.flows import FlowNode
from afterbeep.telephony.interface import Call
from afterbeep.telephony.scripts.flow.base import FlowEnv, FlowRun, log


async def voicemail(call: Call, run: FlowRun, env: FlowEnv, node: FlowNode) -> str | None:
    mailbox_id = node.data.get("mailboxId")
    if not isinstance(mailbox_id, str) or not mailbox_id:
        log.warning("%s: no mailbox; ending the call", run.where(node))
        return None
    await env.voicemail(call, mailbox_id)
    return None
