"""Answering machine detection on speech generated at test time with espeak-ng."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from afterbeep.audio import tones
from afterbeep.audio.amd import AmdDecision, AmdSettings, AnsweredBy, MachineDetector, classify
from afterbeep.audio.amd_corpus import generate, speak
from afterbeep.audio.rendition import read_wav_pcm

MACHINE_ENDS = {AnsweredBy.MACHINE_END_BEEP, AnsweredBy.MACHINE_END_SILENCE, AnsweredBy.MACHINE_END_OTHER}


def pcm_of(*parts: npt.NDArray[np.float64] | npt.NDArray[np.int16], seed: int = 1) -> npt.NDArray[np.int16]:
    """Concatenate float [-1, 1] speech and int16 tones over a faint noise floor."""
    floats = [p / 32767 if p.dtype == np.int16 else p for p in parts]
    signal = np.concatenate(floats)
    signal = signal + np.random.default_rng(seed).normal(0, 0.002, len(signal))
    return np.clip(np.rint(signal * 32767), -32768, 32767).astype(np.int16)


def say(text: str, voice: str = "en-us", level: float = 0.1) -> npt.NDArray[np.float64]:
    speech = speak(text, voice, 170, 50)
    return speech * (level / float(np.sqrt(np.mean(speech**2))))


def quiet(ms: float) -> npt.NDArray[np.float64]:
    return np.zeros(round(ms * 8))


def check_sequence(decisions: list[AmdDecision]) -> None:
    """One final decision, last; machine_start only first and only before a machine_end_*."""
    assert decisions and decisions[-1].final
    assert all(not d.final for d in decisions[:-1])
    if decisions[0].answered_by is AnsweredBy.MACHINE_START:
        assert len(decisions) == 2 and decisions[1].answered_by in MACHINE_ENDS
    else:
        assert len(decisions) == 1 and decisions[0].answered_by not in MACHINE_ENDS
    assert [d.detection_ms for d in decisions] == sorted(d.detection_ms for d in decisions)


GREETING = (
    "Hi, you've reached John Smith. I can't come to the phone right now. "
    "Please leave your name, number and a short message after the tone."
)


def test_a_hello_is_a_person_decided_within_two_seconds_of_audio() -> None:
    decisions = classify(pcm_of(quiet(300), say("Hello?"), quiet(4000)))
    check_sequence(decisions)
    assert decisions[-1].answered_by is AnsweredBy.HUMAN
    assert decisions[-1].detection_ms <= 2000


def test_a_business_greeting_then_hello_again_is_a_person() -> None:
    audio = pcm_of(quiet(200), say("Good morning, Acme Dental, this is Sarah speaking, how can I help you?"),
                   quiet(1600), say("Hello?"), quiet(4000))
    decisions = classify(audio)
    check_sequence(decisions)
    assert decisions[-1].answered_by is AnsweredBy.HUMAN


def test_carrier_silence_then_a_greeting_and_beep_is_a_machine_with_the_beep_end() -> None:
    greeting = say(GREETING)
    beep_end_ms = 2500 + len(greeting) // 8 + 400 + 300
    audio = pcm_of(quiet(2500), greeting, quiet(400), tones.tone(1000, 300), quiet(3000))
    decisions = classify(audio)
    check_sequence(decisions)
    assert decisions[0].answered_by is AnsweredBy.MACHINE_START
    end = decisions[-1]
    assert end.answered_by is AnsweredBy.MACHINE_END_BEEP and end.beep_end_ms is not None
    assert abs(end.beep_end_ms - beep_end_ms) <= 100
    assert 0 <= end.detection_ms - beep_end_ms <= 100


def test_a_greeting_then_silence_ends_in_silence() -> None:
    decisions = classify(pcm_of(quiet(400), say(GREETING), quiet(6000)))
    check_sequence(decisions)
    assert [d.answered_by for d in decisions] == [AnsweredBy.MACHINE_START, AnsweredBy.MACHINE_END_SILENCE]


def test_only_silence_is_unknown_not_a_person() -> None:
    decisions = classify(pcm_of(quiet(8000)))
    check_sequence(decisions)
    assert decisions[-1].answered_by is AnsweredBy.UNKNOWN


@pytest.mark.parametrize("kind", ["ced", "cng"])
def test_fax_tones_are_fax(kind: str) -> None:
    if kind == "ced":
        audio = pcm_of(quiet(500), tones.tone(2100, 3000), quiet(2000))
    else:
        audio = pcm_of(quiet(500), *[np.concatenate([tones.tone(1100, 500) / 32767, quiet(3000)])] * 2)
    decisions = classify(audio)
    check_sequence(decisions)
    assert decisions[-1].answered_by is AnsweredBy.FAX


def test_ringback_before_the_answer_is_not_a_beep() -> None:
    ringback = tones.dual_tone(440, 480, 2000)
    decisions = classify(pcm_of(ringback, quiet(300), say("Hello?"), quiet(3000)))
    assert decisions[-1].answered_by is AnsweredBy.HUMAN


@pytest.mark.parametrize("chunk", [1, 77, 160, 333, 2000])
def test_streaming_in_any_chunk_size_gives_the_decisions_of_classify(chunk: int) -> None:
    audio = pcm_of(quiet(700), say(GREETING), quiet(250), tones.tone(850, 500), quiet(2000))
    expected = classify(audio)
    detector = MachineDetector()
    got: list[AmdDecision] = []
    for i in range(0, len(audio), chunk):
        got.extend(detector.feed(audio[i : i + chunk]))
    assert got == expected
    assert detector.decision == expected[-1]
    assert detector.feed(audio[:1600]) == []


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("amd_corpus")
    generate(out, 30, seed=99)
    return out


def test_a_small_generated_corpus_is_mostly_right(small_corpus: Path) -> None:
    rows = (small_corpus / "labels.csv").read_text().splitlines()[1:]
    right = 0
    people_as_machines = 0
    for row in rows:
        name, label = row.split(",")[:2]
        pcm, rate = read_wav_pcm(small_corpus / name)
        assert rate == 8000
        decisions = classify(pcm)
        check_sequence(decisions)
        got = decisions[-1].answered_by
        right += (
            got is AnsweredBy.HUMAN if label == "human"
            else got in MACHINE_ENDS if label.startswith("machine")
            else got is AnsweredBy.FAX
        )
        people_as_machines += label == "human" and got in MACHINE_ENDS
    assert len(rows) == 30
    assert right >= 23  # >= 75 %: 30 files are too few for the benchmark's figures (92 % on 1000)
    assert people_as_machines <= 1


def in_white_noise(speech: npt.NDArray[np.float64], snr_db: float, seed: int = 5) -> npt.NDArray[np.float64]:
    """Speech (and whatever follows it) under white noise `snr_db` below the speech's level."""
    level = float(np.sqrt(np.mean(speech[np.abs(speech) > 0.01] ** 2)))
    noise = np.random.default_rng(seed).standard_normal(len(speech))
    return speech + noise * level * 10 ** (-snr_db / 20)


