"""The beep detector on generated tones, ringback and speech-like signals."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from afterbeep.audio import tones
from afterbeep.audio.beep import Beep, BeepDetector


def noisy(*parts: npt.NDArray[np.int16], seed: int = 0) -> npt.NDArray[np.int16]:
    signal = np.concatenate(parts).astype(np.float64)
    signal += np.random.default_rng(seed).normal(0, 40, len(signal))
    return np.clip(signal, -32768, 32767).astype(np.int16)


def beeps(signal: npt.NDArray[np.int16]) -> list[Beep]:
    return BeepDetector().feed(signal)


@pytest.mark.parametrize("freq", [400, 850, 1000, 1400, 2000, 2450])
@pytest.mark.parametrize("ms", [150, 250, 1000])
def test_a_tone_after_speech_is_a_beep_whose_end_is_found_within_100_ms(freq: int, ms: int) -> None:
    lead = 1700 + freq % 300
    signal = noisy(tones.speech_like(1200, seed=freq), tones.silence(lead - 1200), tones.tone(freq, ms), tones.silence(600))
    (beep,) = beeps(signal)
    assert abs(beep.freq_hz - freq) < freq * 0.01
    assert abs(beep.end_ms - (lead + ms)) <= 100
    assert abs(beep.start_ms - lead) <= 100


def test_a_beep_is_reported_within_100_ms_of_its_end_when_fed_frame_by_frame() -> None:
    signal = noisy(tones.silence(500), tones.tone(1000, 300), tones.silence(1000))
    detector = BeepDetector()
    reported_at = None
    for i in range(0, len(signal), 160):
        if detector.feed(signal[i : i + 160]):
            reported_at = (i + 160) // 8
            break
    assert reported_at is not None and 800 <= reported_at <= 900


def test_a_tone_through_a_lost_packet_is_one_beep() -> None:
    signal = noisy(tones.silence(400), tones.tone(1400, 600), tones.silence(800))
    signal[(400 + 300) * 8 : (400 + 320) * 8] = 0  # a 20 ms frame lost mid-beep, frame-aligned
    (beep,) = beeps(signal)
    assert abs(beep.end_ms - 1000) <= 100


def test_a_tone_through_lost_packets_off_the_frame_grid_is_one_beep_with_its_true_end() -> None:
    # Two lost 20 ms packets back to back, not aligned to the detector's frames: 40 ms of zeros
    # spanning three 10 ms half-frames (they used to end the beep there, 300 ms early).
    signal = noisy(tones.silence(405), tones.tone(1400, 600), tones.silence(800))
    signal[(405 + 290) * 8 : (405 + 330) * 8] = 0
    (beep,) = beeps(signal)
    assert abs(beep.end_ms - 1005) <= 20


def test_a_tone_followed_by_digital_silence_still_ends() -> None:
    signal = noisy(tones.silence(400), tones.tone(1000, 400))
    signal = np.concatenate([signal, np.zeros(8 * 1000, dtype=np.int16)])
    detector = BeepDetector()
    reported_at = None
    for i in range(0, len(signal), 160):
        found = detector.feed(signal[i : i + 160])
        if found:
            reported_at = (i + 160) // 8
            assert abs(found[0].end_ms - 800) <= 20
            break
    assert reported_at is not None and reported_at <= 800 + 140


@pytest.mark.parametrize("ms", [60, 100])
def test_tones_shorter_than_120_ms_are_not_beeps(ms: int) -> None:
    assert beeps(noisy(tones.silence(400), tones.tone(1000, ms), tones.silence(600))) == []


@pytest.mark.parametrize("freq", [455, 462, 470])
def test_a_single_tone_between_the_ringback_frequencies_is_a_beep(freq: int) -> None:
    (beep,) = beeps(noisy(tones.silence(300), tones.tone(freq, 300), tones.silence(400)))
    assert abs(beep.freq_hz - freq) < 5 and abs(beep.end_ms - 600) <= 20


def test_a_short_beep_with_a_lost_packet_near_its_start_is_found() -> None:
    # The lost frame used to spoil the 64 ms analysis window for the rest of a 166 ms beep.
    signal = noisy(tones.silence(400), tones.tone(1600, 166), tones.silence(600))
    signal[440 * 8 : 460 * 8] = 0  # the frame 40..60 ms into the beep is lost
    (beep,) = beeps(signal)
    assert abs(beep.end_ms - 566) <= 20


def test_ringback_is_not_a_beep() -> None:
    cadence = np.concatenate([tones.dual_tone(440, 480, 2000), tones.silence(4000)])
    assert beeps(noisy(np.tile(cadence, 2))) == []
    unequal = tones.tone(440, 2000).astype(np.float64) + 0.5 * tones.tone(480, 2000)
    assert beeps(noisy(tones.silence(300), unequal.astype(np.int16), tones.silence(300))) == []


@pytest.mark.parametrize("seed", range(5))
def test_speech_like_signals_are_not_beeps(seed: int) -> None:
    assert beeps(noisy(tones.speech_like(8000, seed=seed), seed=seed)) == []


def test_out_of_range_tones_are_not_beeps() -> None:
    assert beeps(noisy(tones.silence(300), tones.tone(300, 500), tones.silence(300), tones.tone(3000, 500), tones.silence(300))) == []


def test_chunk_size_does_not_change_the_result() -> None:
    signal = noisy(tones.speech_like(900, seed=3), tones.silence(400), tones.tone(900, 400), tones.silence(500))
    whole = beeps(signal)
    detector = BeepDetector()
    pieces: list[Beep] = []
    for i in range(0, len(signal), 97):
        pieces.extend(detector.feed(signal[i : i + 97]))
    assert whole == pieces and len(whole) == 1
