"""`afterbeep amd classify FILE.wav`: answering machine detection over a recording, as JSON.

Reads any WAV file soundfile can read, mixes it to mono and resamples it to 8 kHz, runs the
streaming detector (`afterbeep.audio.amd`) over it as if it were a call from the answer on,
and prints the final decision: ``answered_by``, ``cause``, ``detection_ms``, ``beep_end_ms``,
and the first turn's ``transcript`` and the ``cue`` that decided (null when the words were
not heard or held no cue). The words are heard with the bundled speech models (tiny.en for
English, base otherwise; `--no-words` or ``AFTERBEEP_AMD_WORDS=off``: timing alone). Exit
status 2 when the file cannot be read as audio.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from afterbeep.audio.amd_cues import LANGUAGES, cue_language

if TYPE_CHECKING:
    from afterbeep.asr.whisper import WhisperEngine
    from afterbeep.audio.amd import Audio

amd_app = typer.Typer(no_args_is_help=True, help="Answering machine detection")


@amd_app.command("classify")
def classify_file(
    file: Annotated[Path, typer.Argument(help="a WAV recording of the answered call")],
    all_decisions: Annotated[
        bool, typer.Option("--all", help="print every decision (machine_start too), one per line")
    ] = False,
    words: Annotated[
        bool,
        typer.Option("--words/--no-words", envvar="AFTERBEEP_AMD_WORDS",
                     help="listen to the first turn's words too"),
    ] = True,
    language: Annotated[
        str, typer.Option(help=f"the language answered in ({', '.join(LANGUAGES)})")
    ] = "en",
) -> None:
    """Print the final decision as JSON: answered_by, cause, detection_ms, beep_end_ms,
    transcript, cue."""
    # Imported here: numpy and the detector cost every other `afterbeep` command a tenth of
    # a second at start.
    from afterbeep.audio.amd import classify
    from afterbeep.audio.amd_cues import load_cues
    from afterbeep.audio.decode import AudioError, probe_and_decode
    from afterbeep.audio.rendition import to_telephony

    code = cue_language(language)
    if code is None:
        typer.echo(f"no cue list for the language {language!r} (have {', '.join(LANGUAGES)})", err=True)
        raise typer.Exit(2)
    try:
        pcm = to_telephony(probe_and_decode(file, allowed_formats={"WAV"}))
    except (AudioError, OSError) as exc:
        typer.echo(f"cannot read {file.name}: {exc}", err=True)
        raise typer.Exit(2) from exc
    if words:
        decisions = classify(pcm, cues=load_cues(code), transcribe=_transcriber(code))
    else:
        decisions = classify(pcm)
    for decision in decisions if all_decisions else decisions[-1:]:
        typer.echo(json.dumps({
            "answered_by": decision.answered_by.value,
            "cause": decision.cause,
            "detection_ms": decision.detection_ms,
            "beep_end_ms": decision.beep_end_ms,
            "transcript": decision.transcript,
            "cue": decision.cue,
        }, ensure_ascii=False))


@cache
def turn_engine() -> WhisperEngine:
    """The speech engine of this process's classifications (each model loaded once)."""
    from afterbeep.asr.whisper import WhisperEngine

    return WhisperEngine(threads=1)


def _transcriber(language: str) -> Callable[[Audio], str | None]:
    from afterbeep.services.ports.transcription import TranscriptionUnavailable

    engine = turn_engine()

    def transcribe(turn: Audio) -> str | None:
        try:
            return engine.transcribe_turn(turn, language)
        except TranscriptionUnavailable as exc:
            typer.echo(f"words not heard: {exc}", err=True)
            return None

    return transcribe