def test_a_greeting_in_heavy_noise_is_not_taken_for_a_person_between_its_words() -> None:
    # At 10 dB SNR the VAD hears only fragments of words; gaps between them are not a person waiting.
    greeting = np.concatenate([say(GREETING), quiet(500)])
    beep_end_ms = 300 + len(greeting) // 8 + 300
    audio = np.concatenate([quiet(300), greeting, tones.tone(1000, 300) / 32767, quiet(3000)])
    decisions = classify(pcm_of(in_white_noise(audio, 10)))
    check_sequence(decisions)
    assert decisions[0].answered_by is AnsweredBy.MACHINE_START
    assert decisions[-1].answered_by is AnsweredBy.MACHINE_END_BEEP
    assert decisions[-1].beep_end_ms is not None and abs(decisions[-1].beep_end_ms - beep_end_ms) <= 100


def test_a_hello_in_heavy_noise_is_still_a_person() -> None:
    audio = np.concatenate([quiet(300), say("Hello?"), quiet(4000)])
    decisions = classify(pcm_of(in_white_noise(audio, 10)))
    check_sequence(decisions)
    assert decisions[-1].answered_by is AnsweredBy.HUMAN


def test_a_short_greeting_with_a_late_beep_is_a_machine() -> None:
    # The beep starts 900 ms after "Leave a message.": a person would not yet have been decided.
    greeting = say("Leave a message.")
    audio = pcm_of(quiet(300), greeting, quiet(900), tones.tone(1000, 400), quiet(3000))
    decisions = classify(audio)
    check_sequence(decisions)
    assert decisions[-1].answered_by is AnsweredBy.MACHINE_END_BEEP


