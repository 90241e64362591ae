"""Special information tones (SIT, ITU-T E.180 / Telcordia GR-1162): the three rising tones a
network plays before "the number you have dialled is not in service".

Segment 1 is 913.8 or 985.2 Hz, segment 2 is 1370.6 or 1428.5 Hz, segment 3 is 1776.7 Hz; each
lasts about 274 ms (short) or 380 ms (long). Fed 8 kHz audio in any block size, the detector
measures every 20 ms frame with Goertzel filters at the five frequencies: a frame belongs to a
segment when one of that segment's frequencies holds most of the frame's power. Three runs of
such frames in order, each between `min_ms` and `max_ms`, with at most `max_gap_ms` between
them, are a SIT; `feed` returns the time (ms of audio fed) at the end of the third segment.

Written here because it is three Goertzel filters and a run counter; no package does it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

RATE = 8000
FRAME = 160  # 20 ms
FRAME_MS = 20
SEGMENTS: tuple[tuple[float, ...], ...] = ((913.8, 985.2), (1370.6, 1428.5), (1776.7,))


@dataclass(frozen=True, slots=True)
class SitSettings:
    min_ms: int = 200  # 274 ms segments, less a frame at each edge
    max_ms: int = 480  # 380 ms segments, plus a frame at each edge
    max_gap_ms: int = 60  # segments follow each other without a pause
    purity: float = 0.6  # share of the frame's power at the segment's frequency
    min_level_dbfs: float = -45.0


def _coefficients(freq: float) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    n = np.arange(FRAME)
    return np.cos(2 * np.pi * freq * n / RATE), np.sin(2 * np.pi * freq * n / RATE)


_PROBES = [[_coefficients(f) for f in segment] for segment in SEGMENTS]


class SitDetector:
    """Feed audio as it arrives; `feed` returns the ms at which a SIT ended, once."""

    def __init__(self, settings: SitSettings | None = None) -> None:
        self.settings = settings or SitSettings()
        self._carry: npt.NDArray[np.int16] = np.zeros(0, dtype=np.int16)
        self._frames = 0
        self._segment = -1  # the segment whose run is in progress, or -1
        self._run = 0  # frames in that run
        self._done = 0  # segments completed in order
        self._gap = 0  # frames since the last completed segment
        self.detected_ms: int | None = None

    def feed(self, pcm: npt.NDArray[np.int16]) -> int | None:
        data = np.concatenate([self._carry, pcm]) if self._carry.size else pcm
        whole = data.size // FRAME * FRAME
        self._carry = data[whole:].copy()
        found: int | None = None
        for start in range(0, whole, FRAME):
            if self.detected_ms is not None:
                break
            self._frames += 1
            if self._frame(self._classify(data[start : start + FRAME])):
                self.detected_ms = found = self._frames * FRAME_MS
        return found

    def _classify(self, frame: npt.NDArray[np.int16]) -> int:
        """The segment (0..2) whose tone this frame is, or -1."""
        x = frame.astype(np.float64) / 32768.0
        energy = float(np.dot(x, x))
        if energy <= 0:
            return -1
        level = 10 * math.log10(energy / FRAME)
        if level < self.settings.min_level_dbfs:
            return -1
        for index, probes in enumerate(_PROBES):
            for cos, sin in probes:
                re, im = float(np.dot(x, cos)), float(np.dot(x, sin))
                # a pure tone at the probe frequency gives 2 |X|^2 / N == energy
                if 2 * (re * re + im * im) / FRAME >= self.settings.purity * energy:
                    return index
        return -1

    def _frame(self, segment: int) -> bool:
        s = self.settings
        if segment == self._segment and segment >= 0:
            self._run += 1
            if self._run * FRAME_MS > s.max_ms:
                self._reset()
            return False
        finished = self._segment
        if finished >= 0:
            valid = s.min_ms <= self._run * FRAME_MS <= s.max_ms
            if valid and finished == self._done:
                self._done += 1
            else:
                self._done = 1 if valid and finished == 0 else 0
            self._gap = 0
            if self._done == len(SEGMENTS):
                return True
        self._segment, self._run = segment, 1 if segment >= 0 else 0
        if segment < 0 and self._done:
            self._gap += 1
            if self._gap * FRAME_MS > s.max_gap_ms:
                self._done = 0
        return False

    def _reset(self) -> None:
        self._segment, self._run, self._done, self._gap = -1, 0, 0, 0
