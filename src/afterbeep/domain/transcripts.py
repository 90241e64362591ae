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


def transcript_from_json(data: object) -> Transcript | None:
    """A transcript stored as `Transcript.as_dict()`; None for anything else (no transcript, or
    a stored value that cannot be read: the message stays readable)."""
    if not isinstance(data, dict):
        return None
    try:
        segments = tuple(
            Segment(
                start_ms=int(s["start_ms"]),
                end_ms=int(s["end_ms"]),
                text=str(s["text"]),
                confidence=None if s.get("confidence") is None else float(s["confidence"]),
            )
            for s in data.get("segments") or ()
        )
        confidence = data.get("confidence")
        return Transcript(
            text=str(data["text"]),
            language=str(data["language"]),
            segments=segments,
            confidence=None if confidence is None else float(confidence),
        )
    except (KeyError, TypeError, ValueError):
        return None


class SenderType(enum.StrEnum):
    """Who spoke a transcript entry, as the Telephony API names them."""

    END_USER = "END_USER"
    EXTERNAL_USER = "EXTERNAL_USER"
    HUMAN_AGENT = "HUMAN_AGENT"
    SUPERVISOR = "SUPERVISOR"
    VIRTUAL_AGENT = "VIRTUAL_AGENT"


def voice_call_messages(
    transcript: Transcript,
    *,
    message_id: str,
    participant_id: str,
    recording_started_ms: int,
    sender_type: SenderType = SenderType.END_USER,
) -> list[dict[str, object]]:
    """The transcript as the entries of a voice call (`POST /voiceCalls/{vendorCallKey}/messages`):
    one per segment with text, `startTime`/`endTime` in epoch milliseconds (the recording began
    at `recording_started_ms`, within the call) and a `messageId` unique in the call."""
    return [
        {
            "participantId": participant_id,
            "messageId": f"{message_id}-{index}",
            "startTime": recording_started_ms + segment.start_ms,
            "endTime": recording_started_ms + max(segment.end_ms, segment.start_ms),
            "content": segment.text.strip(),
            "senderType": sender_type.value,
        }
        for index, segment in enumerate(transcript.segments, start=1)
        if segment.text.strip()
    ]
