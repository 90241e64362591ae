"""First turns of answered drop calls transcribed on a bounded pool of worker threads, off the
event loop (CTranslate2 releases the GIL while it decodes), for answering machine detection.

At most ``concurrency`` turns are transcribed at once on a node; a turn that finds every worker
busy is refused at once (`submit` returns None) rather than queued: its detector then decides
by timing alone, and says so in its cause, instead of waiting behind other calls.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

Audio = npt.NDArray[np.int16]


@cache
def shared_engine(model_dir: Path | None) -> TurnEngine:
    """One speech engine per process and model directory, so each model is loaded once
    however many runtimes a process builds (tests build many)."""
    from afterbeep.asr.whisper import WhisperEngine

    return WhisperEngine(model_dir=model_dir, threads=1)


class TurnEngine(Protocol):
    def transcribe_turn(self, audio: Audio, language: str, *, max_new_tokens: int = 24) -> str: ...

    def check(self, language: str) -> None: ...


class TurnTranscriber:
    """`telephony.scripts.drop.TurnWords` over a speech engine and a thread pool."""

    def __init__(self, engine: TurnEngine, *, concurrency: int, language: str) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.language = language
        self.concurrency = concurrency
        self._engine = engine
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="amd-words")
        self._lock = threading.Lock()
        self._running = 0
        self.submitted = 0
        self.refused = 0

    @property
    def running(self) -> int:
        return self._running

    def submit(self, audio: Audio) -> Future[str] | None:
        """Transcribe ``audio`` on a worker; None when all `concurrency` workers are busy."""
        with self._lock:
            if self._running >= self.concurrency:
                self.refused += 1
                return None
            self._running += 1
            self.submitted += 1
        try:
            future = self._pool.submit(self._engine.transcribe_turn, audio, self.language)
        except RuntimeError:  # shut down
            self._release(None)
            return None
        future.add_done_callback(self._release)
        return future

    def warm(self) -> Future[None]:
        """Load the model on a worker now, so the first call's words are not late for it."""
        return self._pool.submit(self._engine.check, self.language)

    def _release(self, _future: Future[str] | None) -> None:
        with self._lock:
            self._running -= 1

    def close(self) -> None:
        """Stop taking turns; transcriptions under way finish on their threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
