"""The fixed-time caller's arithmetic (benchmarks.sip_load.fixed_time): when it speaks, where
the beep is in what it heard and how late, what a message lacks of its first second."""

from __future__ import annotations

import numpy as np
import pytest
from benchmarks.sip_load.fixed_time import (
    Arrivals,
    Nominal,
    beep_lateness,
    find_beep,
    first_second_missing_ms,
    percentiles_ms,
)

from afterbeep.audio.compare import compare
from afterbeep.audio.tones import speech_like, tone
from afterbeep.telephony.media import Codec
from afterbeep.telephony.prompts import beep, prompt
from tests.fixtures.rtp_pcap import g711_roundtrip

BEEP = g711_roundtrip(Codec.PCMU, beep())


def test_nominal_counts_whole_frames_when_prompts_are_padded() -> None:
    nominal = Nominal.of([170, 160], 2000, 160)
    assert nominal.beep_start == pytest.approx(480 / 8000)  # 170 takes two frames
    assert nominal.beep_end == pytest.approx((480 + 2080) / 8000)
    assert nominal.speak_at == pytest.approx((480 + 2080) / 8000 + 0.3)
    assert nominal.speak_at_ms == 620  # 620 ms: already on the 20 ms grid


def test_nominal_adds_samples_when_prompts_follow_each_other() -> None:
    nominal = Nominal.of([170, 160], 2000, None)
    assert nominal.beep_start == pytest.approx(330 / 8000)
    assert nominal.beep_end == pytest.approx(2330 / 8000)
    assert nominal.speak_at_ms == 600  # 591.25 ms, up to the next packet


def test_nominal_of_the_deposit_prompts() -> None:
    greeting, instructions = len(prompt("vm-greeting")), len(prompt("vm-instructions"))
    nominal = Nominal.of([greeting, instructions], len(beep()), 160)
    assert greeting + instructions <= nominal.beep_start * 8000 < greeting + instructions + 320
    assert nominal.beep_end - nominal.beep_start == pytest.approx(0.26)  # 250 ms in 13 frames
    assert nominal.speak_at_ms % 20 == 0
    assert 0.3 <= nominal.speak_at_ms / 1000 - nominal.beep_end < 0.32


def _stream_with_beep_at(index: int, total: int) -> np.ndarray:
    stream = g711_roundtrip(Codec.PCMU, speech_like(total / 8, seed=3)).copy()
    stream[index : index + len(BEEP)] = BEEP
    return stream


def test_the_beep_is_found_at_its_sample() -> None:
    stream = _stream_with_beep_at(12_345, 40_000)
    found = find_beep(stream, BEEP)
    assert found is not None
    assert found.index == 12_345 and found.score > 0.999


def test_a_quieter_beep_with_a_lost_packet_is_still_found() -> None:
    stream = _stream_with_beep_at(8_000, 30_000)
    stream[8_000 : 8_000 + len(BEEP)] //= 4
    stream[8_480:8_640] = 0  # one 20 ms packet of the beep never came
    found = find_beep(stream, BEEP)
    assert found is not None and found.index == 8_000


def test_no_beep_no_answer() -> None:
    speech = g711_roundtrip(Codec.PCMU, speech_like(3000, seed=4))
    assert find_beep(speech, BEEP) is None
    assert find_beep(np.zeros(20_000, dtype=np.int16), BEEP) is None
    assert find_beep(BEEP[:100], BEEP) is None
    other_tone = g711_roundtrip(Codec.PCMU, tone(440, 250))
    assert find_beep(other_tone, BEEP) is None


def _arrivals(pcm: np.ndarray, answered: float, stall_at_packet: int, stall: float) -> Arrivals:
    """Packets of 160 samples sent on time from ``answered`` + 20 ms, all of them from
    ``stall_at_packet`` on delayed by ``stall``."""
    count = len(pcm) // 160
    starts = np.arange(count, dtype=np.int64) * 160
    times = answered + 0.02 + starts / 8000 + np.where(np.arange(count) >= stall_at_packet, stall, 0.0)
    return Arrivals(pcm[: count * 160], starts, times)


def test_the_beep_late_by_a_stall_before_it() -> None:
    beep_at = 100 * 160 + 37  # mid-packet, as after Asterisk's smoother
    stream = _stream_with_beep_at(beep_at, 200 * 160)
    nominal = Nominal(beep_start=beep_at / 8000, beep_end=0.0, speak_at=0.0)
    on_time = _arrivals(stream, 50.0, 1000, 0.0)
    assert beep_lateness(on_time, 50.0, nominal, BEEP) == pytest.approx(0.02)
    stalled = _arrivals(stream, 50.0, 60, 0.045)
    assert beep_lateness(stalled, 50.0, nominal, BEEP) == pytest.approx(0.065)
    after = _arrivals(stream, 50.0, 101, 0.5)  # a stall after the beep's first packet
    assert beep_lateness(after, 50.0, nominal, BEEP) == pytest.approx(0.02)


def test_no_beep_heard_no_lateness() -> None:
    speech = g711_roundtrip(Codec.PCMU, speech_like(2000, seed=5))
    assert beep_lateness(_arrivals(speech, 0.0, 0, 0.0), 0.0, Nominal(1.0, 1.3, 1.6), BEEP) is None


REFERENCE = g711_roundtrip(Codec.PCMU, speech_like(3000, seed=11))


def test_a_whole_message_misses_nothing() -> None:
    message = np.concatenate([np.zeros(2400, dtype=np.int16), REFERENCE])
    lag = compare(REFERENCE, message, max_lag_ms=5000).lag
    assert lag == 2400
    assert first_second_missing_ms(REFERENCE, message, lag) == 0


def test_a_message_that_started_late_misses_its_head() -> None:
    message = REFERENCE[2400:]  # recording began 300 ms into the speech
    lag = compare(REFERENCE, message, max_lag_ms=5000).lag
    assert lag == -2400
    assert first_second_missing_ms(REFERENCE, message, lag) == 300


def test_a_damaged_frame_in_the_first_second_counts() -> None:
    message = REFERENCE.copy()
    loud = int(np.argmax(np.abs(REFERENCE[:8000]))) // 160 * 160
    message[loud : loud + 160] = 0
    assert first_second_missing_ms(REFERENCE, message, 0) == 20
    message = REFERENCE.copy()
    message[8000:8160] = 0  # after the first second: not counted here
    assert first_second_missing_ms(REFERENCE, message, 0) == 0


def test_a_message_shorter_than_a_second() -> None:
    assert first_second_missing_ms(REFERENCE, REFERENCE[:4000], 0) == 500
    assert first_second_missing_ms(REFERENCE, np.zeros(0, dtype=np.int16), 0) == 1000


def test_percentiles_in_milliseconds() -> None:
    assert percentiles_ms([]) == {"n": 0}
    figures = percentiles_ms([0.01] * 99 + [0.5])
    assert figures["n"] == 100 and figures["p50"] == pytest.approx(10)
    assert figures["max"] == pytest.approx(500) and 10 < figures["p99"] <= 500
