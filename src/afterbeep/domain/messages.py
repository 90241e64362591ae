"""Voicemail messages left in a mailbox, and their public JSON shape (API and webhook events)."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from afterbeep.domain.clock import iso
from afterbeep.domain.errors import InvalidInput
from afterbeep.domain.transcripts import Transcript, TranscriptionStatus

AUDIO_CONTENT_TYPE = "audio/wav"
CREATED = "message.created"
UPDATED = "message.updated"
DELETED = "message.deleted"
# The transcript is done, or its transcription failed for good (see `transcription_status`).
TRANSCRIBED = "message.transcribed"


CALL_ID_MAX = 200
# One object-key segment: the call id names the audio object `<account>/vm/<call_id>.wav`.
_CALL_ID_RE = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*")


class EndedBy(enum.StrEnum):
    FINISH_KEY = "finish_key"
    HANGUP = "hangup"
    MAX_LENGTH = "max_length"
    SILENCE = "silence"


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
    transcript: Transcript | None = None
    transcription_status: TranscriptionStatus = TranscriptionStatus.SKIPPED
    # Why it failed or was skipped.
    transcription_reason: str | None = None


def check_call_id(call_id: str) -> str:
    """Refuse call ids that could not name an object: map a raw SIP Call-ID to a safe id first."""
    if len(call_id) > CALL_ID_MAX or not _CALL_ID_RE.fullmatch(call_id):
        raise InvalidInput(
            "call_id", f"must be 1 to {CALL_ID_MAX} of A-Z a-z 0-9 _ . -, not starting with '.'"
        )
    return call_id


def audio_key(account_id: str, call_id: str) -> str:
    return f"{account_id}/vm/{call_id}.wav"


def to_json(message: Message) -> dict[str, Any]:
    """The message as the API returns it and webhook events carry it."""
    return {
        "id": message.id,
        "mailbox_id": message.mailbox_id,
        "call_id": message.call_id,
        "caller": message.caller,
        "caller_name": message.caller_name,
        "callee": message.callee,
        "duration_ms": message.duration_ms,
        "folder": message.folder.value,
        "read": message.read,
        "size_bytes": message.size_bytes,
        "recovered": message.recovered,
        "created_at": iso(message.created_at),
        "updated_at": iso(message.updated_at),
        "transcript": message.transcript.as_dict() if message.transcript is not None else None,
        "transcription_status": message.transcription_status.value,
        "transcription_reason": message.transcription_reason,
    }


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """A call recorded into a mailbox: who called whom, when, and how the recording ended
    (`ended_by` None: the process stopped before the recording ended)."""

    call_id: str
    account_id: str
    mailbox_id: str
    caller: str | None
    caller_name: str | None
    callee: str | None
    started_at: str
    ended_by: str | None = None
