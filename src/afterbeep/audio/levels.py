"""Signal levels and silence: RMS in dBFS, a streaming silence detector, trimming.

Silence follows Asterisk's rule (``dsp.c``): a frame is silent when the mean
absolute sample value is below a linear threshold (0..32767, Asterisk's
``silencethreshold`` defaults are in the low hundreds).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from afterbeep.audio.pcm import FRAME_MS, TELEPHONY_RATE

DEFAULT_SILENCE_THRESHOLD = 200


def rms_dbfs(pcm: npt.NDArray[np.int16]) -> float:
    """RMS level relative to full scale (a full-scale square wave is 0 dBFS, a sine -3).
    ``-inf`` for silence or no samples."""
    if pcm.size == 0:
        return -math.inf
    rms = math.sqrt(float(np.mean(np.square(pcm, dtype=np.float64))))
    return 20 * math.log10(rms / 32768) if rms > 0 else -math.inf


def mean_abs(pcm: npt.NDArray[np.int16]) -> float:
    """The mean absolute sample value that ``threshold`` is compared with."""
    return float(np.mean(np.abs(pcm, dtype=np.int32))) if pcm.size else 0.0


def is_silent(pcm: npt.NDArray[np.int16], threshold: int = DEFAULT_SILENCE_THRESHOLD) -> bool:
    return mean_abs(pcm) < threshold


class SilenceDetector:
    """Fed consecutive frames, says how long the current run of silence is.

    No I/O and no clock: time is the number of samples fed.
    """

    def __init__(
        self,
        threshold: int = DEFAULT_SILENCE_THRESHOLD,
        silence_ms: int = 5000,
        rate: int = TELEPHONY_RATE,
    ) -> None:
        if not 0 <= threshold <= 32767:
            raise ValueError(f"threshold {threshold} is outside 0..32767")
        self.threshold = threshold
        self.silence_ms = silence_ms
        self.rate = rate
        self._silent_samples = 0
        self._heard_sound = False

    def feed(self, frame: npt.NDArray[np.int16]) -> int:
        """Account for one frame (any length; 20 ms usual) and return ``silence_run_ms``."""
        if is_silent(frame, self.threshold):
            self._silent_samples += frame.size
        else:
            self._silent_samples = 0
            self._heard_sound = True
        return self.silence_run_ms

    @property
    def silence_run_ms(self) -> int:
        """Length of the silence that the last frame ended, 0 if it was sound."""
        return self._silent_samples * 1000 // self.rate

    @property
    def reached(self) -> bool:
        """The current silence has lasted ``silence_ms``."""
        return self.silence_run_ms >= self.silence_ms

    @property
    def heard_sound(self) -> bool:
        """Whether any frame since the start (or ``reset``) was above the threshold."""
        return self._heard_sound

    def reset(self) -> None:
        self._silent_samples = 0
        self._heard_sound = False


def trim_trailing_silence(
    pcm: npt.NDArray[np.int16],
    threshold: int = DEFAULT_SILENCE_THRESHOLD,
    keep_ms: int = 200,
    rate: int = TELEPHONY_RATE,
) -> npt.NDArray[np.int16]:
    """Cut the silence at the end, keeping ``keep_ms`` of it after the last 20 ms frame
    with sound.  All silence gives an empty array."""
    frame = rate * FRAME_MS // 1000
    usable = pcm.size // frame * frame
    loud_end = 0
    if usable:
        means = np.abs(pcm[:usable].reshape(-1, frame), dtype=np.int32).mean(axis=1)
        loud = np.flatnonzero(means >= threshold)
        if loud.size:
            loud_end = (int(loud[-1]) + 1) * frame
    if usable < pcm.size and not is_silent(pcm[usable:], threshold):
        loud_end = pcm.size
    return pcm[: min(pcm.size, loud_end + keep_ms * rate // 1000) if loud_end else 0]
