"""Media files: uploaded audio kept as the original and as a telephony rendition."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from afterbeep.domain.transcripts import Transcript, TranscriptionStatus

TELEPHONY_RATE = 8000
TELEPHONY_CONTENT_TYPE = "audio/wav"
MAX_NAME_LENGTH = 255

# Decoder format name -> (file extension of the stored original, its Content-Type).
_FILE_TYPES: dict[str, tuple[str, str]] = {
    "MP3": ("mp3", "audio/mpeg"),
    "MP2": ("mp2", "audio/mpeg"),
    "MP1": ("mp1", "audio/mpeg"),
    "WAV": ("wav", "audio/wav"),
    "RF64": ("wav", "audio/wav"),
    "FLAC": ("flac", "audio/flac"),
    "OGG": ("ogg", "audio/ogg"),
    "AIFF": ("aiff", "audio/aiff"),
    "AU": ("au", "audio/basic"),
    "CAF": ("caf", "audio/x-caf"),
    "W64": ("w64", "audio/x-w64"),
}


class Rendition(StrEnum):
    ORIGINAL = "original"
    TELEPHONY = "telephony"


@dataclass(frozen=True, slots=True)
class Media:
    id: str
    account_id: str
    name: str
    format: str
    content_type: str
    duration_ms: int
    sample_rate: int
    channels: int
    size_bytes: int
    sha256: str
    original_key: str
    telephony_key: str
    created_at: datetime
    # The original and its telephony rendition together (the rendition counted from the start,
    # also while it is pending): what the media takes of the account's storage.
    stored_bytes: int = 0
    # Only when asked for on upload (`transcribe`); status None: never asked.
    transcript: Transcript | None = None
    transcription_status: TranscriptionStatus | None = None
    transcription_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ImportRules:
    """What a caller accepts for one import; None means no rule beyond the library's own."""

    allowed_formats: frozenset[str] | None = None
    max_bytes: int | None = None
    min_ms: int | None = None
    max_ms: int | None = None


def file_type(format_name: str) -> tuple[str, str]:
    """The extension and Content-Type for a decoder format name such as "MP3" or "FLAC"."""
    upper = format_name.upper()
    found = _FILE_TYPES.get(upper)
    if found is not None:
        return found
    extension = "".join(ch for ch in upper.lower() if ch.isascii() and ch.isalnum()) or "bin"
    return extension, "application/octet-stream"


def clean_name(raw: str | None) -> str | None:
    """A display name: control characters dropped, whitespace trimmed, at most 255 characters."""
    if raw is None:
        return None
    cleaned = "".join(ch for ch in raw if ch.isprintable()).strip()
    return cleaned[:MAX_NAME_LENGTH] or None
