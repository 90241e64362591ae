"""The text-to-speech port: text in a language (and an optional voice variant) in, the
telephony rendition's format out (8 kHz mono 16-bit PCM WAV).

SpeechError
 ├── SpeechUnavailable   the engine cannot run at all (not installed, cannot start)
 ├── UnknownVoice        the language or voice is not one the engine knows
 └── SpeechFailed        this text could not be spoken (engine error, too slow, too long)

`str()` of each is a reason fit for the API (no text, no paths).
"""

from __future__ import annotations

from typing import Protocol


class SpeechError(Exception):
    """Base of the speech port's errors."""


class SpeechUnavailable(SpeechError):
    """The engine cannot speak anything (not installed, cannot be started)."""


class UnknownVoice(SpeechError):
    """The language, or the voice asked for, is not known to the engine."""


class SpeechFailed(SpeechError):
    """The engine could not speak this text."""


class SpeechSynthesizer(Protocol):
    async def voice(self, language: str, variant: str | None = None) -> str:
        """The engine's name for the voice that speaks `language` (a BCP 47 tag: `en`,
        `es-MX`, `fr-CA`), with `variant` (a voice of that language or a variant of its voice)
        when given. The same inputs always give the same name, so it can key a cache.

        Raises `UnknownVoice` (naming what is unknown) or `SpeechUnavailable`.
        """
        ...

    async def synthesize(self, text: str, voice: str) -> bytes:
        """`text`, spoken literally (no markup is interpreted) by `voice` (a name `voice()`
        returned), as an 8 kHz mono 16-bit PCM WAV file. The same inputs give the same bytes.

        Raises `SpeechFailed` or `SpeechUnavailable`.
        """
        ...
