"""RFC 4733 telephone-events: receive (one digit per event) and the packets to send one.

The 4-byte event payload is parsed and built by aiortp's ``DtmfEvent`` (sound). The
event logic is ours: aiortp's receiver reports a digit only when it sees an end
packet, so a digit whose end packets are all lost is missed, and it re-reports an
event when an end packet of an older event arrives late.

An event is identified by (SSRC, RTP timestamp, event code): every packet of one
key press carries the timestamp of its start (RFC 4733 section 2.3.4). The digit is
reported on the *first* packet seen of a new event, whatever its kind (start,
continuation or one of the three redundant end packets), and never again. Volume is
ignored. A long press split into segments (section 2.5.1.3: the duration field
overflowed, the next segment has timestamp = previous + duration) stays one digit.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from aiortp.dtmf import DtmfEvent

__all__ = [
    "DTMF_DIGITS",
    "END_PACKET_REPEATS",
    "DtmfReceiver",
    "dtmf_payloads",
]

DTMF_DIGITS = "0123456789*#ABCD"  # events 0-15 (RFC 4733 section 3.2)
END_PACKET_REPEATS = 3  # RFC 4733 section 2.5.1.4
MAX_DURATION = 0xFFFF  # the 16-bit duration field
DEFAULT_VOLUME = 10  # -10 dBm0
_MEMORY = 32


@dataclass(slots=True)
class _Event:
    ssrc: int
    timestamp: int
    code: int
    duration: int
    ended: bool


class DtmfReceiver:
    """Feed it telephone-event payloads; it returns each new digit once."""

    def __init__(self) -> None:
        self._seen: deque[tuple[int, int, int]] = deque(maxlen=_MEMORY)
        self._current: _Event | None = None
        self.digits = 0
        self.malformed = 0

    def receive(self, ssrc: int, timestamp: int, payload: bytes) -> str | None:
        try:
            event = DtmfEvent.parse(payload)
        except ValueError:
            self.malformed += 1
            return None
        key = (ssrc, timestamp, event.event)
        current = self._current
        if current is not None and (current.ssrc, current.timestamp, current.code) == key:
            current.duration = max(current.duration, event.duration)
            current.ended = current.ended or event.end
            return None
        if key in self._seen:
            return None  # a late packet of an older event
        continuation = (
            current is not None
            and current.ssrc == ssrc
            and current.code == event.event
            and not current.ended
            and current.duration >= MAX_DURATION - 160
            and (timestamp - current.timestamp) % (1 << 32) == current.duration
        )
        self._seen.append(key)
        self._current = _Event(ssrc, timestamp, event.event, event.duration, event.end)
        if continuation or event.event >= len(DTMF_DIGITS):
            return None
        self.digits += 1
        return DTMF_DIGITS[event.event]


def dtmf_payloads(
    digit: str, duration_samples: int, step_samples: int, volume: int = DEFAULT_VOLUME
) -> list[tuple[bytes, bool]]:
    """The payloads of one event, one per packet interval: (payload, is_end).

    Progress packets grow the duration by ``step_samples``; the final duration is
    sent ``END_PACKET_REPEATS`` times with the E bit.
    """
    code = DTMF_DIGITS.find(digit.upper())
    if len(digit) != 1 or code < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    if not 0 < duration_samples <= MAX_DURATION:
        raise ValueError("DTMF duration out of range")
    payloads: list[tuple[bytes, bool]] = []
    elapsed = step_samples
    while elapsed < duration_samples:
        payloads.append((DtmfEvent(code, False, volume, elapsed).serialize(), False))
        elapsed += step_samples
    end = DtmfEvent(code, True, volume, duration_samples).serialize()
    payloads.extend((end, True) for _ in range(END_PACKET_REPEATS))
    return payloads
