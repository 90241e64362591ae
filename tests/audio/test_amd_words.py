"""The detector listening to the first turn's words: the turn is handed over once it ends, its
words decide with the timing; no words (busy, failed, late) leaves timing alone, said in the
cause. Transcripts here are given (what the engine would write); tests/asr/test_amd_turns.py
runs the real engine."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from afterbeep.audio import tones
from afterbeep.audio.amd import FRAME, AmdDecision, AnsweredBy, MachineDetector, classify
from afterbeep.audio.amd_cues import load_cues
from afterbeep.domain.amd_words import WordsSettings
from tests.audio.test_amd import check_sequence, pcm_of, quiet, say

Audio = npt.NDArray[np.int16]


def run(
    pcm: Audio,
    transcript: Callable[[Audio], str | None],
    *,
    language: str = "en",
    late_frames: int = 0,
    reason: str = "BUSY",
    settings: WordsSettings | None = None,
) -> tuple[list[AmdDecision], list[Audio]]:
    """Feed 20 ms frames; a turn handed over is answered ``late_frames`` frames later."""
    detector = MachineDetector(cues=load_cues(language), words=settings)
    decisions: list[AmdDecision] = []
    asked: list[Audio] = []
    due: list[tuple[int, str | None]] = []
    for n, i in enumerate(range(0, len(pcm), FRAME)):
        for at, text in list(due):
            if n >= at:
                detector.hear(text, "" if text is not None else reason)
                due.remove((at, text))
        decisions.extend(detector.feed(pcm[i : i + FRAME]))
        if detector.decision is not None:
            return decisions, asked
        turn = detector.turn_to_transcribe()
        if turn is not None:
            asked.append(turn)
            due.append((n + 1 + late_frames, transcript(turn)))
    return decisions + detector.finish(), asked


def test_a_short_greeting_without_beep_is_a_machine_by_its_words() -> None:
    pcm = pcm_of(quiet(300), say("Leave a message."), quiet(5000))
    timing = classify(pcm)
    assert timing[-1].answered_by is AnsweredBy.HUMAN  # what timing alone says
    decisions, asked = run(pcm, lambda _: "Leave a message.")
    check_sequence(decisions)
    assert len(asked) == 1
    assert decisions[0].answered_by is AnsweredBy.MACHINE_START and decisions[0].cause == "WORDS-MACHINE"
    assert decisions[-1].answered_by is AnsweredBy.MACHINE_END_SILENCE
    assert decisions[-1].transcript == "Leave a message." and decisions[-1].cue == "leave a message"


def test_the_turn_handed_over_is_the_first_turn_from_just_before_it_began() -> None:
    speech = say("Leave a message.")
    _, asked = run(pcm_of(quiet(1000), speech, quiet(3000)), lambda _: "Leave a message.")
    (turn,) = asked
    assert len(speech) <= len(turn) <= len(speech) + 8 * 1000  # the turn, 200 ms before, the pause


def test_one_hello_then_silence_is_a_person_within_a_second_of_silence_and_never_unknown() -> None:
    hello = say("Hello?")
    pcm = pcm_of(quiet(300), hello, quiet(3000))
    decisions, asked = run(pcm, lambda _: "Hello?")
    check_sequence(decisions)
    assert len(asked) == 1
    (decision,) = decisions
    assert decision.answered_by is AnsweredBy.HUMAN and decision.cause == "HUMAN-SHORT-WORDS"
    end_of_hello = 300 + len(hello) // 8
    assert decision.detection_ms <= end_of_hello + WordsSettings().human_silence_ms + 200
    assert decision.cue == "hello"


def test_a_business_greeting_then_silence_is_a_person_by_its_words() -> None:
    text = "Good morning, Riverside clinic, this is Anna speaking, how can I help you?"
    pcm = pcm_of(quiet(300), say(text), quiet(4000))
    timing = classify(pcm)
    assert timing[-1].answered_by is AnsweredBy.MACHINE_END_SILENCE  # timing alone: a greeting
    decisions, _ = run(pcm, lambda _: text)
    check_sequence(decisions)
    assert decisions[-1].answered_by is AnsweredBy.HUMAN and decisions[-1].cause == "HUMAN-WORDS"
    assert decisions[-1].cue == "how can i help"


def test_a_long_greeting_with_a_greetings_words_is_a_machine_with_its_beep() -> None:
    text = "Hi, you've reached John Smith. I can't come to the phone right now."
    pcm = pcm_of(quiet(300), say(text), quiet(900), tones.tone(1000, 400), quiet(3000))
    decisions, _ = run(pcm, lambda _: text)
    check_sequence(decisions)
    assert decisions[0].cause == "WORDS-MACHINE"
    assert decisions[-1].answered_by is AnsweredBy.MACHINE_END_BEEP
    assert decisions[-1].beep_end_ms is not None


def test_spanish_french_and_german_greetings_are_machines_by_their_words() -> None:
    for language, voice, text in (
        ("es", "es", "Deja tu mensaje."),
        ("fr", "fr", "Laissez un message."),
        ("de", "de", "Nachricht nach dem Ton."),
    ):
        pcm = pcm_of(quiet(300), say(text, voice), quiet(5000))
        decisions, _ = run(pcm, lambda _, said=text: said, language=language)
        check_sequence(decisions)
        assert decisions[-1].answered_by is AnsweredBy.MACHINE_END_SILENCE, language


def test_without_words_timing_decides_alone_and_says_why() -> None:
    pcm = pcm_of(quiet(300), say("Leave a message."), quiet(5000))
    for reason in ("BUSY", "FAILED"):
        decisions, _ = run(pcm, lambda _: None, reason=reason)
        (decision,) = decisions
        assert decision.answered_by is AnsweredBy.HUMAN
        assert decision.cause == f"HUMAN-SHORT/NOWORDS-{reason}"
        assert decision.transcript is None


def test_words_that_come_too_late_leave_timing_to_decide_after_two_seconds_of_silence() -> None:
    speech = say("Leave a message.")
    pcm = pcm_of(quiet(300), speech, quiet(5000))
    decisions, _ = run(pcm, lambda _: "Leave a message.", late_frames=200)
    (decision,) = decisions
    assert decision.answered_by is AnsweredBy.HUMAN and decision.cause == "HUMAN-SHORT/NOWORDS-LATE"
    assert decision.detection_ms >= 300 + len(speech) // 8 + WordsSettings().wait_ms - 100


def test_words_a_little_late_hold_the_decision_until_they_come() -> None:
    pcm = pcm_of(quiet(300), say("Leave a message."), quiet(5000))
    decisions, _ = run(pcm, lambda _: "Leave a message.", late_frames=50)  # 1 s of audio
    assert decisions[0].answered_by is AnsweredBy.MACHINE_START


def test_a_turn_that_goes_on_after_it_was_handed_over_is_handed_over_once_more() -> None:
    pcm = pcm_of(quiet(300), say("Hi, this is Kevin."), quiet(700),
                 say("I can't come to the phone right now."), quiet(5000))
    said = iter(["Hi, this is Kevin.", "Hi, this is Kevin. I can't come to the phone right now."])
    decisions, asked = run(pcm, lambda _: next(said))
    assert len(asked) == 2 and len(asked[1]) > len(asked[0])
    assert decisions[0].cause == "WORDS-MACHINE" and decisions[-1].cue == "cant come to the phone"


def test_a_line_that_stays_silent_or_hisses_is_the_only_unknown() -> None:
    for pcm in (pcm_of(quiet(8000)), np.random.default_rng(3).normal(0, 40, 8 * 8000).astype(np.int16)):
        decisions, asked = run(pcm, lambda _: "Hello?")
        assert [d.answered_by for d in decisions] == [AnsweredBy.UNKNOWN] and not asked


def test_a_turn_then_the_end_of_the_audio_always_decides() -> None:
    pcm = pcm_of(quiet(300), say("Hello, who is this?"), quiet(600))
    decisions, _ = run(pcm, lambda _: "Hello, who is this?", late_frames=100)
    assert [d.answered_by for d in decisions] == [AnsweredBy.HUMAN]


def test_a_short_greeting_whose_words_were_misheard_near_its_cue_is_a_machine() -> None:
    for language, voice, text, heard in (
        ("es", "es", "Deja tu mensaje.", "de la Tumensá."),
        ("de", "de", "Nachricht nach dem Ton.", "das ich nach dem Tonn."),
        ("en", "en-us", "You've reached Amy.", "You reach the mid."),
    ):
        pcm = pcm_of(quiet(300), say(text, voice), quiet(5000))
        assert classify(pcm)[-1].answered_by is AnsweredBy.HUMAN, language  # timing alone
        decisions, _ = run(pcm, lambda _, said=heard: said, language=language)
        check_sequence(decisions)
        assert decisions[0].cause == "WORDS-MACHINE", (language, decisions)
        assert decisions[-1].answered_by is AnsweredBy.MACHINE_END_SILENCE
        assert decisions[-1].cue is not None and decisions[-1].cue.startswith("~")


def test_a_short_turn_opening_with_a_hello_is_a_person_after_the_shorter_silence() -> None:
    speech = say("Hello, this is Jenny.")
    pcm = pcm_of(quiet(300), speech, quiet(3000))
    hello, _ = run(pcm, lambda _: "Hello, Nisyanis.")  # the name misheard: no cue, but a hello
    neutral, _ = run(pcm, lambda _: "I will be more.")  # no cue and no hello
    assert hello[-1].answered_by is AnsweredBy.HUMAN and hello[-1].cue == "hello"
    assert neutral[-1].answered_by is AnsweredBy.HUMAN and neutral[-1].cue is None
    s = WordsSettings()
    assert neutral[-1].detection_ms - hello[-1].detection_ms == s.neutral_silence_ms - s.human_silence_ms


def test_a_turn_that_goes_on_twice_is_handed_over_up_to_max_asks_times() -> None:
    pcm = pcm_of(quiet(300), say("Guten Morgen."), quiet(450), say("Praxis Acme."), quiet(450),
                 say("Anna am Apparat."), quiet(4000))
    said = ["Guten Morgen.", "Guten Morgen. Praxis Acme.", "Guten Morgen. Praxis Acme. Anna am Apparat."]
    for asks in (2, 3):
        s = WordsSettings(ask_after_ms=300, max_asks=asks)
        texts = iter(said)
        decisions, asked = run(pcm, lambda _, t=texts: next(t), language="de", settings=s)
        assert len(asked) == asks and all(len(b) > len(a) for a, b in itertools.pairwise(asked))
    # the third transcript covers the whole turn: its person's words decide it
    assert decisions[-1].answered_by is AnsweredBy.HUMAN and decisions[-1].cue == "am apparat"


def test_a_hello_with_a_persons_cue_is_decided_after_the_quick_silence() -> None:
    speech = say("Hi, who is this?")
    pcm = pcm_of(quiet(300), speech, quiet(3000))
    s = WordsSettings(ask_after_ms=300, quick_silence_ms=500)
    quick, _ = run(pcm, lambda _: "Hi, who is this?", settings=s)
    named, _ = run(pcm, lambda _: "Hi, this is Kevin.", settings=s)
    assert quick[-1].answered_by is AnsweredBy.HUMAN and quick[-1].cue == "who is this"
    assert named[-1].answered_by is AnsweredBy.HUMAN and named[-1].cue == "this is <name>"
    assert named[-1].detection_ms - quick[-1].detection_ms == s.human_silence_ms - s.quick_silence_ms
