"""G.711 µ-law (PCMU) and A-law (PCMA) codecs over int16 numpy arrays.

Both directions are single numpy table lookups: encode indexes a 65536-entry
table with the sample reinterpreted as uint16, decode indexes a 256-entry table
with the code byte.  The tables are built once, at import, from the ITU-T G.191
reference formulation (``g711.c`` of the Software Tool Library): negative
samples are folded with the one's complement (``~x``), so ``x`` and ``~x`` get
mirror codes and 0 / -1 land on the two µ-law zero codes (0xFF / 0x7F).

Written here instead of wrapping ``aiortp.codecs.g711`` (0.8.0) because that
module is not G.711: its A-law has the sign bit inverted (silence encodes to
0x55 instead of 0xD5, so every code differs from what a real phone sends), and
its µ-law folds negatives with ``-x``, which moves 381 decision boundaries off
the standard's.  It also takes bytes, not arrays.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALAW_SILENCE",
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "ULAW_SILENCE",
    "alaw_decode",
    "alaw_encode",
    "ulaw_decode",
    "ulaw_encode",
]

SAMPLE_RATE = 8000
SAMPLES_PER_FRAME = 160  # 20 ms at 8 kHz
ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5

_ULAW_BIAS = 33  # in 14-bit units (0x84 at 16 bits)
_ULAW_MAX = 0x1FFF


# The four functions below follow G.191 ``g711.c`` step by step, vectorised
# over every possible input so the lookup tables are built without a Python loop.


def _ulaw_compress(x: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    magnitude = (np.where(x < 0, ~x, x) >> 2) + _ULAW_BIAS
    magnitude = np.minimum(magnitude, _ULAW_MAX)
    segment = np.ones_like(magnitude)  # 1..8: one more than the bit length of magnitude >> 6
    for shift in range(6, 13):
        segment += (magnitude >> shift) > 0
    high = 8 - segment
    low = 0x0F - ((magnitude >> segment) & 0x0F)
    code = (high << 4) | low
    table: npt.NDArray[np.uint8] = np.where(x >= 0, code | 0x80, code).astype(np.uint8)
    return table


def _ulaw_expand(code: npt.NDArray[np.int32]) -> npt.NDArray[np.int16]:
    sign = np.where(code < 0x80, -1, 1)
    inverted = ~code & 0xFF
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    step = 4 << (exponent + 1)
    value = (0x80 << exponent) + step * mantissa + step // 2 - 4 * _ULAW_BIAS
    table: npt.NDArray[np.int16] = (sign * value).astype(np.int16)
    return table


def _alaw_compress(x: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    ix = np.where(x < 0, ~x, x) >> 4  # 0 <= ix < 2048
    exponent = np.zeros_like(ix)  # 0 below 16, 1 for 16..31, 2 for 32..63, ... 7
    for shift in range(4, 11):
        exponent += (ix >> shift) > 0
    mantissa = np.where(exponent > 0, (ix >> np.maximum(exponent - 1, 0)) - 16, ix)
    code = (exponent << 4) + mantissa
    table: npt.NDArray[np.uint8] = (np.where(x >= 0, code | 0x80, code) ^ 0x55).astype(np.uint8)
    return table


def _alaw_expand(code: npt.NDArray[np.int32]) -> npt.NDArray[np.int16]:
    ix = (code ^ 0x55) & 0x7F
    exponent = ix >> 4
    mantissa = ix & 0x0F
    mantissa = np.where(exponent > 0, mantissa + 16, mantissa)
    mantissa = (mantissa << 4) + 8
    mantissa = np.where(exponent > 1, mantissa << np.maximum(exponent - 1, 0), mantissa)
    table: npt.NDArray[np.int16] = np.where(code > 0x7F, mantissa, -mantissa).astype(np.int16)
    return table


# index = sample viewed as uint16, so 0..32767 then -32768..-1
_ALL_SAMPLES = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
_ALL_CODES = np.arange(256, dtype=np.int32)
_ULAW_ENCODE = _ulaw_compress(_ALL_SAMPLES)
_ULAW_DECODE = _ulaw_expand(_ALL_CODES)
_ALAW_ENCODE = _alaw_compress(_ALL_SAMPLES)
_ALAW_DECODE = _alaw_expand(_ALL_CODES)
for _table in (_ULAW_ENCODE, _ULAW_DECODE, _ALAW_ENCODE, _ALAW_DECODE):
    _table.setflags(write=False)


def _as_index(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.uint16]:
    if pcm.dtype != np.int16:
        raise TypeError(f"G.711 encode takes int16 samples, not {pcm.dtype}")
    return np.ascontiguousarray(pcm).reshape(-1).view(np.uint16)


def _codes(data: bytes | bytearray | memoryview) -> npt.NDArray[np.uint8]:
    return np.frombuffer(data, dtype=np.uint8)


def ulaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """Encode int16 samples (any shape, flattened) to µ-law bytes."""
    return _ULAW_ENCODE.take(_as_index(pcm)).tobytes()


def ulaw_decode(data: bytes | bytearray | memoryview) -> npt.NDArray[np.int16]:
    """Decode µ-law bytes to a new int16 array, one sample per byte."""
    return _ULAW_DECODE.take(_codes(data))


def alaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """Encode int16 samples (any shape, flattened) to A-law bytes."""
    return _ALAW_ENCODE.take(_as_index(pcm)).tobytes()


def alaw_decode(data: bytes | bytearray | memoryview) -> npt.NDArray[np.int16]:
    """Decode A-law bytes to a new int16 array, one sample per byte."""
    return _ALAW_DECODE.take(_codes(data))
