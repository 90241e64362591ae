"""The audio received just before a recording is set up, so that it can start at a point of the
receive clock (the beep's scheduled end) rather than when its coroutine got to it. No I/O.

A call keeps the blocks its recorder delivers while no recording runs, each with the arrival
time of its first sample, up to ``limit`` samples (the oldest go first). :meth:`PreRoll.since`
gives back what arrived from a moment on, the first block cut inside: a block's samples are
taken to arrive in real time from its first one, which is how RTP sends them. Audio that
arrived before that moment (the caller talking over the greeting) is not given back, nor,
given ``until`` (a count of :attr:`PreRoll.received` taken as a key arrived), what came after it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from afterbeep.telephony.media.sdp import CLOCK_RATE

__all__ = ["PREROLL_SECONDS", "PreRoll"]

Audio = npt.NDArray[np.int16]

# A loop later than this after the beep loses the start of the message (counted and logged).
# 3 s of 8 kHz int16 is 48 kB a call.
PREROLL_SECONDS = 3.0


class PreRoll:
    def __init__(self, limit: int = round(PREROLL_SECONDS * CLOCK_RATE)) -> None:
        self._limit = limit
        self._blocks: deque[tuple[float, Audio]] = deque()
        self._samples = 0
        self.received = 0  # samples ever put: a mark of "everything received so far"
        self.dropped_until: float | None = None  # where the audio dropped for the bound ended

    def put(self, pcm: Audio, arrival: float) -> None:
        """A block whose first sample arrived at ``arrival``."""
        if not pcm.size:
            return
        self._blocks.append((arrival, pcm))
        self._samples += pcm.size
        self.received += pcm.size
        while self._samples > self._limit:
            first, oldest = self._blocks[0]
            excess = self._samples - self._limit
            if excess >= oldest.size:
                self._blocks.popleft()
                self._samples -= oldest.size
                self.dropped_until = first + oldest.size / CLOCK_RATE
            else:  # keep exactly `limit`: cut the oldest block's head
                self._blocks[0] = (first + excess / CLOCK_RATE, oldest[excess:])
                self._samples -= excess
                self.dropped_until = first + excess / CLOCK_RATE

    @property
    def samples(self) -> int:
        return self._samples

    def lost_after(self, start: float) -> float:
        """Seconds of the audio received after ``start`` that were dropped for the bound."""
        if self.dropped_until is None:
            return 0.0
        return max(0.0, self.dropped_until - start)

    def since(self, start: float, until: int | None = None) -> Iterator[tuple[Audio, float]]:
        """The blocks (cut) received from ``start`` on, with their first sample's arrival;
        with ``until``, only the samples received before :attr:`received` was ``until``."""
        first = self.received - self._samples  # the `received` count of the oldest sample kept
        for arrival, pcm in self._blocks:
            end = pcm.size if until is None else min(pcm.size, until - first)
            first += pcm.size
            if end <= 0:
                return
            skip = round((start - arrival) * CLOCK_RATE)
            if skip <= 0:
                yield pcm[:end], arrival
            elif skip < end:
                yield pcm[skip:end], arrival + skip / CLOCK_RATE

    def clear(self) -> None:
        self._blocks.clear()
        self._samples = 0
        self.dropped_until = None
