"""Placing received audio on the recording's timeline by RTP timestamp (no I/O).

Packets arrive here in sequence order (see :mod:`reorder`). Each one is placed
where its timestamp says: a forward jump is a gap (loss, or silence suppression
after a marker bit) filled with silence; a packet overlapping what was already
placed has its overlap cut; timestamps wrap at 2**32 without effect.

A timestamp is not trusted blindly. A new SSRC, or a jump that disagrees with the
arrival clock by more than ``max_skew`` seconds (a sender that restarted its clock),
is a discontinuity: the gap is then measured with the arrival times instead, and
the timeline re-anchors on the new timestamps.
"""

from __future__ import annotations

from typing import NamedTuple

from afterbeep.telephony.media.rtp import TS_MOD, ts_diff

__all__ = ["Placement", "PlayoutPlacer"]


class Placement(NamedTuple):
    """Where one packet goes: ``silence`` zero samples first, then its samples from ``skip`` on.

    ``skip == samples`` means the packet lies entirely in the past and is dropped.
    """

    silence: int
    skip: int
    discontinuity: bool = False


_CONTIGUOUS = Placement(0, 0, False)


class PlayoutPlacer:
    """Tracks the timestamp expected next; ``position`` is samples placed so far."""

    def __init__(self, clock_rate: int = 8000, max_skew: float = 1.0) -> None:
        self.clock_rate = clock_rate
        self.max_skew_samples = int(max_skew * clock_rate)
        self._ssrc: int | None = None
        self._next_ts = 0
        self._last_arrival = 0.0
        self.position = 0
        self.discontinuities = 0
        self.overlaps = 0

    @property
    def started(self) -> bool:
        return self._ssrc is not None

    def is_next(self, ssrc: int, timestamp: int) -> bool:
        """Whether a packet would be placed right after the last one (see `advance`)."""
        return timestamp == self._next_ts and ssrc == self._ssrc

    @property
    def ssrc(self) -> int | None:
        return self._ssrc

    @property
    def next_timestamp(self) -> int:
        return self._next_ts

    def advance(self, timestamp: int, samples: int, arrival: float) -> None:
        """`place` for a packet that `is_next`: no silence, nothing skipped."""
        self._next_ts = (timestamp + samples) % TS_MOD
        if arrival > self._last_arrival:
            self._last_arrival = arrival
        self.position += samples

    def place(
        self, ssrc: int, timestamp: int, samples: int, arrival: float, marker: bool = False
    ) -> Placement:
        if ssrc == self._ssrc and timestamp == self._next_ts:  # the common case: contiguous
            self.advance(timestamp, samples, arrival)
            return _CONTIGUOUS
        if self._ssrc is None:
            return self._anchor(ssrc, timestamp, samples, arrival, silence=0, discontinuity=False)
        by_clock = max(0, round((arrival - self._last_arrival) * self.clock_rate) - samples)
        if ssrc != self._ssrc:
            return self._anchor(ssrc, timestamp, samples, arrival, by_clock, discontinuity=True)
        delta = ts_diff(timestamp, self._next_ts)
        if delta > 0:
            if delta > by_clock + self.max_skew_samples:
                return self._anchor(ssrc, timestamp, samples, arrival, by_clock, discontinuity=True)
            return self._accept(timestamp, samples, arrival, silence=delta, skip=0)
        if delta < 0 and (marker or -delta > self.max_skew_samples):
            return self._anchor(ssrc, timestamp, samples, arrival, by_clock, discontinuity=True)
        skip = min(-delta, samples)
        if skip:
            self.overlaps += 1
        return self._accept(timestamp, samples, arrival, silence=0, skip=skip)

    def _anchor(
        self,
        ssrc: int,
        timestamp: int,
        samples: int,
        arrival: float,
        silence: int,
        discontinuity: bool,
    ) -> Placement:
        if discontinuity:
            self.discontinuities += 1
        self._ssrc = ssrc
        self._next_ts = timestamp
        return self._accept(timestamp, samples, arrival, silence, 0, discontinuity)

    def _accept(
        self,
        timestamp: int,
        samples: int,
        arrival: float,
        silence: int,
        skip: int,
        discontinuity: bool = False,
    ) -> Placement:
        if skip < samples:
            self._next_ts = (timestamp + samples) % TS_MOD
        self._last_arrival = max(self._last_arrival, arrival)
        self.position += silence + samples - skip
        return Placement(silence, skip, discontinuity)
