"""Ring group rules: member order per strategy, round-robin rotation, schedule exits, checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from afterbeep.domain.errors import InvalidInput
from afterbeep.domain.ids import new_id
from afterbeep.domain.numbers import Destination, DestKind
from afterbeep.domain.ring_groups import (
    RingGroup,
    RingGroupMember,
    RingStrategy,
    Rotation,
    check_members,
    destination,
    ordered_members,
    route_for_state,
)
from afterbeep.domain.schedules import ScheduleState

U1, U2 = new_id("usr"), new_id("usr")
D1 = "dev_01jg8asp59ps9rtt7azhrhvcre"
T0 = datetime(2026, 12, 7, tzinfo=UTC)


def group(strategy: RingStrategy, **extra: object) -> RingGroup:
    members = (
        RingGroupMember(user_id=U2, position=2),
        RingGroupMember(device_id=D1, position=3),
        RingGroupMember(user_id=U1, position=1),
    )
    return RingGroup(
        new_id("rg"),
        new_id("acc"),
        "sales",
        strategy,
        20,
        members,
        T0,
        T0,
        **extra,  # type: ignore[arg-type]
    )


def keys(members: list[RingGroupMember]) -> list[str]:
    return [m.key for m in members]


def test_members_ring_by_position() -> None:
    for strategy in RingStrategy:
        assert keys(ordered_members(group(strategy))) == [U1, U2, D1]


def test_round_robin_starts_after_the_last_who_answered() -> None:
    g = group(RingStrategy.ROUND_ROBIN)
    rotation = Rotation()
    assert keys(ordered_members(g, rotation.last(g.id))) == [U1, U2, D1]
    rotation.answered(g.id, U2)
    assert keys(ordered_members(g, rotation.last(g.id))) == [D1, U1, U2]
    rotation.answered(g.id, D1)
    assert keys(ordered_members(g, rotation.last(g.id))) == [U1, U2, D1]
    rotation.answered(g.id, "usr_gone")  # a member since removed: back to the start
    assert keys(ordered_members(g, rotation.last(g.id))) == [U1, U2, D1]


def test_sequential_does_not_rotate() -> None:
    assert keys(ordered_members(group(RingStrategy.SEQUENTIAL), U1)) == [U1, U2, D1]


def test_schedule_states_pick_closed_and_holiday_destinations() -> None:
    closed = Destination(DestKind.VOICEMAIL, new_id("vm"))
    holiday = Destination(DestKind.HANGUP, None)
    both = group(RingStrategy.RING_ALL, closed_dest=closed, holiday_dest=holiday)
    assert route_for_state(both, ScheduleState.IN_HOURS) is None
    assert route_for_state(both, ScheduleState.OUT_OF_HOURS) == closed
    assert route_for_state(both, ScheduleState.HOLIDAY) == holiday
    only_closed = group(RingStrategy.RING_ALL, closed_dest=closed)
    assert route_for_state(only_closed, ScheduleState.HOLIDAY) == closed
    neither = group(RingStrategy.RING_ALL)
    assert route_for_state(neither, ScheduleState.OUT_OF_HOURS) is None


def test_destinations_are_checked_by_kind_and_prefix() -> None:
    assert destination(None, None, "exit_dest") is None
    assert destination(DestKind.HANGUP, None, "exit_dest") == Destination(DestKind.HANGUP, None)
    queue_id = new_id("q")
    assert destination(DestKind.QUEUE, queue_id, "exit_dest") == Destination(
        DestKind.QUEUE, queue_id
    )
    for kind, dest_id, field in (
        (None, new_id("vm"), "exit_dest_kind"),
        (DestKind.HANGUP, new_id("vm"), "exit_dest_id"),
        (DestKind.VOICEMAIL, None, "exit_dest_id"),
        (DestKind.VOICEMAIL, new_id("flow"), "exit_dest_id"),
        (DestKind.RING_GROUP, new_id("q"), "exit_dest_id"),
    ):
        with pytest.raises(InvalidInput) as err:
            destination(kind, dest_id, "exit_dest")
        assert err.value.field == field


@pytest.mark.parametrize(
    ("member", "field"),
    [
        (RingGroupMember(), "members[0]"),
        (RingGroupMember(user_id=U1, device_id=D1), "members[0]"),
        (RingGroupMember(user_id=D1), "members[0].user_id"),
        (RingGroupMember(device_id=U1), "members[0].device_id"),
        (RingGroupMember(user_id=U1, delay_sec=-1), "members[0].delay_sec"),
        (RingGroupMember(user_id=U1, timeout_sec=0), "members[0].timeout_sec"),
    ],
)
def test_members_are_checked(member: RingGroupMember, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        check_members([member])
    assert err.value.field == field


def test_a_member_listed_twice_is_refused() -> None:
    with pytest.raises(InvalidInput) as err:
        check_members([RingGroupMember(user_id=U1), RingGroupMember(user_id=U1, position=2)])
    assert err.value.field == "members[1]"
