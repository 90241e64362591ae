"""System prompts shipped with the package (8 kHz mono WAV, made by scripts/make_prompts.py)."""

from __future__ import annotations

import wave
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

from afterbeep.audio.tones import tone
from afterbeep.telephony.interface import Audio

PROMPTS_DIR = Path(__file__).parent / "prompts"
FALLBACK_LANGUAGE = "en"
BEEP_HZ = 1000
BEEP_MS = 250


class UnknownPrompt(LookupError):
    pass


def languages() -> list[str]:
    return sorted(p.name for p in PROMPTS_DIR.iterdir() if p.is_dir())


@lru_cache(maxsize=256)
def prompt(name: str, language: str = FALLBACK_LANGUAGE) -> Audio:
    """The prompt in `language` (`es-MX` falls back to `es`, then to English)."""
    for candidate in (language, language.split("-")[0].lower(), FALLBACK_LANGUAGE):
        path = PROMPTS_DIR / candidate / f"{name}.wav"
        if path.is_file():
            with wave.open(str(path), "rb") as wav:
                if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (8000, 1, 2):
                    raise UnknownPrompt(f"{path} is not 8 kHz mono 16-bit")
                data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)
            data.setflags(write=False)
            return data
    raise UnknownPrompt(name)


@lru_cache(maxsize=1)
def beep() -> Audio:
    data = tone(BEEP_HZ, BEEP_MS)
    data.setflags(write=False)
    return data


def sequence(names: Iterable[str], language: str = FALLBACK_LANGUAGE) -> Audio:
    """The prompts named, one after another: what `domain.say` returns, or a menu prompt followed
    by a count (`UnknownPrompt` when one is missing in `language` and in English)."""
    return _sequence(tuple(names), language)


@lru_cache(maxsize=256)
def _sequence(names: tuple[str, ...], language: str) -> Audio:
    data = np.concatenate([prompt(name, language) for name in names] or [np.zeros(0, np.int16)])
    data.setflags(write=False)
    return data
