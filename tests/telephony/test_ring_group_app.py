"""The ring group application on a FakeCall with a fake Ringer and Directory."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from afterbeep.domain.ids import new_id
from afterbeep.domain.numbers import Destination, DestKind
from afterbeep.domain.ring_groups import RingGroup, RingGroupMember, RingStrategy, Rotation
from afterbeep.domain.schedules import ScheduleState
from afterbeep.telephony.fake import FakeCall
from afterbeep.telephony.scripts.ring_group import run_ring_group
from tests.telephony.pbx_fakes import FakeDirectory, FakeRinger, Routed, env

U1, U2 = new_id("usr"), new_id("usr")
D3 = "dev_01jg8asp59ps9rtt7azhrhvcre"
T0 = datetime(2026, 12, 7, tzinfo=UTC)
EXIT = Destination(DestKind.VOICEMAIL, new_id("vm"))
CLOSED = Destination(DestKind.VOICEMAIL, new_id("vm"))
HOLIDAY = Destination(DestKind.HANGUP, None)


def group(strategy: RingStrategy, **extra: object) -> RingGroup:
    members = (
        RingGroupMember(user_id=U2, position=2, timeout_sec=8),
        RingGroupMember(device_id=D3, position=3, delay_sec=4),
        RingGroupMember(user_id=U1, position=1),
    )
    found = RingGroup(new_id("rg"), new_id("acc"), "sales", strategy, 20, members, T0, T0)
    return replace(found, exit_dest=EXIT, **extra)  # type: ignore[arg-type]


def directory() -> FakeDirectory:
    return FakeDirectory({U1: ["u1-desk", "u1-soft"], U2: ["u2-desk"]}, {D3: ["d3"]})


async def test_ring_all_rings_everyone_at_once_with_their_delays() -> None:
    ringer, routed, call = FakeRinger({"d3": 1.0}), Routed(), FakeCall()
    await run_ring_group(
        call, group(RingStrategy.RING_ALL), env(ringer, directory(), routed), Rotation()
    )
    assert len(ringer.rings) == 1
    ring = ringer.rings[0]
    assert ring.labels == ["u1-desk", "u1-soft", "u2-desk", "d3"]
    assert ring.delays == [0.0, 0.0, 0.0, 4.0]
    assert ring.ringback and ring.timeout == 20
    assert ringer.bridged == ["d3"]
    assert ring.end_ms == 5_000  # answered 1 s after its 4 s delay
    assert routed.calls == []


async def test_sequential_rings_members_in_order_then_the_exit() -> None:
    ringer, routed, call = FakeRinger(), Routed(), FakeCall()
    await run_ring_group(
        call, group(RingStrategy.SEQUENTIAL), env(ringer, directory(), routed), Rotation()
    )
    assert [r.labels for r in ringer.rings] == [["u1-desk", "u1-soft"], ["u2-desk"], ["d3"]]
    assert [r.timeout for r in ringer.rings] == [20, 8, 20]
    starts = [r.start_ms for r in ringer.rings]
    assert starts == sorted(starts) and starts[1] - starts[0] == 20_000
    assert routed.calls == [(48_000, EXIT)]
    assert ringer.bridged == []


async def test_sequential_stops_at_the_first_answer() -> None:
    ringer, routed = FakeRinger({"u2-desk": 3.0, "d3": 1.0}), Routed()
    await run_ring_group(
        FakeCall(), group(RingStrategy.SEQUENTIAL), env(ringer, directory(), routed), Rotation()
    )
    assert [r.labels for r in ringer.rings] == [["u1-desk", "u1-soft"], ["u2-desk"]]
    assert ringer.bridged == ["u2-desk"] and routed.calls == []


async def test_round_robin_starts_after_the_last_who_answered() -> None:
    g = group(RingStrategy.ROUND_ROBIN)
    rotation = Rotation()
    ringer = FakeRinger({"u2-desk": 1.0, "d3": 1.0})
    await run_ring_group(FakeCall(), g, env(ringer, directory(), Routed()), rotation)
    assert [r.labels[0] for r in ringer.rings] == ["u1-desk", "u2-desk"]
    ringer.rings.clear()
    await run_ring_group(FakeCall(), g, env(ringer, directory(), Routed()), rotation)
    assert [r.labels[0] for r in ringer.rings] == ["d3"]
    assert ringer.bridged == ["u2-desk", "d3"]


async def test_unregistered_members_are_skipped_and_nobody_means_the_exit() -> None:
    ringer, routed = FakeRinger(), Routed()
    await run_ring_group(
        FakeCall(), group(RingStrategy.RING_ALL), env(ringer, FakeDirectory(), routed), Rotation()
    )
    assert ringer.rings == []
    assert routed.calls == [(0, EXIT)]
    no_exit = replace(group(RingStrategy.SEQUENTIAL), exit_dest=None)
    routed = Routed()
    await run_ring_group(
        FakeCall(), no_exit, env(ringer, FakeDirectory({U2: ["u2"]}), routed), Rotation()
    )
    assert [r.labels for r in ringer.rings] == [["u2"]]
    assert routed.calls == [(8_000, None)]  # None: hang up


async def test_a_caller_who_hangs_up_while_it_rings_goes_nowhere() -> None:
    ringer, routed = FakeRinger(), Routed()
    call = FakeCall(hangup_at_ms=25_000)
    await run_ring_group(
        call, group(RingStrategy.SEQUENTIAL), env(ringer, directory(), routed), Rotation()
    )
    assert len(ringer.rings) == 2  # gone during the second member
    assert routed.calls == [] and ringer.bridged == []


async def test_closed_and_holiday_go_to_their_destinations_without_ringing() -> None:
    g = group(
        RingStrategy.RING_ALL, schedule_id=new_id("sch"), closed_dest=CLOSED, holiday_dest=HOLIDAY
    )
    for state, dest in ((ScheduleState.OUT_OF_HOURS, CLOSED), (ScheduleState.HOLIDAY, HOLIDAY)):
        ringer, routed = FakeRinger(), Routed()
        await run_ring_group(
            FakeCall(), g, env(ringer, directory(), routed, state=state), Rotation()
        )
        assert ringer.rings == [] and routed.calls == [(0, dest)]
    ringer, routed = FakeRinger({"u1-desk": 1.0}), Routed()
    await run_ring_group(
        FakeCall(), g, env(ringer, directory(), routed, state=ScheduleState.IN_HOURS), Rotation()
    )
    assert ringer.bridged == ["u1-desk"]


async def test_a_group_with_hold_music_answers_and_plays_it_while_ringing() -> None:
    music = (np.arange(16_000) % 300).astype(np.int16)
    media_id = new_id("media")
    g = group(RingStrategy.SEQUENTIAL, moh_media_id=media_id)
    ringer, routed, call = FakeRinger({"u2-desk": 3.0}), Routed(), FakeCall()
    await run_ring_group(
        call, g, env(ringer, directory(), routed, media={media_id: music}), Rotation()
    )
    assert call.answered
    assert [r.ringback for r in ringer.rings] == [False, False]
    assert ringer.bridged == ["u2-desk"]
    heard = call.heard()
    assert np.array_equal(heard[:8000], music[:8000])
    assert np.array_equal(heard[8000:16000], music[8000:16000])
    assert len(heard) <= 8 * (20_000 + 3_000 + 1_000)  # the music stopped at the answer


async def test_a_caller_who_hangs_up_during_the_music_ends_the_ring() -> None:
    media_id = new_id("media")
    g = group(RingStrategy.RING_ALL, moh_media_id=media_id)
    ringer, routed, call = FakeRinger(), Routed(), FakeCall(hangup_at_ms=4_500)
    await run_ring_group(call, g, env(ringer, directory(), routed), Rotation())  # media gone
    assert call.answered and ringer.rings[0].cancelled
    assert routed.calls == [] and ringer.bridged == []
