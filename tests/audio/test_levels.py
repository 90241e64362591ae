from __future__ import annotations

import math

import numpy as np
import pytest

from afterbeep.audio.levels import (
    SilenceDetector,
    is_silent,
    mean_abs,
    rms_dbfs,
    trim_trailing_silence,
)
from afterbeep.audio.tones import silence, speech_like, tone

FRAME = 160


def _level(mean_abs_value: int, ms: int) -> np.ndarray:
    """A square wave whose mean absolute value is exactly ``mean_abs_value``."""
    n = ms * 8
    return np.where(np.arange(n) % 2 == 0, mean_abs_value, -mean_abs_value).astype(np.int16)


def test_rms_dbfs() -> None:
    assert rms_dbfs(tone(1000, 1000, amplitude=1.0, ramp_ms=0)) == pytest.approx(-3.01, abs=0.01)
    assert rms_dbfs(_level(32767, 20)) == pytest.approx(0, abs=0.001)
    assert rms_dbfs(_level(3277, 20)) == pytest.approx(-20, abs=0.01)
    assert rms_dbfs(silence(20)) == -math.inf
    assert rms_dbfs(np.zeros(0, dtype=np.int16)) == -math.inf


def test_extreme_samples_do_not_overflow() -> None:
    pcm = np.full(160, -32768, dtype=np.int16)
    assert mean_abs(pcm) == 32768
    assert rms_dbfs(pcm) == 0


def test_threshold_is_on_the_mean_absolute_value() -> None:
    assert is_silent(_level(199, 20), threshold=200)
    assert not is_silent(_level(200, 20), threshold=200)


def test_detector_counts_the_current_silence_run() -> None:
    detector = SilenceDetector(threshold=200, silence_ms=100)
    assert not detector.heard_sound
    assert detector.feed(_level(50, 20)) == 20
    assert detector.feed(_level(50, 20)) == 40
    assert detector.feed(_level(1000, 20)) == 0
    assert detector.heard_sound
    runs = [detector.feed(_level(150, 20)) for _ in range(5)]
    assert runs == [20, 40, 60, 80, 100]
    assert detector.reached
    assert detector.feed(_level(5000, 20)) == 0
    assert not detector.reached


def test_detector_on_speech_then_silence() -> None:
    speech = speech_like(2000, seed=7, level_dbfs=-20)
    detector = SilenceDetector(silence_ms=3000)
    audio = np.concatenate([speech, silence(3000)])
    reached_at = None
    for i in range(0, len(audio), FRAME):
        detector.feed(audio[i : i + FRAME])
        if detector.reached and reached_at is None:
            reached_at = i + FRAME
    assert reached_at is not None
    assert detector.heard_sound
    # speech_like has pauses; the run may start a little before the speech ends
    assert 4800 * 8 <= reached_at <= 5000 * 8


def test_detector_reset_and_other_frame_sizes() -> None:
    detector = SilenceDetector(rate=16000, silence_ms=30)
    detector.feed(_level(1000, 10))
    assert detector.feed(np.zeros(480, dtype=np.int16)) == 30
    assert detector.reached
    detector.reset()
    assert (detector.silence_run_ms, detector.heard_sound, detector.reached) == (0, False, False)
    with pytest.raises(ValueError):
        SilenceDetector(threshold=40000)


def test_trim_keeps_sound_plus_the_margin() -> None:
    sound = _level(3000, 1000)
    trimmed = trim_trailing_silence(np.concatenate([sound, _level(20, 2000)]), keep_ms=200)
    assert len(trimmed) == 8000 + 1600
    np.testing.assert_array_equal(trimmed[:8000], sound)


def test_trim_without_trailing_silence_or_with_little_of_it() -> None:
    sound = _level(3000, 500)
    np.testing.assert_array_equal(trim_trailing_silence(sound), sound)
    short_tail = np.concatenate([sound, silence(100)])
    np.testing.assert_array_equal(trim_trailing_silence(short_tail, keep_ms=200), short_tail)


def test_trim_sound_in_a_partial_last_frame_is_kept() -> None:
    pcm = np.concatenate([silence(1000), _level(3000, 20)[:50]])
    np.testing.assert_array_equal(trim_trailing_silence(pcm), pcm)


def test_trim_all_silence_is_empty() -> None:
    assert len(trim_trailing_silence(_level(100, 3000))) == 0
    assert len(trim_trailing_silence(np.zeros(0, dtype=np.int16))) == 0
