"""The app_amd baseline follows the documented default state machine."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from afterbeep.audio.amd import AnsweredBy
from afterbeep.audio.app_amd import AppAmd, AppAmdSettings, classify


def level(amplitude: int, ms: int) -> npt.NDArray[np.int16]:
    """A 1 kHz square-ish signal whose mean absolute sample is `amplitude` (0 is silence)."""
    n = ms * 8
    return (amplitude * np.where(np.arange(n) % 8 < 4, 1, -1)).astype(np.int16)


def test_defaults_are_the_asterisk_ones() -> None:
    s = AppAmdSettings()
    assert (s.total_analysis_time, s.initial_silence, s.greeting, s.after_greeting_silence) == (5000, 2500, 1500, 800)
    assert (s.minimum_word_length, s.between_words_silence, s.maximum_number_of_words) == (100, 50, 2)
    assert (s.maximum_word_length, s.silence_threshold) == (5000, 256)


def test_initial_silence_is_a_machine() -> None:
    decisions = classify(level(0, 3000))
    assert [d.answered_by for d in decisions] == [AnsweredBy.MACHINE_START, AnsweredBy.MACHINE_END_OTHER]
    assert decisions[-1].cause.startswith("INITIALSILENCE") and decisions[-1].detection_ms == 2500


def test_one_word_then_silence_is_human() -> None:
    decisions = classify(np.concatenate([level(0, 300), level(2000, 400), level(0, 1500)]))
    assert [d.answered_by for d in decisions] == [AnsweredBy.HUMAN]
    assert decisions[0].detection_ms == 300 + 400 + 800


def test_two_words_are_a_machine() -> None:
    audio = np.concatenate([level(0, 300), level(2000, 300), level(0, 200), level(2000, 300), level(0, 1500)])
    decisions = classify(audio)
    assert decisions[-1].answered_by is AnsweredBy.MACHINE_END_OTHER
    assert decisions[-1].cause.startswith("MAXWORDS")


def test_a_long_greeting_is_a_machine() -> None:
    decisions = classify(np.concatenate([level(0, 300), level(2000, 1800)]))
    assert decisions[-1].cause.startswith("LONGGREETING") and decisions[-1].detection_ms == 300 + 1500


def test_quiet_audio_below_the_threshold_is_silence() -> None:
    decisions = classify(level(200, 3000))
    assert decisions[-1].cause.startswith("INITIALSILENCE")


def test_streaming_feed_matches_classify() -> None:
    audio = np.concatenate([level(0, 300), level(2000, 400), level(0, 1500)])
    detector = AppAmd()
    got = []
    for i in range(0, len(audio), 123):
        got.extend(detector.feed(audio[i : i + 123]))
    assert got == classify(audio)
    assert detector.feed(audio) == []
