"""Answering machine detection by words on the real engine (tiny.en, base): first turns said by
espeak-ng through G.711, transcribed as a drop call would, decided with their cue. One engine
(and so one load of each model) for the module: the one `afterbeep amd classify` uses."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from afterbeep.amd_cli import turn_engine
from afterbeep.asr.turns import Audio, TurnTranscriber
from afterbeep.asr.whisper import WhisperEngine
from afterbeep.audio.amd import AnsweredBy, classify
from afterbeep.audio.amd_cues import load_cues
from afterbeep.cli import cli
from afterbeep.domain.amd_words import Verdict, read_words
from afterbeep.services.ports.transcription import TranscriptionUnavailable
from tests.fixtures.speech import spoken


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    return turn_engine()


def call(*parts: tuple[str, int], voice: str = "en-us") -> Audio:
    """Phrases, each followed by its ms of silence, as heard from the answer on."""
    pieces = [np.zeros(300 * 8, dtype=np.int16)]
    for text, pause in parts:
        pieces += [spoken(text, voice, pad_ms=0), np.zeros(pause * 8, dtype=np.int16)]
    line = np.random.default_rng(5).normal(0, 30, sum(len(p) for p in pieces))
    return np.clip(np.concatenate(pieces) + line, -32768, 32767).astype(np.int16)


def test_a_short_english_greeting_is_heard_as_a_machines(engine: WhisperEngine) -> None:
    text = engine.transcribe_turn(spoken("Please leave a message after the tone."), "en-US")
    assert read_words(text, load_cues("en")).verdict is Verdict.MACHINE, text


def test_silence_gives_no_words(engine: WhisperEngine) -> None:
    assert engine.transcribe_turn(np.zeros(8000, dtype=np.int16), "en") == ""


def test_a_turns_language_must_be_given(engine: WhisperEngine) -> None:
    with pytest.raises(TranscriptionUnavailable):
        engine.transcribe_turn(spoken("Hello?"), "und")


def test_a_short_greeting_without_beep_is_a_machine_and_one_hello_then_silence_a_person(
    engine: WhisperEngine,
) -> None:
    cues = load_cues("en")

    def transcribe(turn: Audio) -> str:
        return engine.transcribe_turn(turn, "en")

    machine = classify(call(("Leave a message.", 5000)), cues=cues, transcribe=transcribe)
    assert [d.answered_by for d in machine] == [AnsweredBy.MACHINE_START, AnsweredBy.MACHINE_END_SILENCE]
    assert machine[0].cause == "WORDS-MACHINE" and machine[-1].cue is not None
    person = classify(call(("Hello?", 3500)), cues=cues, transcribe=transcribe)
    assert [d.answered_by for d in person] == [AnsweredBy.HUMAN]
    assert person[0].transcript is not None


def test_a_spanish_turn_is_transcribed_with_base(engine: WhisperEngine) -> None:
    text = engine.transcribe_turn(spoken("Hola, buenos días.", "es"), "es")
    assert text.strip(), text  # espeak's Spanish is often misheard ("Ahora, bueno, ¡sí!")


def test_classify_prints_the_first_turns_transcript_and_the_cue_that_decided(
    engine: WhisperEngine, tmp_path: Path
) -> None:
    path = tmp_path / "short-greeting.wav"
    sf.write(path, call(("Leave a message.", 5000)), 8000, subtype="PCM_16")
    result = CliRunner().invoke(cli, ["amd", "classify", "--all", "--words", "--language", "en", str(path)])
    assert result.exit_code == 0, result.output
    start, decision = (json.loads(line) for line in result.stdout.splitlines())
    assert start["answered_by"] == "machine_start" and start["cause"] == "WORDS-MACHINE"
    assert decision["answered_by"] == "machine_end_silence"
    assert decision["transcript"] and decision["cue"] and "message" in decision["cue"]
    assert decision["detection_ms"] > start["detection_ms"] and decision["beep_end_ms"] is None


class _Blocking:
    """An engine whose transcriptions wait for a gate: what "every worker busy" looks like."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Semaphore(0)

    def transcribe_turn(self, audio: Audio, language: str, *, max_new_tokens: int = 24) -> str:
        self.started.release()
        self.gate.wait(timeout=30)
        return f"{language}:{len(audio)}"

    def check(self, language: str) -> None:
        pass


def test_past_its_concurrency_the_pool_refuses_a_turn_at_once_rather_than_queue_it() -> None:
    engine = _Blocking()
    pool = TurnTranscriber(engine, concurrency=2, language="de")
    try:
        first, second = pool.submit(np.zeros(80, np.int16)), pool.submit(np.zeros(160, np.int16))
        assert first is not None and second is not None
        assert engine.started.acquire(timeout=10) and engine.started.acquire(timeout=10)
        assert pool.submit(np.zeros(8, np.int16)) is None
        assert (pool.running, pool.refused) == (2, 1)
        engine.gate.set()
        assert first.result(timeout=10) == "de:80" and second.result(timeout=10) == "de:160"
        third = pool.submit(np.zeros(8, np.int16))
        assert third is not None and third.result(timeout=10) == "de:8"
    finally:
        engine.gate.set()
        pool.close()
