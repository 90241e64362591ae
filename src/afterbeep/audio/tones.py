"""Generated telephony signals as int16 PCM: tones, the voicemail beep, silence, test speech."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from afterbeep.audio.pcm import TELEPHONY_RATE, float_to_int16

BEEP_HZ = 1000.0
BEEP_MS = 250
DEFAULT_AMPLITUDE = 0.25  # of full scale, about -12 dBFS peak
DEFAULT_RAMP_MS = 5.0


def sample_count(ms: float, rate: int = TELEPHONY_RATE) -> int:
    """Samples in ``ms`` milliseconds at ``rate``, rounded to the nearest sample."""
    if ms < 0:
        raise ValueError(f"negative duration: {ms} ms")
    return round(ms * rate / 1000)


def silence(ms: float, rate: int = TELEPHONY_RATE) -> npt.NDArray[np.int16]:
    return np.zeros(sample_count(ms, rate), dtype=np.int16)


def tone(
    freq_hz: float,
    ms: float,
    rate: int = TELEPHONY_RATE,
    amplitude: float = DEFAULT_AMPLITUDE,
    ramp_ms: float = DEFAULT_RAMP_MS,
) -> npt.NDArray[np.int16]:
    """A sine at ``amplitude`` (peak, fraction of full scale), with raised-cosine
    ramps of ``ramp_ms`` at both ends so it starts and stops without a click."""
    return dual_tone(freq_hz, None, ms, rate, amplitude, ramp_ms)


def dual_tone(
    low_hz: float,
    high_hz: float | None,
    ms: float,
    rate: int = TELEPHONY_RATE,
    amplitude: float = DEFAULT_AMPLITUDE,
    ramp_ms: float = DEFAULT_RAMP_MS,
) -> npt.NDArray[np.int16]:
    """Two sines of equal level whose sum peaks at ``amplitude`` (DTMF, ringback)."""
    if not 0 <= amplitude <= 1:
        raise ValueError(f"amplitude {amplitude} is outside 0..1")
    t = np.arange(sample_count(ms, rate), dtype=np.float64) / rate
    freqs = [low_hz] if high_hz is None else [low_hz, high_hz]
    signal = sum(np.sin(2 * np.pi * f * t) for f in freqs) * (amplitude / len(freqs))
    return float_to_int16(_ramped(np.asarray(signal, dtype=np.float64), rate, ramp_ms))


def beep(rate: int = TELEPHONY_RATE, amplitude: float = DEFAULT_AMPLITUDE) -> npt.NDArray[np.int16]:
    """The voicemail beep: 1000 Hz for 250 ms."""
    return tone(BEEP_HZ, BEEP_MS, rate, amplitude)


def speech_like(
    ms: float, rate: int = TELEPHONY_RATE, *, seed: int = 0, level_dbfs: float = -20.0
) -> npt.NDArray[np.int16]:
    """A deterministic test signal with speech's rough shape: a voiced part (harmonics
    of a wandering 100-200 Hz pitch) plus noise, under a 3-5 Hz syllable envelope
    with pauses.  Not periodic, so cross-correlation finds one clear lag."""
    rng = np.random.default_rng(seed)
    n = sample_count(ms, rate)
    t = np.arange(n, dtype=np.float64) / rate
    pitch = 150 + 50 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12) if k * 200 < rate / 2)
    noise = np.convolve(rng.standard_normal(n), np.ones(4) / 4, mode="same")
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 2 * np.pi)), 0, 1)
    signal = (np.asarray(voiced) + 0.3 * noise) * syllables
    rms = float(np.sqrt(np.mean(signal**2))) if n else 0.0
    if rms > 0:
        signal *= 10 ** (level_dbfs / 20) / rms
    return float_to_int16(signal)


def _ramped(signal: npt.NDArray[np.float64], rate: int, ramp_ms: float) -> npt.NDArray[np.float64]:
    ramp = min(sample_count(ramp_ms, rate), len(signal) // 2)
    if ramp > 0:
        window = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        signal[:ramp] *= window
        signal[-ramp:] *= window[::-1]
    return signal
