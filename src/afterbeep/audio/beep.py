"""Streaming beep detector: a stable single tone between 350 and 2500 Hz lasting >= 120 ms.

Fed 20 ms frames of 8 kHz audio. Each frame loud enough to matter gets one FFT over the last
64 ms (Hann window): a tone candidate is a spectral peak in range holding most of the
in-band power above the broadband noise floor (spectral purity; the floor is the median bin's
level, so a beep in white noise at 10 dB still counts) at the same frequency in consecutive
frames. Voiced speech spreads its power over many moving harmonics and fails the purity
test; ringback (440 + 480 Hz) puts half its power in each of two peaks and fails it too (and
is also refused by name). Once a candidate frequency is known, its on/off timing is followed
with a Goertzel filter at that frequency over 10 ms half-frames, so the start and end are found
to about 10 ms and the end is reported at most 20 ms after it happens. Half-frames of digital
silence (a lost packet: the jitter buffer fills the gap with zeros) neither continue nor end a
tone, up to 100 ms, and stay out of the FFT window: a beep is not cut in two by packet loss.

Written here because no maintained package does telephony beep detection on a stream.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

RATE = 8000
FRAME = 160  # 20 ms
HALF = FRAME // 2  # 10 ms, the timing resolution
FFT_SIZE = 512  # 64 ms window
_HISTORY_FRAMES = 25  # 500 ms kept to find where a tone began
_RINGBACK = (440.0, 480.0)
_DIGITAL_SILENCE = 24  # a 10 ms block within +-24: lost packet or silence suppression, not line noise
_MIN_RAW_PURITY = 0.6  # a tone 5 dB over white noise still holds this share of the band
_MAX_LOST = 10  # 100 ms of digital silence ends a tone all the same


@dataclass(frozen=True, slots=True)
class BeepSettings:
    min_hz: float = 350.0
    max_hz: float = 2500.0
    min_ms: int = 120
    timing_slack_ms: int = 10  # a tone measured this much shorter than min_ms still counts
    purity: float = 0.9  # share of the 100..3800 Hz power (less the noise floor) within +-2 bins of the peak
    max_subharmonic: float = 0.03  # power at half the frequency, relative: a voice's harmonic
    max_drift: float = 0.015  # frame-to-frame frequency change allowed, relative
    min_level_dbfs: float = -50.0  # quieter frames are not looked at
    on_ratio: float = 0.4  # a half-frame is "on" when the tone holds this share of its power
    on_level_db: float = -9.0  # ... and is within this of the tone's level


@dataclass(frozen=True, slots=True)
class Beep:
    start_ms: int
    end_ms: int
    freq_hz: float
    power: float = 0.0  # mean square of the tone, in int16 units squared

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


@dataclass(frozen=True, slots=True)
class ToneInProgress:
    freq_hz: float
    start_ms: int
    last_on_ms: int

    @property
    def duration_ms(self) -> int:
        return self.last_on_ms - self.start_ms


Floats = npt.NDArray[np.float32]


class _Tracker:
    """Follows one tone at a known frequency, half-frame by half-frame."""

    __slots__ = ("_c", "_s", "fft_misses", "freq", "last_on_ms", "level", "lost", "misses", "start_ms")

    def __init__(self, freq: float, start_ms: int, last_on_ms: int, level: float) -> None:
        self.freq = freq
        self.start_ms = start_ms
        self.last_on_ms = last_on_ms
        self.level = level
        self.misses = 0
        self.fft_misses = 0
        self.lost = 0  # consecutive half-frames of digital silence
        self._c, self._s = _oscillator(freq)

    def power(self, block: Floats) -> float:
        return _goertzel(block, self._c, self._s)


def _oscillator(freq: float) -> tuple[Floats, Floats]:
    n = np.arange(HALF, dtype=np.float64)
    w = 2 * np.pi * freq / RATE
    return np.cos(w * n).astype(np.float32), np.sin(w * n).astype(np.float32)


def _goertzel(block: Floats, c: Floats, s: Floats) -> float:
    """Power at the oscillator's frequency, scaled so a pure sine's equals its mean square."""
    re = float(np.dot(block, c))
    im = float(np.dot(block, s))
    return 2.0 * (re * re + im * im) / (len(block) * len(block))


_WINDOW = np.hanning(FFT_SIZE).astype(np.float32)
_BIN_HZ = RATE / FFT_SIZE
_BAND = (int(100 / _BIN_HZ), int(3800 / _BIN_HZ) + 1)


class BeepDetector:
    """Feed 8 kHz int16 audio; completed beeps come back from `feed` when they end."""

    def __init__(self, settings: BeepSettings | None = None) -> None:
        self.settings = s = settings or BeepSettings()
        self._lo = max(int(s.min_hz / _BIN_HZ), 2 * _BAND[0] + 4)
        self._hi = min(int(s.max_hz / _BIN_HZ) + 2, _BAND[1] - 2)
        self._min_energy = (32768.0 * 10 ** (s.min_level_dbfs / 20)) ** 2
        self._on_level = 10 ** (s.on_level_db / 10)
        self._window: Floats = np.zeros(FFT_SIZE, dtype=np.float32)
        self._history: deque[Floats] = deque(maxlen=_HISTORY_FRAMES)
        self._pending = np.zeros(0, dtype=np.int16)
        self._frames = 0
        self._candidate: float | None = None
        self._tracker: _Tracker | None = None

    @property
    def tone(self) -> ToneInProgress | None:
        """The tone being followed now, if any (not yet known to be a beep)."""
        t = self._tracker
        return None if t is None else ToneInProgress(t.freq, t.start_ms, t.last_on_ms)

    @property
    def elapsed_ms(self) -> int:
        return self._frames * FRAME * 1000 // RATE

    def feed(self, pcm: npt.NDArray[np.int16]) -> list[Beep]:
        """Audio of any length; beeps that ended within it."""
        data = np.concatenate((self._pending, pcm)) if len(self._pending) else pcm
        found: list[Beep] = []
        whole = len(data) - len(data) % FRAME
        for i in range(0, whole, FRAME):
            beep = self.feed_frame(data[i : i + FRAME])
            if beep is not None:
                found.append(beep)
        self._pending = data[whole:].copy()
        return found

    def feed_frame(self, frame: npt.NDArray[np.int16]) -> Beep | None:
        """Exactly one 20 ms frame (160 samples)."""
        x = frame.astype(np.float32)
        t0 = self._frames * 20
        self._frames += 1
        energy = float(np.dot(x, x)) / FRAME
        lost = energy <= _DIGITAL_SILENCE**2 and float(np.abs(x).max()) <= _DIGITAL_SILENCE
        if not lost:  # a lost packet would smear the spectrum of the next 64 ms: skip it
            self._window = np.concatenate((self._window[FRAME:], x))
        self._history.append(x)
        if self._tracker is not None:
            return self._follow(self._tracker, x, t0, energy)
        if lost:
            return None  # keep the candidate across it
        if energy < self._min_energy:
            self._candidate = None
            return None
        peak = self._peak()
        if peak is None:
            self._candidate = None
            return None
        previous, self._candidate = self._candidate, peak
        if previous is not None and abs(peak - previous) <= self.settings.max_drift * peak:
            self._begin((peak + previous) / 2, t0)
        return None

    def _peak(self) -> float | None:
        """The frequency of a pure, in-range tone in the last 64 ms, if there is one."""
        spectrum = np.abs(np.fft.rfft(self._window * _WINDOW))
        spectrum *= spectrum
        total = float(spectrum[_BAND[0] : _BAND[1]].sum())
        if total <= 0.0:
            return None
        k = self._lo + int(np.argmax(spectrum[self._lo : self._hi]))
        peak = float(spectrum[k - 2 : k + 3].sum())
        if peak < _MIN_RAW_PURITY * total:
            return None  # not a tone even if all the rest were noise: speech, music
        if peak < self.settings.purity * total:
            # Broadband noise is not part of the signal: what lies beyond the median bin's
            # level, outside the peak, is (speech harmonics, a second tone).
            band = spectrum[_BAND[0] : _BAND[1]]
            middle = len(band) // 2
            noise = float(np.partition(band, middle)[middle]) * (len(band) - 5)
            if peak < self.settings.purity * (peak + max(0.0, total - peak - noise)):
                return None
        half = k // 2
        if float(spectrum[half - 2 : half + 3].sum()) > self.settings.max_subharmonic * peak:
            return None
        a, b, c = (float(np.log(v + 1e-9)) for v in spectrum[k - 1 : k + 2])
        denominator = a - 2 * b + c
        offset = 0.5 * (a - c) / denominator if denominator != 0 else 0.0
        freq = (k + offset) * _BIN_HZ
        if not self.settings.min_hz <= freq <= self.settings.max_hz:
            return None
        if _RINGBACK[0] - 20 <= freq <= _RINGBACK[1] + 20 and self._is_ringback(spectrum):
            return None
        return freq

    @staticmethod
    def _is_ringback(spectrum: npt.NDArray[np.floating]) -> bool:
        """Both 440 and 480 Hz near the top of that stretch of spectrum. One tone between them
        (a 460 Hz beep) also lights both bins, but well below its own peak in the middle."""
        i, j = (round(f / _BIN_HZ) for f in _RINGBACK)
        top = float(spectrum[i - 1 : j + 2].max())
        return min(float(spectrum[i]), float(spectrum[j])) > 0.2 * top

    def _begin(self, freq: float, t0: int) -> None:
        """A tone at `freq` is present now: walk back through the history to its start."""
        c, s = _oscillator(freq)
        blocks = [h[i : i + HALF] for h in self._history for i in (0, HALF)]
        powers = [_goertzel(b, c, s) for b in blocks]
        energies = [float(np.dot(b, b)) / HALF for b in blocks]
        lost = [float(np.abs(b).max()) <= _DIGITAL_SILENCE for b in blocks]
        level = max(powers[-2:])
        on = [p >= self._on_level * level and p >= self.settings.on_ratio * e
              for p, e in zip(powers, energies, strict=True)]
        if not on[-1] and not on[-2]:
            return
        last = len(on) - 1 if on[-1] else len(on) - 2
        first = last
        while first > 0 and (on[first - 1] or lost[first - 1]):
            first -= 1
        while lost[first]:
            first += 1
        frame_end = t0 + 20
        start_ms = frame_end - (len(on) - first) * 10
        last_on_ms = frame_end - (len(on) - 1 - last) * 10
        self._tracker = _Tracker(freq, start_ms, last_on_ms, level)
        self._candidate = None

    def _follow(self, tr: _Tracker, x: Floats, t0: int, energy: float) -> Beep | None:
        s = self.settings
        both_on = True
        for k in (0, 1):
            block = x[k * HALF : (k + 1) * HALF]
            if float(np.abs(block).max()) <= _DIGITAL_SILENCE:
                # a lost packet or silence suppression inside the tone: neither on nor off
                both_on = False
                tr.lost += 1
                if tr.lost > _MAX_LOST:
                    return self._end(tr)
                continue
            tr.lost = 0
            p = tr.power(block)
            e = float(np.dot(block, block)) / HALF
            if p >= self._on_level * tr.level and p >= s.on_ratio * e:
                tr.misses = 0
                tr.last_on_ms = t0 + (k + 1) * 10
                tr.level = 0.9 * tr.level + 0.1 * p
            else:
                both_on = False
                tr.misses += 1
                if tr.misses >= 3:  # a lost packet (20 ms) or a phase reversal is not an end
                    return self._end(tr)
        if both_on and t0 + 20 - tr.start_ms >= 80:
            peak = self._peak() if energy >= self._min_energy else None
            if peak is None or abs(peak - tr.freq) > 2 * s.max_drift * tr.freq:
                tr.fft_misses += 1
                if tr.fft_misses >= 4:  # not one stable pure tone: speech, music, noise
                    self._tracker = None
                    return None
            else:
                tr.fft_misses = 0
        return None

    def _end(self, tr: _Tracker) -> Beep | None:
        self._tracker = None
        self._candidate = None
        if tr.last_on_ms - tr.start_ms < self.settings.min_ms - self.settings.timing_slack_ms:
            return None
        return Beep(tr.start_ms, tr.last_on_ms, round(tr.freq, 1), tr.level)
