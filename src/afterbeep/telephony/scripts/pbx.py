"""What the applications that ring people (ring group, queue) need besides the call: the
engine's `Ringer`, the `Directory` of registered devices, and three callables, so that they
are not coupled to the router, the database or the media store.

`run_destination(call, dest)` sends the call on (a mailbox, a flow, a queue, a user, another
ring group; `None`: hang up) and returns when that is over. `schedule_state(account_id,
schedule_id)` is the state of a schedule now (a missing or broken one fails open: in hours).
`media(account_id, media_id)` is an account's audio at 8 kHz (None when it is gone).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from afterbeep.audio.tones import silence, tone
from afterbeep.domain.numbers import Destination
from afterbeep.domain.schedules import ScheduleState
from afterbeep.telephony.interface import Audio, Call, CallEnded
from afterbeep.telephony.scripts.ringer import (
    Directory,
    Ringer,
    RingOutcome,
    RingResult,
    RingTarget,
)

PIECE_SAMPLES = 8000  # hold music is played a second at a time

RunDestination = Callable[[Call, Destination | None], Awaitable[None]]
ScheduleStateOf = Callable[[str, str], Awaitable[ScheduleState]]
MediaOf = Callable[[str, str], Awaitable[Audio | None]]


@dataclass(frozen=True)
class PbxEnv:
    ringer: Ringer
    directory: Directory
    run_destination: RunDestination
    schedule_state: ScheduleStateOf
    media: MediaOf
    language: str = "en"  # the account's, for prompts
    in_call: Callable[[str], bool] | None = None  # a user in a call bridged on this node


async def targets_of(
    directory: Directory, account_id: str, user_id: str | None, device_id: str | None
) -> list[RingTarget]:
    """The registered contacts of a user (every device) or of one device."""
    if user_id is not None:
        return await directory.user_targets(account_id, user_id)
    if device_id is not None:
        return await directory.device_targets(account_id, device_id)
    return []


@lru_cache(maxsize=1)
def default_hold_music() -> Audio:
    """A soft two-note chime every four seconds, when there is no music of one's own."""
    chime = np.concatenate([tone(523.25, 300, amplitude=0.08), tone(659.25, 450, amplitude=0.08)])
    music = np.concatenate([chime, silence(4000 - 750)])
    music.setflags(write=False)
    return music


async def hold_music(env: PbxEnv, account_id: str, media_id: str | None) -> Audio:
    """The account's media `media_id`, else (none, or gone) the default chime."""
    if media_id is not None:
        found = await env.media(account_id, media_id)
        if found is not None and len(found):
            return found
    return default_hold_music()


async def ring_over_music(
    call: Call, env: PbxEnv, targets: list[RingTarget], timeout: float, music: Audio
) -> RingResult:
    """Ring `targets` (no ringback) while the answered caller hears `music`; the music stops
    as soon as the ring ends. A caller who hangs up meanwhile is `CALLER_GONE`."""
    ring = asyncio.ensure_future(env.ringer.ring(call, targets, timeout=timeout, ringback=False))
    at = 0
    try:
        while True:
            piece = music[at : at + PIECE_SAMPLES]
            at = (at + len(piece)) % len(music)
            player = asyncio.ensure_future(call.play(piece))
            await asyncio.wait([player, ring], return_when=asyncio.FIRST_COMPLETED)
            if ring.done():
                await stop(player)
                return ring.result()
            player.result()
    except CallEnded:
        return RingResult(RingOutcome.CALLER_GONE)
    finally:
        await stop(ring)


async def stop(task: asyncio.Future[Any]) -> None:
    """Cancel `task` (unless it is done) and wait for it to end; its outcome is of no interest
    any more (an exception is retrieved, so it is not reported as lost)."""
    if not task.done():
        task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()
