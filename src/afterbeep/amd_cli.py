"""`afterbeep amd classify FILE.wav`: answering machine detection over a recording, as JSON.

Reads any WAV file soundfile can read, mixes it to mono and resamples it to 8 kHz, runs the
streaming detector (`afterbeep.audio.amd`) over it as if it were a call from the answer on,
and prints the final decision. Exit status 2 when the file cannot be read as audio.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from afterbeep.audio.amd import classify
from afterbeep.audio.decode import AudioError, probe_and_decode
from afterbeep.audio.rendition import to_telephony

amd_app = typer.Typer(no_args_is_help=True, help="Answering machine detection")


@amd_app.command("classify")
def classify_file(
    file: Annotated[Path, typer.Argument(help="a WAV recording of the answered call")],
    all_decisions: Annotated[
        bool, typer.Option("--all", help="print every decision (machine_start too), one per line")
    ] = False,
) -> None:
    """Print the final decision as JSON: answered_by, detection_ms, cause, beep_end_ms."""
    try:
        pcm = to_telephony(probe_and_decode(file, allowed_formats={"WAV"}))
    except (AudioError, OSError) as exc:
        typer.echo(f"cannot read {file.name}: {exc}", err=True)
        raise typer.Exit(2) from exc
    decisions = classify(pcm)
    for decision in decisions if all_decisions else decisions[-1:]:
        typer.echo(json.dumps({
            "answered_by": decision.answered_by.value,
            "detection_ms": decision.detection_ms,
            "cause": decision.cause,
            "beep_end_ms": decision.beep_end_ms,
        }))
