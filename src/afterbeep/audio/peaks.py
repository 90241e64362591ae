"""Waveform peaks: the loudest sample of each of `bins` equal slices, scaled to 0..1."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FULL_SCALE = 32768.0


def peaks(pcm: npt.NDArray[np.int16], bins: int = 160) -> list[float]:
    """`bins` values (fewer when there are fewer samples); an empty recording gives []."""
    if bins < 1:
        raise ValueError("bins must be at least 1")
    if pcm.size == 0:
        return []
    bins = min(bins, int(pcm.size))
    edges = np.linspace(0, pcm.size, bins + 1).astype(np.int64)
    magnitude = np.abs(pcm.astype(np.int32))
    tops = np.maximum.reduceat(magnitude, edges[:-1])
    return [round(min(float(v) / FULL_SCALE, 1.0), 3) for v in tops]
