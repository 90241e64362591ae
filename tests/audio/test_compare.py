from __future__ import annotations

import math

import numpy as np
import pytest

from afterbeep.audio.compare import align, compare, snr_db
from afterbeep.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from afterbeep.audio.tones import silence, speech_like

REFERENCE = speech_like(4000, seed=11)


def _ulaw(pcm: np.ndarray) -> np.ndarray:
    return ulaw_decode(ulaw_encode(pcm))


@pytest.mark.parametrize("lag", [0, 1, 160, 2345, -37, -800])
def test_align_finds_a_known_lag(lag: int) -> None:
    if lag >= 0:
        received = np.concatenate([np.zeros(lag, np.int16), _ulaw(REFERENCE)])
    else:
        received = _ulaw(REFERENCE)[-lag:]
    assert align(REFERENCE, received, max_lag_samples=4000) == lag


def test_align_looks_no_further_than_asked() -> None:
    received = np.concatenate([silence(500), REFERENCE])  # 4000 samples late
    assert align(REFERENCE, received, max_lag_samples=8000) == 4000
    assert align(REFERENCE, received, max_lag_samples=1000) != 4000


def test_snr() -> None:
    assert snr_db(REFERENCE, REFERENCE) == math.inf
    assert snr_db(REFERENCE, (REFERENCE // 2).astype(np.int16)) == pytest.approx(6.02, abs=0.05)
    assert snr_db(silence(20), REFERENCE[:160]) == -math.inf


@pytest.mark.parametrize("level_dbfs", [-10.0, -20.0, -30.0])
def test_g711_round_trip_snr_is_that_of_the_standard(level_dbfs: float) -> None:
    reference = speech_like(3000, seed=12, level_dbfs=level_dbfs)
    for codec in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        received = codec[1](codec[0](reference))
        assert 35 <= snr_db(reference, received) <= 39


def test_compare_a_delayed_recording_that_lost_its_tail() -> None:
    received = np.concatenate([silence(60), _ulaw(REFERENCE)[: -8 * 100]])
    result = compare(REFERENCE, received)
    assert result.lag == 480
    assert 35 <= result.snr_db <= 39
    assert result.missing_head_ms == 0
    assert result.missing_tail_ms == pytest.approx(100)
    assert result.extra_ms == pytest.approx(60)


def test_compare_extra_audio_after_and_head_missing() -> None:
    received = np.concatenate([_ulaw(REFERENCE)[8 * 30 :], silence(500)])
    result = compare(REFERENCE, received)
    assert result.lag == -240
    assert result.missing_head_ms == pytest.approx(30)
    assert result.missing_tail_ms == 0
    assert result.extra_ms == pytest.approx(500)
    assert result.snr_db > 35


def test_compare_identical() -> None:
    result = compare(REFERENCE, REFERENCE.copy())
    assert (result.lag, result.snr_db, result.missing_tail_ms, result.extra_ms) == (
        0,
        math.inf,
        0,
        0,
    )


def test_unrelated_audio_does_not_match() -> None:
    other = speech_like(4000, seed=99)
    result = compare(REFERENCE, other)
    assert result.snr_db < 3
    noise = np.random.default_rng(0).integers(-3000, 3000, len(REFERENCE)).astype(np.int16)
    assert compare(REFERENCE, noise).snr_db < 3


def test_a_gap_in_the_middle_lowers_the_snr() -> None:
    received = _ulaw(REFERENCE).copy()
    energy = np.square(REFERENCE.astype(np.float64)).reshape(-1, 160).sum(axis=1)
    loudest = int(np.argmax(energy)) * 160
    received[loudest : loudest + 160] = 0  # one lost 20 ms packet played as silence
    result = compare(REFERENCE, received)
    assert result.lag == 0
    assert result.snr_db < 30


def test_empty_received() -> None:
    result = compare(REFERENCE, np.zeros(0, dtype=np.int16))
    assert result.missing_tail_ms == pytest.approx(4000)
    assert result.snr_db == -math.inf
