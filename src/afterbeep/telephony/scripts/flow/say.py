"""say: the node's `text` as speech (rendered with espeak-ng when the flow was saved), to its
end; nothing when no speech was rendered. Then `default`."""

from __future__ import annotations

from afterbeep.domain.flows import DEFAULT, FlowNode
from afterbeep.telephony.interface import Call
from afterbeep.telephony.scripts.flow.base import FlowEnv, FlowRun, node_audio


async def say(call: Call, run: FlowRun, env: FlowEnv, node: FlowNode) -> str | None:
    audio = await node_audio(run, env, node, "text")
    if audio is not None:
        await call.play(audio)
    return DEFAULT
