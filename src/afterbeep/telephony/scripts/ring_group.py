"""The ring group application: a call to a ring group, as the caller lives it.

Out of hours (or on a holiday) the call goes to the group's closed (holiday) destination.
Otherwise its members' registered devices ring: `ring_all` all at once (each member from its
`delay_sec`, for its `timeout_sec`, the whole ring at most `ring_timeout_sec`); `sequential` and
`round_robin` one member after the other (every device of a user member at once), each for its
`timeout_sec` (else `ring_timeout_sec`), `round_robin` starting after whoever answered last.
The caller hears ringback meanwhile (a group with `moh_media_id` answers and plays that music
instead, or a soft chime when the media is gone). The first answer is bridged; when nobody answers, the call
goes to `exit_dest` (none: it is hung up).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from afterbeep.domain.ring_groups import (
    RingGroup,
    RingGroupMember,
    RingStrategy,
    Rotation,
    ordered_members,
    route_for_state,
)
from afterbeep.telephony.interface import Audio, Call
from afterbeep.telephony.scripts.pbx import PbxEnv, hold_music, ring_over_music, targets_of
from afterbeep.telephony.scripts.ringer import RingOutcome, RingResult, RingTarget

log = logging.getLogger("afterbeep.ring_group")


async def run_ring_group(call: Call, group: RingGroup, env: PbxEnv, rotation: Rotation) -> None:
    if group.schedule_id is not None:
        state = await env.schedule_state(group.account_id, group.schedule_id)
        instead = route_for_state(group, state)
        if instead is not None:
            log.info("ring group %s: %s, to %s", group.id, state.value, instead.kind.value)
            await env.run_destination(call, instead)
            return
    members = ordered_members(group, rotation.last(group.id))
    music = None
    if group.moh_media_id is not None:
        music = await hold_music(env, group.account_id, group.moh_media_id)
        await call.answer()
    ring = _Ring(call, env, music)
    if group.strategy is RingStrategy.RING_ALL:
        result, owner = await _ring_all(ring, group, members)
    else:
        result, owner = await _ring_in_turn(ring, group, members)
    if result.outcome is RingOutcome.CALLER_GONE:
        return
    if result.outcome is RingOutcome.ANSWERED and result.leg is not None:
        if owner is not None:
            rotation.answered(group.id, owner)
        log.info("ring group %s: answered by %s", group.id, owner)
        await env.ringer.bridge(call, result.leg)
        return
    log.info("ring group %s: %s, to the exit destination", group.id, result.outcome.value)
    await env.run_destination(call, group.exit_dest)


@dataclass(frozen=True)
class _Ring:
    """How this call rings: with ringback, or (a group with hold music) over the music."""

    call: Call
    env: PbxEnv
    music: Audio | None

    async def __call__(self, targets: list[RingTarget], timeout: float) -> RingResult:
        if self.music is None:
            return await self.env.ringer.ring(self.call, targets, timeout=timeout)
        return await ring_over_music(self.call, self.env, targets, timeout, self.music)


async def _ring_all(
    ring: _Ring, group: RingGroup, members: list[RingGroupMember]
) -> tuple[RingResult, str | None]:
    env = ring.env
    targets: list[RingTarget] = []
    owners: dict[RingTarget, str] = {}
    for member in members:
        for target in await targets_of(
            env.directory, group.account_id, member.user_id, member.device_id
        ):
            timed = replace(
                target,
                delay_sec=member.delay_sec,
                timeout_sec=member.timeout_sec or group.ring_timeout_sec,
            )
            targets.append(timed)
            owners.setdefault(timed, member.key)
    if not targets:
        return RingResult(RingOutcome.NO_ANSWER), None
    result = await ring(targets, group.ring_timeout_sec)
    return result, owners.get(result.target) if result.target is not None else None


async def _ring_in_turn(
    ring: _Ring, group: RingGroup, members: list[RingGroupMember]
) -> tuple[RingResult, str | None]:
    env = ring.env
    last = RingResult(RingOutcome.NO_ANSWER)
    for member in members:
        targets = await targets_of(
            env.directory, group.account_id, member.user_id, member.device_id
        )
        if not targets:
            continue
        timeout = member.timeout_sec or group.ring_timeout_sec
        result = await ring(
            [replace(t, delay_sec=0.0, timeout_sec=timeout) for t in targets], timeout
        )
        if result.outcome in (RingOutcome.ANSWERED, RingOutcome.CALLER_GONE):
            return result, member.key
        last = result
    return last, None
