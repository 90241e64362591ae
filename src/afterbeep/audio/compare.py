"""Compare received audio with the audio that was sent: lag, SNR, missing and extra audio.

Meant for tests that push audio through a call (RTP, G.711, jitter buffer,
recording) and check what came out.  Lag comes from the peak of the FFT
cross-correlation within ``max_lag_samples``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from afterbeep.audio.pcm import TELEPHONY_RATE

Signal = npt.NDArray[np.int16] | npt.NDArray[np.floating]


@dataclass(frozen=True, slots=True)
class Comparison:
    """``lag`` > 0: the reference starts ``lag`` samples into ``received``.
    ``missing_head_ms`` / ``missing_tail_ms``: reference audio absent from ``received``
    at the start / end; ``extra_ms``: received audio outside the reference."""

    lag: int
    snr_db: float
    missing_head_ms: float
    missing_tail_ms: float
    extra_ms: float


def align(reference: Signal, received: Signal, max_lag_samples: int) -> int:
    """The lag in ``-max_lag_samples..max_lag_samples`` where
    ``received[n + lag]`` best matches ``reference[n]``."""
    ref = np.asarray(reference, dtype=np.float64)
    rec = np.asarray(received, dtype=np.float64)
    if ref.size == 0 or rec.size == 0:
        return 0
    size = 1 << (ref.size + rec.size - 1).bit_length()
    spectrum = np.conj(np.fft.rfft(ref, size)) * np.fft.rfft(rec, size)
    correlation = np.fft.irfft(spectrum, size)  # index k: lag k; index size - k: lag -k
    low = max(-max_lag_samples, -(ref.size - 1))
    high = min(max_lag_samples, rec.size - 1)
    if low > high:
        return 0
    lags = np.arange(low, high + 1)
    return int(lags[int(np.argmax(correlation[lags % size]))])


def snr_db(reference: Signal, received_aligned: Signal) -> float:
    """Signal-to-noise ratio of ``received_aligned`` against ``reference`` over their
    common length (noise = the difference).  ``inf`` when identical, ``-inf`` for
    a silent reference."""
    n = min(len(reference), len(received_aligned))
    ref = np.asarray(reference[:n], dtype=np.float64)
    rec = np.asarray(received_aligned[:n], dtype=np.float64)
    signal = float(np.sum(ref**2))
    noise = float(np.sum((rec - ref) ** 2))
    if signal == 0:
        return -math.inf
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise)


def compare(
    reference: Signal,
    received: Signal,
    *,
    rate: int = TELEPHONY_RATE,
    max_lag_ms: int = 2000,
) -> Comparison:
    """Align ``received`` to ``reference``, then measure SNR over the overlap and what
    is missing or extra around it."""
    lag = align(reference, received, max_lag_ms * rate // 1000)
    start = max(0, -lag)  # first reference sample present in received
    end = max(start, min(len(reference), len(received) - lag))  # one past the last
    overlap = end - start
    snr = snr_db(reference[start:end], received[start + lag : end + lag])
    to_ms = 1000 / rate
    return Comparison(
        lag=lag,
        snr_db=snr,
        missing_head_ms=start * to_ms,
        missing_tail_ms=(len(reference) - end) * to_ms,
        extra_ms=(len(received) - overlap) * to_ms,
    )
