"""Spotting the words of a recorded greeting ("leave a message") in one short turn of 8 kHz audio.

Keyword search of pocketsphinx (CMU's offline recogniser, with the US English acoustic model its
wheel ships: nothing is downloaded) over a fixed list of phrases, each with its own threshold.
A full transcription would be slower (about real time here) and, on telephone audio, no more
reliable for these few phrases. The model is trained on 16 kHz speech: the turn is resampled to
16 kHz first (its upper band stays empty).

English only: the answering machine detector asks this only about a turn it would otherwise
take for a person's short hello, and acts only on a clear hit. On other languages it simply
finds nothing.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Mapping
from functools import cache

import numpy as np
import numpy.typing as npt
import soxr
from pocketsphinx import Decoder  # type: ignore[import-untyped]

Audio = npt.NDArray[np.int16]

RATE = 8000
DECODER_RATE = 16000

# phrase -> keyword search threshold (lower finds more and errs more); each was raised until no
# person's hello in the tuning corpora (seeds 7 and 8) was hit
PHRASES: Mapping[str, float] = {
    "leave a message": 1e-35,
    "not available": 1e-35,
    "after the tone": 1e-35,
}


class GreetingWords:
    """One pocketsphinx decoder; `spot` is safe to call from several threads (they take turns)."""

    def __init__(self, phrases: Mapping[str, float] = PHRASES) -> None:
        self.phrases = dict(phrases)
        with tempfile.NamedTemporaryFile("w", suffix=".kws", delete=False) as listing:
            listing.writelines(f"{phrase} /{threshold:g}/\n" for phrase, threshold in self.phrases.items())
        try:
            self._decoder = Decoder(samprate=DECODER_RATE, kws=listing.name, lm=None, loglevel="FATAL")
        finally:
            os.unlink(listing.name)
        self._lock = threading.Lock()

    def spot(self, pcm: Audio) -> list[str]:
        """The phrases heard in 8 kHz mono audio, in order."""
        if len(pcm) == 0:
            return []
        wide = soxr.resample(pcm.astype(np.float32), RATE, DECODER_RATE)
        raw = np.clip(np.rint(wide), -32768, 32767).astype(np.int16).tobytes()
        with self._lock:
            self._decoder.start_utt()
            self._decoder.process_raw(raw, full_utt=True)
            self._decoder.end_utt()
            hyp = self._decoder.hyp()
        if hyp is None:
            return []
        return [p.strip() for p in hyp.hypstr.split("  ") if p.strip() in self.phrases]


@cache
def shared() -> GreetingWords:
    """The process-wide spotter (loading the model takes about 0.3 s and 40 MB)."""
    return GreetingWords()
