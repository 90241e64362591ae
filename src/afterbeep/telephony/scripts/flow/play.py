"""play: the media `audioId`, to its end (a missing media plays nothing); then `default`.

Keys pressed meanwhile do not stop it; they wait for the next menu or collect (type-ahead)."""

from __future__ import annotations

from afterbeep.domain.flows import DEFAULT, FlowNode
from afterbeep.telephony.interface import Call
from afterbeep.telephony.scripts.flow.base import FlowEnv, FlowRun, node_audio


async def play(call: Call, run: FlowRun, env: FlowEnv, node: FlowNode) -> str | None:
    audio = await node_audio(run, env, node, "audioId")
    if audio is not None:
        await call.play(audio)
    return DEFAULT
