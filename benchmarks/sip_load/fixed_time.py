"""The fixed-time caller's arithmetic: when it speaks, where the beep is in what it heard, and
whether a message holds the start of what it said. Pure functions over arrays, no I/O.

The caller knows the greeting: it speaks ``SPEAK_AFTER_BEEP_S`` after the nominal end of the
prompts (greeting, instructions, beep) counted from the answer (the 200 OK), whether or not
the beep has come. A service that plays its prompts late then records the start of the speech
too late, or not at all, as a person calling it would find.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz: the packet time both targets use
SPEAK_AFTER_BEEP_S = 0.3
MIN_BEEP_SCORE = 0.8  # normalised cross-correlation of a beep heard through G.711: ~1.0
FIRST_SECOND = RATE
FRAME_MIN_SNR = 100.0  # a frame is held when its error energy is under 1 % of its energy
SILENT_FRAME_ENERGY = float(FRAME_SAMPLES * 16**2)  # a reference frame quieter is "silence"

Pcm = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class Nominal:
    """Seconds after the answer: the beep's first sample, its end, and when the caller speaks."""

    beep_start: float
    beep_end: float
    speak_at: float

    @classmethod
    def of(
        cls, prompts: Sequence[int], beep: int, frame_samples: int | None = FRAME_SAMPLES
    ) -> Nominal:
        """From the lengths in samples of the prompts played before the beep and of the beep.

        ``frame_samples``: each prompt takes whole frames (afterbeep pads a prompt's last
        frame with silence); ``None`` when prompts follow one another sample for sample
        (Asterisk's smoother packs the next file's audio into the partial frame)."""

        def length(samples: int) -> int:
            if frame_samples is None:
                return samples
            return -(-samples // frame_samples) * frame_samples

        start = sum(length(n) for n in prompts)
        end = start + length(beep)
        return cls(start / RATE, end / RATE, end / RATE + SPEAK_AFTER_BEEP_S)

    @property
    def speak_at_ms(self) -> int:
        """When the caller's speech starts, on its 20 ms packet grid."""
        return -(-round(self.speak_at * 1000) // 20) * 20


@dataclass(frozen=True, slots=True)
class BeepFound:
    index: int  # first sample of the beep in the stream searched
    score: float  # normalised cross-correlation at that sample, 1.0 for an exact copy


def find_beep(stream: Pcm, template: Pcm, min_score: float = MIN_BEEP_SCORE) -> BeepFound | None:
    """Where ``template`` (the beep as sent, through G.711) starts in ``stream`` (the audio
    received, frames one after another), by normalised cross-correlation: the sample where
    ``stream[k:k+len(template)]`` is most like the template whatever its level. ``None`` when
    no window scores ``min_score`` (no beep heard: the call failed or its packets were lost)."""
    n, m = len(stream), len(template)
    if m == 0 or n < m:
        return None
    x = np.asarray(stream, dtype=np.float64)
    t = np.asarray(template, dtype=np.float64)
    t_energy = float(np.dot(t, t))
    if t_energy == 0:
        return None
    size = 1 << (n + m - 1).bit_length()
    spectrum = np.fft.rfft(x, size) * np.conj(np.fft.rfft(t, size))
    corr = np.fft.irfft(spectrum, size)[: n - m + 1]  # corr[k] = sum_j x[k+j] t[j]
    cumulative = np.concatenate(([0.0], np.cumsum(x * x)))
    window_energy = cumulative[m:] - cumulative[: n - m + 1]
    floor = t_energy * 1e-6  # silence scores 0, not 0/0
    score = corr / np.sqrt(np.maximum(window_energy, floor) * t_energy)
    best = int(np.argmax(score))
    if score[best] < min_score:
        return None
    return BeepFound(best, float(score[best]))


@dataclass(frozen=True, slots=True)
class Arrivals:
    """What a caller received, in arrival order: the samples of every audio packet one after
    another, where each packet's first sample is, and when it arrived (seconds)."""

    pcm: Pcm
    starts: npt.NDArray[np.int64]
    times: npt.NDArray[np.float64]

    def time_of(self, index: int) -> float:
        """When sample ``index`` reached the caller: its packet's arrival plus its place in it."""
        packet = int(np.searchsorted(self.starts, index, side="right")) - 1
        return float(self.times[packet]) + (index - int(self.starts[packet])) / RATE


def beep_lateness(
    heard: Arrivals, answered: float, nominal: Nominal, template: Pcm
) -> float | None:
    """Seconds the beep's first sample reached the caller after it was due (``answered`` +
    ``nominal.beep_start``); negative when early, ``None`` when no beep was heard."""
    found = find_beep(heard.pcm, template)
    if found is None:
        return None
    return heard.time_of(found.index) - answered - nominal.beep_start


def first_second_missing_ms(reference: Pcm, received: Pcm, lag: int) -> float:
    """Milliseconds of the first second of ``reference`` (the caller's speech) that
    ``received`` (the message, ``reference[n]`` at ``received[n + lag]``, the lag
    `audio.compare` finds) does not hold, counted in 20 ms frames: a frame is missing when
    any of it falls outside the message, or when it differs from what was said (error energy
    over 1 % of the frame's, or sound where the caller was silent)."""
    frames = min(FIRST_SECOND, len(reference)) // FRAME_SAMPLES
    missing = 0
    for frame in range(frames):
        start = frame * FRAME_SAMPLES
        at = start + lag
        if at < 0 or at + FRAME_SAMPLES > len(received):
            missing += 1
            continue
        ref = reference[start : start + FRAME_SAMPLES].astype(np.float64)
        got = received[at : at + FRAME_SAMPLES].astype(np.float64)
        energy = float(np.dot(ref, ref))
        error = float(np.dot(got - ref, got - ref))
        if error > max(energy / FRAME_MIN_SNR, SILENT_FRAME_ENERGY):
            missing += 1
    return missing * FRAME_SAMPLES * 1000 / RATE


def percentiles_ms(values: Sequence[float]) -> dict[str, float]:
    """n, p50, p99 and max of ``values`` (seconds) in milliseconds; only n when empty."""
    if not values:
        return {"n": 0}
    ms = np.asarray(values, dtype=np.float64) * 1000
    p50, p99 = np.percentile(ms, [50, 99])
    return {"n": len(values), "p50": float(p50), "p99": float(p99), "max": float(ms.max())}
