"""Phone numbers owned by an account and where their calls go.

A number is stored in E.164 and held by exactly one account. It routes with seed 003's trio:
`dest_kind`/`dest_id`, plus an optional `schedule_id` whose state picks `closed_dest_*` (out of
hours) or `holiday_dest_*` (a holiday; the closed destination when absent). Every destination
names an object of the same account, except `hangup`, which names none. `user` is a valid kind
but refused until the objects it names exist.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from afterbeep.domain.errors import InvalidInput, InvalidPhoneNumber
from afterbeep.domain.phone import to_e164
from afterbeep.domain.schedules import ScheduleState


class DestKind(enum.StrEnum):
    VOICEMAIL = "voicemail"
    FLOW = "flow"
    USER = "user"
    RING_GROUP = "ring_group"
    QUEUE = "queue"
    HANGUP = "hangup"
    VOICEMAIL_MAIN = "voicemail_main"  # the phone menu: asks for the mailbox number, then the PIN


class NumberStatus(enum.StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"  # calls to it are answered 404, as if it were not held


# Destinations that exist today; the others are reserved for later features.
SUPPORTED_DEST_KINDS = frozenset(
    {DestKind.VOICEMAIL, DestKind.FLOW, DestKind.HANGUP, DestKind.USER}
)
# The id prefix of the objects each kind names; a kind missing here names no object.
DEST_ID_PREFIX = {DestKind.VOICEMAIL: "vm", DestKind.FLOW: "flow", DestKind.USER: "usr"}
# Ring groups and queues (issue 17) are destinations too.
SUPPORTED_DEST_KINDS |= {DestKind.RING_GROUP, DestKind.QUEUE}
DEST_ID_PREFIX |= {DestKind.RING_GROUP: "rg", DestKind.QUEUE: "q"}
SUPPORTED_DEST_KINDS |= {DestKind.VOICEMAIL_MAIN}
# Destinations that name no object: their id is null.
ID_LESS_DEST_KINDS = frozenset({DestKind.HANGUP, DestKind.VOICEMAIL_MAIN})


@dataclass(frozen=True, slots=True)
class Destination:
    kind: DestKind
    id: str | None  # None for `hangup`


@dataclass(frozen=True, slots=True)
class Number:
    id: str
    account_id: str
    e164: str
    dest_kind: DestKind
    dest_id: str | None
    schedule_id: str | None
    closed_dest_kind: DestKind | None
    closed_dest_id: str | None
    created_at: datetime
    updated_at: datetime
    holiday_dest_kind: DestKind | None = None
    holiday_dest_id: str | None = None
    status: NumberStatus = NumberStatus.ACTIVE
    allow_anonymous: bool = True

    @property
    def dest(self) -> Destination:
        return Destination(self.dest_kind, self.dest_id)

    @property
    def closed_dest(self) -> Destination | None:
        if self.closed_dest_kind is None:
            return None
        return Destination(self.closed_dest_kind, self.closed_dest_id)

    @property
    def holiday_dest(self) -> Destination | None:
        if self.holiday_dest_kind is None:
            return None
        return Destination(self.holiday_dest_kind, self.holiday_dest_id)

    def destinations(self) -> list[tuple[str, Destination]]:
        """(the id field naming it, destination) for every destination set."""
        found = [("dest_id", self.dest)]
        if (closed := self.closed_dest) is not None:
            found.append(("closed_dest_id", closed))
        if (holiday := self.holiday_dest) is not None:
            found.append(("holiday_dest_id", holiday))
        return found


def destination_for(number: Number, state: ScheduleState) -> Destination:
    """Where a call goes in this schedule state: in hours the destination; out of hours the
    closed destination; on a holiday the holiday destination, else the closed one. A missing
    choice falls back to the main destination (a number never strands a caller)."""
    if state is ScheduleState.HOLIDAY:
        return number.holiday_dest or number.closed_dest or number.dest
    if state is ScheduleState.OUT_OF_HOURS:
        return number.closed_dest or number.dest
    return number.dest


def parse_number(raw: str, default_region: str, field: str = "e164") -> str:
    """National, `+` and `00` international forms (and SIP user parts) to E.164."""
    text = raw.strip()
    compact = "".join(ch for ch in text if ch not in " -.()")
    if compact.startswith("00") and compact[2:].isdigit():
        # phonenumbers only knows the default region's own international prefix (011 in the US).
        text = "+" + compact[2:]
    return to_e164(text, default_region, field)


def dialed_to_e164(dialed: str, default_region: str) -> str | None:
    """What a caller dialed (`+1202...`, `1202...`, `sip:+1202...@host;user=phone`) in E.164, or None."""
    user = dialed.strip()
    lowered = user.lower()
    for scheme in ("sips:", "sip:", "tel:"):
        if lowered.startswith(scheme):
            user = user[len(scheme) :]
            break
    user = user.split("@", 1)[0].split(";", 1)[0]
    try:
        return parse_number(user, default_region)
    except InvalidPhoneNumber:
        return None


def check_number(number: Number) -> None:
    """Every destination of `number` has a supported kind and an id exactly when its kind
    names an object; the first problem raises `InvalidInput` naming its field."""
    for prefix, kind, dest_id in (
        ("dest", number.dest_kind, number.dest_id),
        ("closed_dest", number.closed_dest_kind, number.closed_dest_id),
        ("holiday_dest", number.holiday_dest_kind, number.holiday_dest_id),
    ):
        if kind is None:
            if dest_id is not None:
                raise InvalidInput(f"{prefix}_kind", f"is required with {prefix}_id")
            continue
        check_dest_kind(kind, f"{prefix}_kind")
        if kind in ID_LESS_DEST_KINDS and dest_id is not None:
            raise InvalidInput(f"{prefix}_id", f"must be null for a {kind.value} destination")
        if kind not in ID_LESS_DEST_KINDS and dest_id is None:
            raise InvalidInput(f"{prefix}_id", f"is required for a {kind.value} destination")


def check_dest_kind(kind: DestKind, field: str) -> None:
    if kind not in SUPPORTED_DEST_KINDS:
        supported = ", ".join(sorted(SUPPORTED_DEST_KINDS))
        raise InvalidInput(
            field,
            f"{kind.value!r} destinations are not available yet; supported: {supported}",
            error_id="unsupported-destination",
        )
