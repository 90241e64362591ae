"""The words of a recorded greeting turn a short first turn into a machine (pocketsphinx keyword
search on speech generated at test time with espeak-ng)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from afterbeep.audio.amd import AmdDecision, AmdSettings, AnsweredBy, MachineDetector, classify
from afterbeep.audio.amd_corpus import speak
from afterbeep.audio.greeting_words import GreetingWords, shared


def pcm_of(*parts: npt.NDArray[np.float64], seed: int = 1) -> npt.NDArray[np.int16]:
    signal = np.concatenate(parts)
    signal = signal + np.random.default_rng(seed).normal(0, 0.002, len(signal))
    return np.clip(np.rint(signal * 32767), -32768, 32767).astype(np.int16)


def say(text: str, voice: str) -> npt.NDArray[np.float64]:
    speech = speak(text, voice, 170, 50)
    return speech * (0.1 / float(np.sqrt(np.mean(speech**2))))


def quiet(ms: float) -> npt.NDArray[np.float64]:
    return np.zeros(round(ms * 8))


SHORT_GREETING = "Not available, leave a message."


@pytest.mark.parametrize("voice", ["en-gb", "en+m3"])
def test_a_short_greeting_then_silence_is_a_machine_by_its_words(voice: str) -> None:
    decisions = classify(pcm_of(quiet(300), say(SHORT_GREETING, voice), quiet(5000)))
    assert [(d.answered_by, d.cause) for d in decisions] == [
        (AnsweredBy.MACHINE_START, "GREETINGWORDS"),
        (AnsweredBy.MACHINE_END_SILENCE, "SILENCE"),
    ]
    # decided when a person would have been, and the end after the greeting's silence
    assert decisions[0].detection_ms <= 300 + len(say(SHORT_GREETING, voice)) // 8 + 1300
    assert decisions[1].detection_ms - decisions[0].detection_ms <= 1200


def test_without_the_word_search_the_same_greeting_reads_as_a_person() -> None:
    audio = pcm_of(quiet(300), say(SHORT_GREETING, "en-gb"), quiet(5000))
    decisions = classify(audio, AmdSettings(greeting_words=False))
    assert [(d.answered_by, d.cause) for d in decisions] == [(AnsweredBy.HUMAN, "HUMAN-SHORT")]


def test_a_beep_after_words_found_still_ends_the_greeting_with_the_beep() -> None:
    beep = 0.1 * np.sin(2 * np.pi * 1000 * np.arange(3200) / 8000)
    greeting = say(SHORT_GREETING, "en+m3")
    audio = pcm_of(quiet(300), greeting, quiet(1400), beep, quiet(3000))
    decisions = classify(audio)
    assert [d.answered_by for d in decisions] == [AnsweredBy.MACHINE_START, AnsweredBy.MACHINE_END_BEEP]
    assert decisions[0].cause == "GREETINGWORDS"
    beep_end_ms = 300 + len(greeting) // 8 + 1400 + 400
    assert decisions[1].beep_end_ms is not None and abs(decisions[1].beep_end_ms - beep_end_ms) <= 100


HELLOS = ["Hello?", "Hi, who is this?", "Hello, this is Jenny.", "Yeah, hello?", "Speaking.", "Hello, who's calling?"]


@pytest.mark.parametrize("voice", ["en-us", "en+f3", "en-gb", "en+m3", "en-us+f4"])
def test_hellos_are_still_people(voice: str) -> None:
    for text in HELLOS:
        decisions = classify(pcm_of(quiet(300), say(text, voice), quiet(4000)))
        assert [d.answered_by for d in decisions] == [AnsweredBy.HUMAN], (voice, text)


def test_the_spotter_names_the_phrase_and_finds_nothing_in_a_hello() -> None:
    words = GreetingWords({"leave a message": 1e-35})
    turn = pcm_of(quiet(200), say(SHORT_GREETING, "en-gb"), quiet(200))
    assert words.spot(turn) == ["leave a message"]
    assert words.spot(pcm_of(quiet(200), say("Hello, this is Jenny.", "en-gb"), quiet(200))) == []
    assert words.spot(np.zeros(0, dtype=np.int16)) == []


@pytest.mark.parametrize("chunk", [1, 160, 333, 4000])
def test_streaming_gives_the_decisions_of_classify(chunk: int) -> None:
    audio = pcm_of(quiet(700), say(SHORT_GREETING, "en+m3"), quiet(4000))
    expected = classify(audio)
    detector = MachineDetector(words=shared())
    got: list[AmdDecision] = []
    for i in range(0, len(audio), chunk):
        got.extend(detector.feed(audio[i : i + chunk]))
    got.extend(detector.finish())
    assert got == expected
    assert expected[0].cause == "GREETINGWORDS"
