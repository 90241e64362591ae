"""The speech-to-text engine port: audio in, `Transcript` out, no I/O beyond the model."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from afterbeep.domain.transcripts import Transcript


class TranscriptionUnavailable(Exception):
    """The engine cannot transcribe at all (model files missing or failing their checksum,
    language without a model); `str()` is the reason stored on the message."""


class TranscriptionEngine(Protocol):
    def transcribe(self, audio: npt.NDArray[np.int16], language: str) -> Transcript:
        """Transcribe 8 kHz mono 16-bit PCM spoken in ``language`` (`en`, `es-MX`, ...).

        CPU-bound and blocking: callers run it off the event loop. Raises
        `TranscriptionUnavailable` when no model can serve ``language``.
        """
        ...
