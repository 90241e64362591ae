"""Phone numbers owned by an account and where their calls go.

A number is stored in E.164 and held by exactly one account. Its destination (and the optional
closed-hours destination) names an object of the same account; only mailboxes exist today, the
other kinds are reserved so clients can see them coming but are refused until they exist.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from afterbeep.domain.errors import InvalidInput, InvalidPhoneNumber
from afterbeep.domain.phone import to_e164


class DestKind(enum.StrEnum):
    VOICEMAIL = "voicemail"
    FLOW = "flow"
    QUEUE = "queue"
    USER = "user"


# Destinations that exist today; the others are reserved for later features.
SUPPORTED_DEST_KINDS = frozenset({DestKind.VOICEMAIL})
# The id prefix of each supported destination kind's objects.
DEST_ID_PREFIX = {DestKind.VOICEMAIL: "vm"}


@dataclass(frozen=True, slots=True)
class Number:
    id: str
    account_id: str
    e164: str
    dest_kind: DestKind
    dest_id: str
    schedule_id: str | None
    closed_dest_kind: DestKind | None
    closed_dest_id: str | None
    created_at: datetime
    updated_at: datetime


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


def check_dest_kind(kind: DestKind, field: str) -> None:
    if kind not in SUPPORTED_DEST_KINDS:
        supported = ", ".join(sorted(SUPPORTED_DEST_KINDS))
        raise InvalidInput(
            field,
            f"{kind.value!r} destinations are not available yet; supported: {supported}",
            error_id="unsupported-destination",
        )


def check_closed_pair(kind: DestKind | None, dest_id: str | None) -> None:
    if (kind is None) != (dest_id is None):
        raise InvalidInput("closed_dest_kind", "closed_dest_kind and closed_dest_id go together")


def check_schedule(schedule_id: str | None) -> None:
    if schedule_id is not None:
        raise InvalidInput(
            "schedule_id",
            "schedules are not available yet; leave schedule_id null",
            error_id="unsupported-schedule",
        )
