"""G.711 against the standard's quantisation tables, rebuilt here from Table 1/2 of G.711."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from afterbeep.audio.g711 import (
    ALAW_SILENCE,
    ULAW_SILENCE,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


def _table(first: float, steps: Sequence[float]) -> tuple[list[float], list[float]]:
    """Decision thresholds and reconstruction values: 8 segments of 16 intervals.

    ``first`` is the width of the very first interval (µ-law has a half-width one
    around zero); reconstruction values are interval midpoints, except 0 for the
    µ-law interval that touches zero.
    """
    thresholds = [0.0]
    outputs: list[float] = []
    for segment, step in enumerate(steps):
        for i in range(16):
            width = first if segment == 0 and i == 0 else step
            low = thresholds[-1]
            thresholds.append(low + width)
            outputs.append(0.0 if low == 0 and first != step else low + width / 2)
    return thresholds, outputs


def _standard(
    x: npt.NDArray[np.int16], unit: int, first: float, steps: Sequence[float]
) -> npt.NDArray[np.int64]:
    """Quantise 16-bit samples per the standard: a two's complement sample x stands
    for the analogue value x + 1/2, so decision values are never hit exactly."""
    thresholds, outputs = _table(first, steps)
    analogue = (x.astype(np.float64) + 0.5) / unit
    index = np.searchsorted(np.array(thresholds), np.abs(analogue), side="right") - 1
    index = np.minimum(index, len(outputs) - 1)
    value = np.array(outputs)[index] * unit
    quantised: npt.NDArray[np.int64] = (np.sign(analogue) * value).astype(np.int64)
    return quantised


ULAW_STEPS = [2, 4, 8, 16, 32, 64, 128, 256]  # 14-bit units, decision values up to 8159
ALAW_STEPS = [2, 2, 4, 8, 16, 32, 64, 128]  # 13-bit units, decision values up to 4096


def test_ulaw_table_reference_is_the_standard_one() -> None:
    thresholds, outputs = _table(1, ULAW_STEPS)
    assert thresholds[:4] == [0, 1, 3, 5]
    assert thresholds[16:18] == [31, 35]
    assert thresholds[-1] == 8159
    assert outputs[:3] == [0, 2, 4]
    assert outputs[-1] == 8031


def test_alaw_table_reference_is_the_standard_one() -> None:
    thresholds, outputs = _table(2, ALAW_STEPS)
    assert thresholds[:3] == [0, 2, 4]
    assert thresholds[32:34] == [64, 68]
    assert thresholds[-1] == 4096
    assert outputs[:2] == [1, 3]
    assert outputs[-1] == 4032


def test_ulaw_round_trip_of_every_sample_is_the_standard_quantisation() -> None:
    got = ulaw_decode(ulaw_encode(ALL_SAMPLES)).astype(np.int64)
    want = _standard(ALL_SAMPLES, 4, 1, ULAW_STEPS)
    np.testing.assert_array_equal(got, want)


def test_alaw_round_trip_of_every_sample_is_the_standard_quantisation() -> None:
    got = alaw_decode(alaw_encode(ALL_SAMPLES)).astype(np.int64)
    want = _standard(ALL_SAMPLES, 8, 2, ALAW_STEPS)
    np.testing.assert_array_equal(got, want)


def test_ulaw_every_code_round_trips_except_negative_zero() -> None:
    again = ulaw_encode(ulaw_decode(ALL_CODES))
    differing = [c for c in range(256) if again[c] != c]
    assert differing == [0x7F]
    assert again[0x7F] == 0xFF


def test_alaw_every_code_round_trips() -> None:
    assert alaw_encode(alaw_decode(ALL_CODES)) == ALL_CODES


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [
        (0, 0xFF, 0xD5),
        (-1, 0x7F, 0x55),
        (32767, 0x80, 0xAA),
        (-32768, 0x00, 0x2A),
        (8, 0xFE, 0xD5),
        (-9, 0x7E, 0x55),
    ],
)
def test_known_codes(sample: int, ulaw: int, alaw: int) -> None:
    pcm = np.array([sample], dtype=np.int16)
    assert ulaw_encode(pcm) == bytes([ulaw])
    assert alaw_encode(pcm) == bytes([alaw])


def test_silence_constants_decode_to_the_smallest_values() -> None:
    assert ulaw_decode(bytes([ULAW_SILENCE]))[0] == 0
    assert alaw_decode(bytes([ALAW_SILENCE]))[0] == 8


def test_extremes_of_the_decoded_range() -> None:
    assert int(ulaw_decode(ALL_CODES).max()) == 32124
    assert int(ulaw_decode(ALL_CODES).min()) == -32124
    assert int(alaw_decode(ALL_CODES).max()) == 32256
    assert int(alaw_decode(ALL_CODES).min()) == -32256


def test_sign_symmetry_mirror_codes() -> None:
    """x and ~x (= -x - 1) are mirror images: same code except the sign bit."""
    positive = np.arange(0, 32768, dtype=np.int16)
    negative = ~positive
    u_pos = np.frombuffer(ulaw_encode(positive), np.uint8)
    u_neg = np.frombuffer(ulaw_encode(negative), np.uint8)
    np.testing.assert_array_equal(u_pos ^ 0x80, u_neg)
    a_pos = np.frombuffer(alaw_encode(positive), np.uint8)
    a_neg = np.frombuffer(alaw_encode(negative), np.uint8)
    np.testing.assert_array_equal(a_pos ^ 0x80, a_neg)


def test_alaw_matches_cpython_audioop() -> None:
    audioop = pytest.importorskip("audioop")
    pcm = ALL_SAMPLES.astype("<i2").tobytes()
    assert alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(pcm, 2)
    decoded = np.frombuffer(audioop.alaw2lin(ALL_CODES, 2), dtype="<i2")
    np.testing.assert_array_equal(alaw_decode(ALL_CODES), decoded)
    decoded = np.frombuffer(audioop.ulaw2lin(ALL_CODES, 2), dtype="<i2")
    np.testing.assert_array_equal(ulaw_decode(ALL_CODES), decoded)


def test_shapes_and_types() -> None:
    frame = np.zeros((2, 80), dtype=np.int16)
    assert ulaw_encode(frame) == bytes([0xFF]) * 160
    assert ulaw_encode(frame[:, ::2]) == bytes([0xFF]) * 80
    assert ulaw_encode(np.array([], dtype=np.int16)) == b""
    assert ulaw_decode(b"").shape == (0,)
    decoded = alaw_decode(memoryview(b"\xd5\xd5"))
    assert decoded.dtype == np.int16
    decoded[0] = 1  # a fresh array, not a view of the table
    assert alaw_decode(b"\xd5")[0] == 8
    with pytest.raises(TypeError):
        ulaw_encode(np.zeros(4, dtype=np.float32))
