"""The cue phrase lists of answering machine detection by words, one data file a language
(``en.txt``, ``es.txt``, ``fr.txt``, ``de.txt``; the format is in ``en.txt``)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from afterbeep.domain.amd_words import CueList

LANGUAGES = ("en", "es", "fr", "de")


def cue_language(language: str) -> str | None:
    """The cue list for a BCP 47 tag (`es-MX` -> `es`), or None when there is none."""
    code = language.strip().replace("_", "-").split("-")[0].lower()
    return code if code in LANGUAGES else None


@cache
def load_cues(language: str) -> CueList:
    """The cue list of ``language`` (a code of `LANGUAGES`); read once per process."""
    if language not in LANGUAGES:
        raise KeyError(f"no AMD cue list for language {language!r}")
    from afterbeep.domain.amd_words import parse_cues  # rapidfuzz: not at `afterbeep` start

    text = resources.files(__name__).joinpath(f"{language}.txt").read_text(encoding="utf-8")
    return parse_cues(language, text)
