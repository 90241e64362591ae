"""enqueue, ringGroup, user and voicemailMain: the caller waits in the queue `queueId`, the ring group
`ringGroupId` rings, or the user `userId` is called (forwards, phones, busy and no-answer
chains); their own exits (timeout, no agents, nobody answered...) decide what follows, and the
flow ends there."""

from __future__ import annotations

from afterbeep.domain.flows import FlowNode
from afterbeep.domain.numbers import Destination, DestKind
from afterbeep.telephony.interface import Call
from afterbeep.telephony.scripts.flow.base import FlowEnv, FlowRun, log


async def enqueue(call: Call, run: FlowRun, env: FlowEnv, node: FlowNode) -> str | None:
    return await _send(call, run, env, node, DestKind.QUEUE, "queueId")


async def ring_group(call: Call, run: FlowRun, env: FlowEnv, node: FlowNode) -> str | None:
    return await _send(call, run, env, node, DestKind.RING_GROUP, "ringGroupId")


async def user(call: Call, run: FlowRun, env: FlowEnv, node: FlowNode) -> str | None:
    return await _send(call, run, env, node, DestKind.USER, "userId")


async def voicemail_main(call: Call, run: FlowRun, env: FlowEnv, node: FlowNode) -> str | None:
    """The owners' phone menu (mailbox number, then PIN); the flow ends there."""
    await env.send(call, Destination(DestKind.VOICEMAIL_MAIN, None))
    return None


async def _send(
    call: Call, run: FlowRun, env: FlowEnv, node: FlowNode, kind: DestKind, field: str
) -> str | None:
    target = node.data.get(field)
    if not isinstance(target, str) or not target:
        log.warning("%s: no %s; ending the call", run.where(node), field)
        return None
    await env.send(call, Destination(kind, target))
    return None
