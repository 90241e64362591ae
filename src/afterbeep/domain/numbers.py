"""Phone numbers owned by an account and where their calls go."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class DestKind(enum.StrEnum):
    VOICEMAIL = "voicemail"
    FLOW = "flow"
    QUEUE = "queue"
    USER = "user"


# Destinations that exist today; the others are reserved for later features.
SUPPORTED_DEST_KINDS = frozenset({DestKind.VOICEMAIL})


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
