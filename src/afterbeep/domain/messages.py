"""Voicemail messages left in a mailbox."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Folder(enum.StrEnum):
    NEW = "new"
    SAVED = "saved"
    URGENT = "urgent"


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    account_id: str
    mailbox_id: str
    call_id: str
    caller: str | None
    caller_name: str | None
    callee: str | None
    duration_ms: int
    folder: Folder
    read: bool
    size_bytes: int
    audio_key: str
    recovered: bool
    created_at: datetime
    updated_at: datetime


def audio_key(account_id: str, call_id: str) -> str:
    return f"{account_id}/vm/{call_id}.wav"
