"""Constants and conversions shared by the audio modules; numpy only."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

TELEPHONY_RATE = 8000
FRAME_MS = 20
FULL_SCALE = 32767


def mix_to_mono(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Average the channels of a (frames, channels) array; a 1-D array is returned as is."""
    if samples.ndim == 1:
        return samples
    mono: npt.NDArray[np.float32] = samples.mean(axis=1, dtype=np.float32)
    return mono


def float_to_int16(samples: npt.NDArray[np.floating]) -> npt.NDArray[np.int16]:
    """Scale [-1, 1] floats to int16, rounding and clipping what lies outside."""
    scaled = np.rint(np.asarray(samples, dtype=np.float64) * FULL_SCALE)
    pcm: npt.NDArray[np.int16] = np.clip(scaled, -32768, 32767).astype(np.int16)
    return pcm
