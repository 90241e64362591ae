"""Media files: uploaded audio kept as the original and as a telephony rendition."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

TELEPHONY_RATE = 8000


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


def original_key(account_id: str, media_id: str, extension: str) -> str:
    return f"{account_id}/media/{media_id}/original.{extension}"


def telephony_key(account_id: str, media_id: str) -> str:
    return f"{account_id}/media/{media_id}/telephony.wav"
