"""Known test signals and a frequency probe, shared by the audio tests."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

STEREO_SECONDS = 3
STEREO_RATE = 44100
LEFT_HZ = 440.0
RIGHT_HZ = 660.0


def sine(
    freq_hz: float, seconds: float, rate: int, amplitude: float = 0.3
) -> npt.NDArray[np.float32]:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def dominant_hz(samples: npt.NDArray[np.generic], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(np.asarray(samples, dtype=np.float64)))
    return float(np.argmax(spectrum) * rate / len(samples))
