"""Speech to text: the faster-whisper adapter of the `TranscriptionEngine` port."""

from __future__ import annotations

from afterbeep.asr.whisper import WhisperEngine
from afterbeep.config import Settings


def engine_from_settings(settings: Settings) -> WhisperEngine | None:
    """The engine `AFTERBEEP_TRANSCRIBE`, `AFTERBEEP_ASR_MODEL_DIR` and `AFTERBEEP_ASR_THREADS`
    ask for; None when transcription is off. Loads nothing yet."""
    if not settings.transcribe:
        return None
    return WhisperEngine(model_dir=settings.asr_model_dir, threads=settings.asr_threads)
