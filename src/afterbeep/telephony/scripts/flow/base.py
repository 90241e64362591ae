"""What every node script shares: the run (`FlowRun`), the runner's port (`FlowEnv`), the shape
of a node script, and the node's audio and settings read as the kind's defaults say."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Protocol

from afterbeep.domain.flows import FlowGraph, FlowNode, setting
from afterbeep.domain.numbers import Destination
from afterbeep.domain.schedules import ScheduleState
from afterbeep.telephony.interface import Audio, Call

log = logging.getLogger("afterbeep.flow")


@dataclass(frozen=True)
class FlowRun:
    """One call's walk through one version of a flow. `graph` is that version's, fixed for the
    call. `speech` maps `"<node_id>/<field>"` (`"n3/text"`, `"n4/promptText"`) to the media id
    of that text rendered as speech; `variables` receives what `collect` nodes gather."""

    account_id: str
    flow_id: str
    version: int
    graph: FlowGraph
    language: str
    timezone: str
    speech: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    variables: dict[str, str] = field(default_factory=dict)

    def where(self, node: FlowNode) -> str:
        """How log lines name a place in the flow (ids only: nothing the caller said or typed)."""
        return f"flow {self.flow_id} v{self.version} node {node.id} ({node.kind})"


class FlowEnv(Protocol):
    """The runner's port: what node scripts need from the rest of the service."""

    async def audio(self, media_id: str) -> Audio | None:
        """A media's 8 kHz telephony audio; None when it is missing or does not decode."""
        ...

    async def speech(self, run: FlowRun, node_id: str, field: str) -> Audio | None:
        """The speech rendered for a node's text field (`text`, `promptText`); None if none."""
        ...

    async def schedule_state(self, run: FlowRun, schedule_id: str, at: datetime) -> ScheduleState:
        """The schedule's state at `at` (in its timezone, else `run.timezone`); `in_hours`
        when it is missing or cannot be evaluated (fails open, and says why in the log)."""
        ...

    def now(self) -> datetime: ...

    async def voicemail(self, call: Call, mailbox_id: str) -> None:
        """Runs the deposit script for that mailbox on the call; the flow ends there."""
        ...

    async def send(self, call: Call, dest: Destination) -> None:
        """Sends the call to a ring group, a queue or a user (its application runs, then its
        exits); the flow ends there."""
        ...


# A node's script: its outcome (an edge's sourceHandle), or None when the flow ends there.
NodeScript = Callable[[Call, FlowRun, FlowEnv, FlowNode], Awaitable[str | None]]


async def node_audio(run: FlowRun, env: FlowEnv, node: FlowNode, name: str) -> Audio | None:
    """The audio of a node's field: a media (`...AudioId`) or a text's rendered speech
    (`text`, `promptText`). None, logged, when the field is set but there is nothing to play;
    None, quietly, when the field is not set."""
    value = node.data.get(name)
    if not isinstance(value, str) or not value:
        return None
    if name.lower().endswith("audioid"):  # audioId, promptAudioId, ...; else a text field
        audio = await env.audio(value)
        if audio is None:
            log.warning(
                "%s: media %s is missing or unreadable; playing nothing", run.where(node), value
            )
    else:
        audio = await env.speech(run, node.id, name)
        if audio is None:
            log.warning("%s: no speech rendered for %s; playing nothing", run.where(node), name)
    return audio


async def prompt_audio(run: FlowRun, env: FlowEnv, node: FlowNode) -> Audio | None:
    """A menu's or collect's prompt: `promptAudioId`, else `promptText`'s speech."""
    if node.data.get("promptAudioId"):
        return await node_audio(run, env, node, "promptAudioId")
    return await node_audio(run, env, node, "promptText")


def int_setting(node: FlowNode, name: str) -> int:
    value = setting(node, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"node {node.id}: {name} is not an integer (the flow was not validated)")
    return value


def seconds_setting(node: FlowNode, name: str) -> float:
    value = setting(node, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"node {node.id}: {name} is not a number (the flow was not validated)")
    return float(value)


def keys_setting(node: FlowNode, name: str) -> str:
    value = setting(node, name)
    if not isinstance(value, str):
        raise TypeError(
            f"node {node.id}: {name} is not a string of keys (the flow was not validated)"
        )
    return value
