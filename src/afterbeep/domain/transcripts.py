"""A message's transcript: what was said, in which language, sentence by sentence."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class TranscriptionStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Segment:
    start_ms: int
    end_ms: int
    text: str
    confidence: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "text": self.text,
            "confidence": self.confidence,
        }


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    language: str
    segments: tuple[Segment, ...]
    confidence: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "text": self.text,
            "language": self.language,
            "segments": [segment.as_dict() for segment in self.segments],
            "confidence": self.confidence,
        }
