"""The queue application: a call that waits in a queue for an agent, as the caller lives it.

Out of hours (or on a holiday) the call goes to the queue's closed (holiday) destination. A
caller who cannot join (`queue_full`, `no_agents`) goes to that exit's destination unanswered.
Otherwise the call is answered and the caller hears hold music (the queue's `moh_media_id`,
else a soft tone), its position now and then ("You are caller number 3", then "To leave a
message, press star" when the queue has an `abandon_dest`), while the engine offers it to
agents: each offer rings the agent's registered devices (no ringback: the music goes on) for
`agent_ring_timeout_sec`. An offer not answered counts against the agent and the next agent is
tried; an answer stops the music and bridges the caller to the agent, whose wrap-up starts when
the call ends (an agent whose devices all answer busy is in another call: skipped a while,
not counted). The caller leaves for `timeout_dest` after `max_wait_sec`, for `no_agents_dest`
when every agent logged out, or for `abandon_dest` on `*`. A caller who hangs up while waiting
is counted as abandoned and leaves nothing behind (its offers are cancelled).

Time is the engine's (`QueueEngine`); the music is played in short pieces, and the engine is
asked what to do between them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from afterbeep.domain.queues import ABANDON_KEY, Queue, QueueExit
from afterbeep.domain.schedules import ScheduleState
from afterbeep.services.queues import QueueEngine
from afterbeep.telephony.interface import Audio, Call, CallEnded
from afterbeep.telephony.prompts import prompt
from afterbeep.telephony.scripts.pbx import (
    PIECE_SAMPLES,
    PbxEnv,
    default_hold_music,
    hold_music,
    stop,
)
from afterbeep.telephony.scripts.ringer import RingOutcome, RingResult, RingTarget

log = logging.getLogger("afterbeep.queue")

POSITIONS_NAMED = 9  # "caller number 1..9", then "many callers are waiting before you"


def position_prompt(position: int, language: str, can_leave_message: bool) -> Audio:
    name = f"queue-position-{position}" if position <= POSITIONS_NAMED else "queue-position-many"
    parts = [prompt(name, language)]
    if can_leave_message:
        parts.append(prompt("queue-press-star", language))
    return np.concatenate(parts)


async def run_queue(call: Call, queue: Queue, env: PbxEnv, engine: QueueEngine) -> QueueExit | None:
    """Run the caller through `queue`; how it left (None: an agent answered)."""
    if queue.schedule_id is not None:
        state = await env.schedule_state(queue.account_id, queue.schedule_id)
        closed = {
            ScheduleState.OUT_OF_HOURS: QueueExit.CLOSED,
            ScheduleState.HOLIDAY: QueueExit.HOLIDAY,
        }.get(state)
        if closed is not None:
            return await _leave(call, queue, env, closed)
    await engine.load_statuses(queue)
    for user_id in engine.logged_in(queue):
        if not await env.directory.user_targets(queue.account_id, user_id):
            engine.unreachable(user_id)
    ticket = call.call_id
    refused = await engine.join(queue, ticket)
    if refused is not None:
        return await _leave(call, queue, env, refused)
    waiting = _Waiting(call, queue, env, engine, ticket)
    try:
        await call.answer()
        waiting.music = await hold_music(env, queue.account_id, queue.moh_media_id)
        outcome = await waiting.run()
    except CallEnded:
        log.info("queue %s: the caller hung up while waiting", queue.id)
        return QueueExit.ABANDON
    finally:
        await waiting.close()
    if outcome is not None:
        await env.run_destination(call, queue.exit_dest(outcome))
    return outcome


async def _leave(call: Call, queue: Queue, env: PbxEnv, exit: QueueExit) -> QueueExit:
    log.info("queue %s: %s", queue.id, exit.value)
    await env.run_destination(call, queue.exit_dest(exit))
    return exit


@dataclass
class _Waiting:
    """One caller's wait: the music it hears and the offer that rings (one at a time)."""

    call: Call
    queue: Queue
    env: PbxEnv
    engine: QueueEngine
    ticket: str
    music: Audio = field(default_factory=default_hold_music)
    music_at: int = 0
    offer: asyncio.Task[RingResult] | None = None
    offered: dict[RingTarget, str] = field(default_factory=dict)
    offered_agents: tuple[str, ...] = ()
    done: bool = False  # the caller left the line (answered or by an exit)

    @property
    def keys(self) -> str:
        return ABANDON_KEY if self.queue.abandon_dest is not None else ""

    async def run(self) -> QueueExit | None:
        queue, engine = self.queue, self.engine
        language = queue.language or self.env.language
        while True:
            if self.offer is None:
                step = await engine.step(queue, self.ticket)
                if step.exit is not None:
                    return await self._left(step.exit)
                if step.offer:
                    await self._ring(step.offer)
                if step.position is not None:
                    announcement = position_prompt(step.position, language, bool(self.keys))
                    if await self.call.play(announcement, interrupt_on=self.keys) == ABANDON_KEY:
                        return await self._left(QueueExit.ABANDON)
            music = asyncio.ensure_future(self.call.play(self._piece(), interrupt_on=self.keys))
            pending: list[asyncio.Future[Any]] = [music]
            if self.offer is not None:
                pending.append(self.offer)
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            offer = self.offer
            if offer is not None and offer.done():
                await stop(music)
                self.offer = None
                answered = await self._offer_ended(offer.result())
                if answered:
                    return None
                continue
            if music.result() == ABANDON_KEY:
                return await self._left(QueueExit.ABANDON)

    def _piece(self) -> Audio:
        start = self.music_at % len(self.music)
        piece = self.music[start : start + PIECE_SAMPLES]
        self.music_at = start + len(piece)
        return piece

    async def _ring(self, agents: tuple[str, ...]) -> None:
        account_id = self.queue.account_id
        targets: list[RingTarget] = []
        self.offered = {}
        reachable = []
        in_call = self.env.in_call
        for user_id in agents:
            if in_call is not None and in_call(user_id):
                await self.engine.offer_failed(self.queue, self.ticket, user_id)  # busy: skipped
                continue
            found = await self.env.directory.user_targets(account_id, user_id)
            if not found:
                await self.engine.offer_failed(self.queue, self.ticket, user_id)
                continue
            reachable.append(user_id)
            for target in found:
                targets.append(target)
                self.offered.setdefault(target, user_id)
        self.offered_agents = tuple(reachable)
        if not targets:
            return
        log.info("queue %s: offering a caller to %s", self.queue.id, ", ".join(reachable))
        self.offer = asyncio.ensure_future(
            self.env.ringer.ring(
                self.call,
                targets,
                timeout=self.queue.settings.agent_ring_timeout_sec,
                ringback=False,
            )
        )

    async def _offer_ended(self, result: RingResult) -> bool:
        """True when an agent answered (and the bridged call is now over)."""
        queue, engine = self.queue, self.engine
        agents, self.offered_agents = self.offered_agents, ()
        if result.outcome is RingOutcome.CALLER_GONE:
            raise CallEnded()
        if result.outcome is RingOutcome.ANSWERED and result.leg is not None:
            agent = self.offered.get(result.target) if result.target is not None else None
            agent = agent or agents[0]
            await engine.answered(queue, self.ticket, agent)
            self.done = True
            log.info("queue %s: %s answered", queue.id, agent)
            try:
                await self.env.ringer.bridge(self.call, result.leg)
            finally:
                await engine.call_ended(queue, agent)
            return True
        for agent in agents:
            if result.outcome is RingOutcome.BUSY:
                await engine.offer_failed(queue, self.ticket, agent)  # in another call: not a miss
            else:
                await engine.missed(queue, self.ticket, agent)
        return False

    async def _left(self, exit: QueueExit) -> QueueExit:
        await self.engine.left(self.queue, self.ticket, exit)
        self.done = True
        return exit

    async def close(self) -> None:
        """Cancel a ringing offer; a caller still in the line hung up (or the call was
        cancelled): counted as abandoned, nothing left behind."""
        if self.offer is not None:
            await stop(self.offer)
            self.offer = None
        if not self.done:
            await self.engine.left(self.queue, self.ticket, None, hung_up=True)
            self.done = True
