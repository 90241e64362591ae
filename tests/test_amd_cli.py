"""`afterbeep amd classify FILE.wav` prints the final decision as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
from typer.testing import CliRunner

from afterbeep.audio import tones
from afterbeep.cli import cli


def test_classify_prints_the_decision_as_json_for_a_44k_stereo_wav(tmp_path: Path) -> None:
    pcm = np.concatenate([tones.silence(500), tones.speech_like(6000, seed=2), tones.silence(300),
                          tones.tone(1000, 400), tones.silence(2000)])
    mono = np.asarray(pcm, dtype=np.float64) / 32767
    t = np.arange(len(mono) * 44100 // 8000) * 8000 / 44100
    upsampled = np.interp(t, np.arange(len(mono)), mono)
    path = tmp_path / "greeting.wav"
    sf.write(path, np.stack([upsampled, upsampled], axis=1), 44100, subtype="PCM_16")
    result = CliRunner().invoke(cli, ["amd", "classify", str(path)])
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)
    assert set(decision) == {"answered_by", "detection_ms", "cause", "beep_end_ms", "transcript", "cue"}
    assert decision["answered_by"] == "machine_end_beep"
    assert abs(decision["beep_end_ms"] - (500 + 6000 + 300 + 400)) <= 100


def test_classify_all_prints_one_json_line_per_decision(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(8000 * 8, dtype=np.int16), 8000, subtype="PCM_16")
    result = CliRunner().invoke(cli, ["amd", "classify", "--all", str(path)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["answered_by"] for d in lines] == ["unknown"]


def test_an_unreadable_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("not audio")
    result = CliRunner().invoke(cli, ["amd", "classify", str(path)])
    assert result.exit_code == 2
    assert "cannot read" in result.output
    missing = CliRunner().invoke(cli, ["amd", "classify", str(tmp_path / "missing.wav")])
    assert missing.exit_code == 2
