"""Audio files generated in the test: known signals written with soundfile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.audio.signals import LEFT_HZ, RIGHT_HZ, STEREO_RATE, STEREO_SECONDS, sine


@pytest.fixture
def stereo_mp3(tmp_path: Path) -> Path:
    """3 s at 44.1 kHz, 440 Hz left and 660 Hz right."""
    left = sine(LEFT_HZ, STEREO_SECONDS, STEREO_RATE)
    right = sine(RIGHT_HZ, STEREO_SECONDS, STEREO_RATE)
    path = tmp_path / "stereo.mp3"
    sf.write(path, np.stack([left, right], axis=1), STEREO_RATE, format="MP3")
    return path


@pytest.fixture
def mono_wav_16k(tmp_path: Path) -> Path:
    """2 s of 1 kHz at 16 kHz, 16-bit PCM."""
    path = tmp_path / "mono.wav"
    sf.write(path, sine(1000, 2, 16000), 16000, subtype="PCM_16")
    return path


@pytest.fixture
def flac_48k(tmp_path: Path) -> Path:
    """1.5 s of 300 Hz at 48 kHz, mono."""
    path = tmp_path / "tone.flac"
    sf.write(path, sine(300, 1.5, 48000), 48000)
    return path
