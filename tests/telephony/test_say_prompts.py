"""Every menu prompt and every fragment `domain.say` can produce is recorded in en, es, fr and de,
and `prompts.sequence` plays fragments one after another."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from afterbeep.domain.say import (
    LANGUAGES,
    MAX_NUMBER,
    NOUNS,
    say_count,
    say_counts,
    say_datetime,
    say_digits,
    say_number,
)
from afterbeep.telephony import menu_prompts
from afterbeep.telephony.menu_prompts import MENU_PROMPTS
from afterbeep.telephony.prompts import PROMPTS_DIR, UnknownPrompt, prompt, sequence

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _texts(module: str, name: str) -> dict[str, dict[str, str]]:
    spec = importlib.util.spec_from_file_location(module, SCRIPTS / f"{module}.py")
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    texts: dict[str, dict[str, str]] = getattr(loaded, name)
    return texts


def _numbers() -> Iterator[int]:
    yield from range(0, 2200)
    yield from range(0, MAX_NUMBER + 1, 1_234_567)
    for power in range(3, 9):
        for lead in (1, 2, 21, 71, 80, 81, 91, 100, 101, 121, 200, 999):
            if lead * 10**power <= MAX_NUMBER:
                yield lead * 10**power
                yield lead * 10**power + 1
    yield MAX_NUMBER


def fragments(language: str) -> set[str]:
    """Every fragment the say_* functions produce over a broad range of inputs."""
    out: set[str] = set()
    for n in _numbers():
        for feminine in (False, True):
            for before_noun in (False, True):
                out.update(say_number(n, language, feminine=feminine, before_noun=before_noun))
    out.update(say_digits("+0123456789*#", language))
    for noun in NOUNS:
        for n in (*range(0, 130), 1000, 1_000_000, 2_000_000, 21_000_000):
            out.update(say_count(n, noun, language))
    out.update(say_counts([(2, "new-message"), (1, "saved-message")], language))
    tz = ZoneInfo("Europe/Paris")
    now = datetime(2026, 12, 7, 12, 0, tzinfo=tz)
    for day in range(800):  # every weekday, day of the month and month, this year and others
        out.update(say_datetime(now - timedelta(days=day), language, now=now))
    for year in (1999, 2000, 2005, 2010, 2100):
        out.update(say_datetime(now.replace(year=year), language, now=now))
    for minutes in range(24 * 60):
        when = now.replace(hour=0, minute=0) + timedelta(minutes=minutes)
        out.update(say_datetime(when, language, now=now))
        out.update(say_datetime(when - timedelta(days=3), language, now=now))
    return out


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_fragment_is_recorded(language: str) -> None:
    names = fragments(language)
    assert len(names) > 150
    missing = sorted(n for n in names if not (PROMPTS_DIR / language / f"{n}.wav").is_file())
    assert missing == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_menu_prompt_is_recorded(language: str) -> None:
    missing = sorted(n for n in MENU_PROMPTS if not (PROMPTS_DIR / language / f"{n}.wav").is_file())
    assert missing == []
    for name in MENU_PROMPTS:
        assert len(prompt(name, language)) > 8000 * 0.2


def test_menu_prompt_names_are_the_constants_and_the_texts() -> None:
    constants = {
        value
        for key, value in vars(menu_prompts).items()
        if key.isupper() and isinstance(value, str)
    }
    assert set(MENU_PROMPTS) == constants
    assert len(MENU_PROMPTS) == len(constants)
    assert "vmm-enter-pin" in MENU_PROMPTS and "vmm-goodbye" in MENU_PROMPTS
    menu_texts = _texts("menu_texts", "MENU_TEXTS")
    assert set(menu_texts) == set(LANGUAGES)
    for texts in menu_texts.values():
        assert set(texts) == set(MENU_PROMPTS)


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_fragment_text_is_left_unused(language: str) -> None:
    texts = _texts("say_texts", "SAY_TEXTS")[language]
    assert set(texts) == fragments(language)


def test_a_sequence_is_its_prompts_one_after_another() -> None:
    names = say_count(21, "new-message", "es")
    assert names == ["say-21-a", "say-new-messages"]
    audio = sequence(names, "es")
    parts = [prompt(name, "es") for name in names]
    assert np.array_equal(audio, np.concatenate(parts))
    assert not np.array_equal(audio, sequence(say_count(21, "new-message", "en"), "en"))
    assert sequence(iter(names), "es") is audio
    assert not audio.flags.writeable
    assert len(sequence([], "fr")) == 0


def test_a_sequence_with_a_missing_prompt_fails() -> None:
    with pytest.raises(UnknownPrompt):
        sequence(["say-today", "say-no-such-fragment"], "de")
