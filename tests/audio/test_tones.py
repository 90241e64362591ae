from __future__ import annotations

import numpy as np
import pytest

from afterbeep.audio.levels import rms_dbfs
from afterbeep.audio.tones import beep, dual_tone, sample_count, silence, speech_like, tone
from tests.audio.signals import dominant_hz


def test_tone_frequency_length_and_peak() -> None:
    pcm = tone(697, 400, amplitude=0.5, ramp_ms=0)
    assert pcm.dtype == np.int16
    assert len(pcm) == 3200
    assert dominant_hz(pcm, 8000) == pytest.approx(697, abs=2.5)
    assert int(np.abs(pcm).max()) == pytest.approx(0.5 * 32767, abs=2)
    assert pcm[0] == 0


def test_tone_at_another_rate() -> None:
    pcm = tone(1000, 100, rate=16000)
    assert len(pcm) == 1600
    assert dominant_hz(pcm, 16000) == pytest.approx(1000, abs=10)


def test_ramps_start_and_end_quietly() -> None:
    pcm = tone(1000, 200, amplitude=1.0, ramp_ms=5)
    assert np.abs(pcm[:4]).max() < 1500
    assert np.abs(pcm[-4:]).max() < 1500
    assert np.abs(pcm[100:-100]).max() > 32000


def test_dual_tone_holds_both_frequencies_within_the_amplitude() -> None:
    pcm = dual_tone(770, 1477, 500, amplitude=0.8)
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    peaks = sorted(np.argsort(spectrum)[-2:] * 8000 / len(pcm))
    assert peaks == pytest.approx([770, 1477], abs=2)
    assert np.abs(pcm).max() <= 0.8 * 32767 + 1


def test_beep_is_one_kilohertz_for_a_quarter_second() -> None:
    pcm = beep()
    assert len(pcm) == 2000
    assert dominant_hz(pcm, 8000) == pytest.approx(1000, abs=4)
    assert -20 < rms_dbfs(pcm) < -10


def test_silence() -> None:
    pcm = silence(20)
    assert pcm.dtype == np.int16
    assert pcm.tolist() == [0] * 160
    assert len(silence(0)) == 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        tone(1000, 10, amplitude=1.5)
    with pytest.raises(ValueError):
        sample_count(-1)


def test_speech_like_is_deterministic_at_its_level() -> None:
    a = speech_like(2000, seed=4, level_dbfs=-26)
    assert len(a) == 16000
    assert rms_dbfs(a) == pytest.approx(-26, abs=0.05)
    np.testing.assert_array_equal(a, speech_like(2000, seed=4, level_dbfs=-26))
    assert not np.array_equal(a, speech_like(2000, seed=5, level_dbfs=-26))
