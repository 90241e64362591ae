"""Ring groups: a set of users and devices rung together or in turn, with a way out.

A ring group has seed 003's fields: `strategy` (`ring_all`: every member at once, each from its
`delay_sec`; `sequential`: one after the other by `position`; `round_robin`: in turn like
sequential, but starting after the member who answered last), `ring_timeout_sec` (the whole
ring), members (`user_id` or `device_id`, `position`, `delay_sec`, `timeout_sec`), the exit
destination (nobody answered), and a schedule choosing `closed_dest_*` / `holiday_dest_*`.
Destinations are `(kind, id)` pairs of the number's kinds (`domain.numbers.DestKind`).
Everything here is pure: the rotation state is a value passed in and returned.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from afterbeep.domain.errors import InvalidInput
from afterbeep.domain.ids import is_id
from afterbeep.domain.numbers import DEST_ID_PREFIX, Destination, DestKind
from afterbeep.domain.schedules import ScheduleState

MAX_MEMBERS = 50
MAX_RING_SEC = 600
DEFAULT_RING_TIMEOUT_SEC = 30

# The prefixes of the objects every kind of destination names (`hangup` names none); the
# kinds of this issue are added to the number's table here without changing it.
DEST_PREFIXES: dict[DestKind, str] = {
    **DEST_ID_PREFIX,
    DestKind.USER: "usr",
    DestKind.RING_GROUP: "rg",
    DestKind.QUEUE: "q",
}


class RingStrategy(enum.StrEnum):
    RING_ALL = "ring_all"
    SEQUENTIAL = "sequential"
    ROUND_ROBIN = "round_robin"


@dataclass(frozen=True, slots=True)
class RingGroupMember:
    """Exactly one of `user_id` (every registered device of the user) and `device_id`."""

    user_id: str | None = None
    device_id: str | None = None
    position: int = 0
    delay_sec: float = 0.0
    timeout_sec: float | None = None  # None: the group's ring_timeout_sec

    @property
    def key(self) -> str:
        return self.user_id or self.device_id or ""


@dataclass(frozen=True, slots=True)
class RingGroup:
    id: str
    account_id: str
    name: str
    strategy: RingStrategy
    ring_timeout_sec: int
    members: tuple[RingGroupMember, ...]
    created_at: datetime
    updated_at: datetime
    moh_media_id: str | None = None
    exit_dest: Destination | None = None  # None: hang up
    schedule_id: str | None = None
    closed_dest: Destination | None = None
    holiday_dest: Destination | None = None


def check_destination(dest: Destination | None, prefix: str) -> None:
    """`dest` names an object exactly when its kind does, with that object's id prefix."""
    if dest is None:
        return
    if dest.kind is DestKind.HANGUP:
        if dest.id is not None:
            raise InvalidInput(f"{prefix}_id", "must be null for a hangup destination")
        return
    wanted = DEST_PREFIXES.get(dest.kind)
    if dest.id is None:
        raise InvalidInput(f"{prefix}_id", f"is required for a {dest.kind.value} destination")
    if wanted is None or not is_id(dest.id, wanted):
        raise InvalidInput(
            f"{prefix}_id", f"is not a {dest.kind.value} id", error_id="unknown-reference"
        )


def destination(kind: DestKind | None, dest_id: str | None, prefix: str) -> Destination | None:
    """The pair `<prefix>_kind`/`<prefix>_id` as a destination (None when neither is set)."""
    if kind is None:
        if dest_id is not None:
            raise InvalidInput(f"{prefix}_kind", f"is required with {prefix}_id")
        return None
    found = Destination(kind, dest_id)
    check_destination(found, prefix)
    return found


def check_members(members: Sequence[RingGroupMember]) -> None:
    if len(members) > MAX_MEMBERS:
        raise InvalidInput("members", f"at most {MAX_MEMBERS} members")
    seen: set[str] = set()
    for index, member in enumerate(members):
        field = f"members[{index}]"
        if (member.user_id is None) == (member.device_id is None):
            raise InvalidInput(field, "exactly one of user_id and device_id is required")
        if member.user_id is not None and not is_id(member.user_id, "usr"):
            raise InvalidInput(f"{field}.user_id", "is not a user id (usr_...)")
        if member.device_id is not None and not is_id(member.device_id, "dev"):
            raise InvalidInput(f"{field}.device_id", "is not a device id (dev_...)")
        if member.key in seen:
            raise InvalidInput(field, "is listed twice")
        seen.add(member.key)
        if not 0 <= member.delay_sec <= MAX_RING_SEC:
            raise InvalidInput(f"{field}.delay_sec", f"must be between 0 and {MAX_RING_SEC}")
        if member.timeout_sec is not None and not 1 <= member.timeout_sec <= MAX_RING_SEC:
            raise InvalidInput(f"{field}.timeout_sec", f"must be between 1 and {MAX_RING_SEC}")


def check_ring_timeout(seconds: int) -> None:
    if not 1 <= seconds <= MAX_RING_SEC:
        raise InvalidInput("ring_timeout_sec", f"must be between 1 and {MAX_RING_SEC}")


def ordered_members(group: RingGroup, last_answered: str | None = None) -> list[RingGroupMember]:
    """The members in ringing order: by `position` (then as listed); for `round_robin`, turned
    so that the member after `last_answered` (a member key) comes first."""
    members = sorted(group.members, key=lambda m: m.position)
    if group.strategy is not RingStrategy.ROUND_ROBIN or last_answered is None:
        return members
    keys = [m.key for m in members]
    if last_answered not in keys:
        return members
    start = keys.index(last_answered) + 1
    return members[start:] + members[:start]


def route_for_state(group: RingGroup, state: ScheduleState) -> Destination | None:
    """Where a call goes instead of ringing, in this schedule state (None: ring the members).
    On a holiday the holiday destination, else the closed one; out of hours the closed one;
    with none set, the group rings as in hours (it never strands a caller)."""
    if state is ScheduleState.HOLIDAY:
        return group.holiday_dest or group.closed_dest
    if state is ScheduleState.OUT_OF_HOURS:
        return group.closed_dest
    return None


class Rotation:
    """Round-robin memory: the member who answered last, per group (in-process, per node)."""

    def __init__(self) -> None:
        self._last: dict[str, str] = {}

    def last(self, group_id: str) -> str | None:
        return self._last.get(group_id)

    def answered(self, group_id: str, member_key: str) -> None:
        self._last[group_id] = member_key

    def forget(self, group_id: str) -> None:
        self._last.pop(group_id, None)