def word_fragments(count: int, gap_ms: float = 400) -> npt.NDArray[np.float64]:
    """What the VAD hears of words in heavy noise: `count` 60 ms bits of a vowel, `gap_ms` apart
    (too short to open an utterance, too far apart to continue one)."""
    hello = say("Hello")
    loud = int(np.argmax(np.convolve(hello**2, np.ones(480), "valid")))
    bit = hello[loud : loud + 480] * np.hanning(480)
    return np.concatenate([quiet(gap_ms)] + [np.concatenate([bit, quiet(gap_ms)]) for _ in range(count)])


def test_fragments_of_words_keep_a_long_greeting_whole() -> None:
    # 1.2 s with only fragments heard, then the greeting's last sentence: not "Hello?" said again.
    long_part = say("Hi, you've reached John Smith. I can't come to the phone right now.")
    audio = pcm_of(quiet(300), long_part, word_fragments(2), say("Please leave a message."), quiet(5000))
    decisions = classify(audio)
    check_sequence(decisions)
    assert decisions[0].answered_by is AnsweredBy.MACHINE_START


def test_fragments_between_two_hellos_do_not_join_them() -> None:
    # A person's hello is short: what comes after it stays a second turn, heard as a reprompt.
    audio = pcm_of(quiet(300), say("Hello?"), word_fragments(2), say("Hello?"), quiet(4000))
    decisions = classify(audio)
    check_sequence(decisions)
    assert decisions[-1].answered_by is AnsweredBy.HUMAN


def far_talk(n: int, level: float, seed: int) -> npt.NDArray[np.float64]:
    """Other people talking far from the phone: three voices summed and smeared, at `level` rms."""
    rng = np.random.default_rng(seed)
    texts = ["I will be out of the office until Monday.", "Our office is currently closed.",
             "Hi, this is Kevin.", "For billing questions, please visit our website."]
    out = np.zeros(n)
    for voice in ("en-gb", "en+f2", "en+m7"):
        talk = np.concatenate([say(str(t), voice, 1.0) for t in rng.permutation(texts)])
        talk = np.tile(talk, n // len(talk) + 1)
        start = int(rng.integers(len(talk) - n + 1))
        out += talk[start : start + n]
    out = np.convolve(out, np.ones(8) / 8, mode="same")
    return out * (level / float(np.sqrt(np.mean(out**2))))


@pytest.mark.parametrize("seed", [2, 3])
def test_far_talk_20_db_under_the_voice_does_not_join_a_hello_to_its_reprompts(seed: int) -> None:
    person = np.concatenate([quiet(200), say("Hello, this is Jenny."), quiet(1100), say("Hello?"), quiet(1400),
                             say("Hello? Anyone there?"), quiet(5000)])
    audio = pcm_of(person + far_talk(len(person), 0.01, seed))
    decisions = classify(audio)
    check_sequence(decisions)
    assert decisions[-1].answered_by is AnsweredBy.HUMAN
    # what the rule is about: counting the far talk's quiet frames as talk made this one long turn
    # (a greeting) followed by silence
    counted = classify(audio, AmdSettings(quiet_below_speech_db=99.0))
    assert counted[0].answered_by is AnsweredBy.MACHINE_START
