"""`TranscriptionEngine` on faster-whisper (CTranslate2), with the models of `asr.models`.

- Model choice: tiny.en for English (`en`, `en-GB`, ...), base for every other language
  Whisper knows; an operator's model directory, when given, for every language it supports.
- Loading: lazily, once per model and process, on first use. Every model file's SHA-256 is
  checked against `asr.models` (streamed, 1 MiB at a time), then linked into a private
  temporary directory (a file in parts is joined there), and CTranslate2 loads that directory,
  which is removed once the model is in memory: only checked files are seen, and a load does
  not hold the file's bytes besides the model (with faster-whisper's ``files=``, base took
  388 MB resident once loaded and 630 MB at peak with a 60 s message; this way 241 and 413). Nothing is ever downloaded:
  faster-whisper is only ever given a directory, and ``HF_HUB_OFFLINE`` is set before it is
  imported. A model that cannot be loaded stays refused until the process restarts.
- Decoding: 8 kHz int16 is resampled to 16 kHz float32 with soxr; greedy search at
  temperature 0 with no fallback, the language forced, no voice activity filter (Whisper's own
  no-speech test drops silence), no conditioning on the previous text (which lets one bad
  guess repeat itself through a message). The choices were measured with
  ``benchmarks/transcribe`` (benchmarks/README.md).
- Long audio is transcribed in windows of at most `WINDOW_SECONDS`, cut at the quietest
  moment near the end of each, so memory does not grow with the message's length.
- Confidence: a segment's is ``exp(avg_logprob)``, the geometric mean of the probabilities
  Whisper gave its tokens (1.0: every token certain; about 0.5 and below: mostly guesses); the
  transcript's is the mean of its segments' weighted by their duration.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import soxr

from afterbeep.asr.models import (
    BASE,
    TINY_EN,
    Locator,
    ModelError,
    ModelSpec,
    operator_spec,
    package_folder,
    part_path,
)
from afterbeep.domain.transcripts import Segment, Transcript
from afterbeep.services.ports.transcription import TranscriptionUnavailable

INPUT_RATE = 8000
MODEL_RATE = 16000
WINDOW_SECONDS = 120.0
# A window ends at the quietest `_CUT_FRAME_SECONDS` within its last `CUT_SEARCH_SECONDS`.
CUT_SEARCH_SECONDS = 20.0
_CUT_FRAME_SECONDS = 0.1
DEFAULT_BEAM_SIZE = 1
TURN_PAD_SECONDS = 5.0  # a first turn is given to the encoder padded to this length at least
TURN_MAX_SECONDS = 30.0


def whisper_language(language: str) -> str:
    """The Whisper code for a BCP 47 tag (`es-MX` → `es`); "" when the language is unknown
    ("", `und`, `mul`): then base detects it from the first window that holds speech."""
    code = language.strip().replace("_", "-").split("-")[0].lower()
    return "" if code in ("und", "mul") else code


def supported_languages() -> frozenset[str]:
    """The languages the multilingual models know (Whisper's list, as faster-whisper has it)."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return frozenset(_LANGUAGE_CODES)


@dataclass(frozen=True, slots=True)
class _Loaded:
    model: Any  # faster_whisper.WhisperModel
    multilingual: bool


class WhisperEngine:
    """Speech to text with faster-whisper; blocking and CPU-bound, safe to call from threads.

    ``model_dir``: an operator's CTranslate2 Whisper model (with its ``SHA256SUMS``), used for
    all languages instead of the bundled models. ``threads``: CPU threads per transcription.
    ``window_seconds``: the longest stretch of audio given to Whisper at once (memory).
    ``vad``: let faster-whisper's Silero voice activity filter drop non-speech first.
    ``locate``: where an installed package's folder is (tests point it at altered copies).
    """

    def __init__(
        self,
        *,
        model_dir: Path | None = None,
        threads: int = 1,
        beam_size: int = DEFAULT_BEAM_SIZE,
        window_seconds: float = WINDOW_SECONDS,
        vad: bool = False,
        locate: Locator = package_folder,
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        if beam_size < 1:
            raise ValueError("beam_size must be at least 1")
        if not 6 <= window_seconds <= 600:
            raise ValueError("window_seconds must be between 6 and 600")
        self.model_dir = model_dir
        self.threads = threads
        self.beam_size = beam_size
        self.window_seconds = window_seconds
        self.vad = vad
        self._locate = locate
        self._lock = threading.Lock()
        self._loaded: dict[str, _Loaded | TranscriptionUnavailable] = {}

    def transcribe(self, audio: npt.NDArray[np.int16], language: str) -> Transcript:
        if audio.ndim != 1:
            raise ValueError("audio must be mono (one dimension)")
        code = whisper_language(language)
        loaded = self._model_for(code)
        segments: list[Segment] = []
        texts: list[str] = []
        for start, window in windows(audio, self.window_seconds):
            text, found, used = _transcribe_window(loaded.model, window, code or None, self.beam_size, self.vad)
            offset_ms = round(start * 1000 / INPUT_RATE)
            window_ms = round(len(window) * 1000 / INPUT_RATE)
            for segment in found:
                segments.append(
                    Segment(
                        start_ms=offset_ms + min(segment.start_ms, window_ms),
                        end_ms=offset_ms + min(segment.end_ms, window_ms),
                        text=segment.text,
                        confidence=segment.confidence,
                    )
                )
            if text:
                texts.append(text)
            if not code and found:
                code = used  # detected in the first window that holds speech, kept after it
        return Transcript(
            text=" ".join(texts),
            language=code,
            segments=tuple(segments),
            confidence=_overall_confidence(segments),
        )

    def transcribe_turn(self, audio: npt.NDArray[np.int16], language: str, *, max_new_tokens: int = 24) -> str:
        """The words of one short turn (answering machine detection): greedy, at temperature
        0, the language given, no timestamps, at most ``max_new_tokens`` tokens (a greeting's
        first sentence needs about 15).

        The encoder is given the turn padded to `TURN_PAD_SECONDS` (or the turn and 1.5 s of
        silence) rather than Whisper's 30 s window: its cost grows with its input, and a 5 s
        input takes a fifth of the CPU of 30 s (tiny.en: ~150 ms for a hello instead of
        ~800 ms) for the same words on the AMD corpus's turns."""
        code = whisper_language(language)
        if not code:
            raise TranscriptionUnavailable("a turn's language must be given")
        model = self._model_for(code).model
        samples = _to_model_rate(audio[: int(TURN_MAX_SECONDS * INPUT_RATE)])
        length = min(TURN_MAX_SECONDS, max(TURN_PAD_SECONDS, len(samples) / MODEL_RATE + 1.5))
        padded = np.zeros(int(length * MODEL_RATE), dtype=np.float32)
        padded[: len(samples)] = samples
        features = model.feature_extractor(padded)
        frames = features.shape[-1] - features.shape[-1] % 2
        return _decode_turn(model, features[:, :frames], code, max_new_tokens)

    def check(self, language: str) -> None:
        """Load (and verify) the model for ``language`` now; raises `TranscriptionUnavailable`."""
        self._model_for(whisper_language(language))

    def _model_for(self, code: str) -> _Loaded:
        if code and code not in supported_languages():
            raise TranscriptionUnavailable(f"no speech model knows the language {code!r}")
        if self.model_dir is not None:
            key = "operator"
        else:
            key = TINY_EN.name if code == "en" else BASE.name
        loaded = self._load(key)
        if code != "en" and not loaded.multilingual:
            raise TranscriptionUnavailable(
                f"the model in AFTERBEEP_ASR_MODEL_DIR ({self.model_dir}) is English-only; "
                f"it cannot transcribe {code or 'a message in an unknown language'}"
            )
        return loaded

    def _load(self, key: str) -> _Loaded:
        with self._lock:
            cached = self._loaded.get(key)
            if cached is None:
                try:
                    cached = self._load_now(key)
                except TranscriptionUnavailable as exc:
                    cached = exc
                self._loaded[key] = cached
        if isinstance(cached, TranscriptionUnavailable):
            raise TranscriptionUnavailable(str(cached))
        return cached

    def _load_now(self, key: str) -> _Loaded:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from faster_whisper import WhisperModel

        with tempfile.TemporaryDirectory(prefix="afterbeep-asr-") as staging:
            try:
                spec = operator_spec(self.model_dir) if key == "operator" and self.model_dir else (
                    TINY_EN if key == TINY_EN.name else BASE
                )
                prepare_verified(spec, Path(staging), self._locate)
            except ModelError as exc:
                raise TranscriptionUnavailable(str(exc)) from None
            try:
                model = WhisperModel(
                    staging, device="cpu", compute_type="int8", cpu_threads=self.threads, num_workers=1
                )
            except (RuntimeError, ValueError, OSError) as exc:
                raise TranscriptionUnavailable(f"{spec.name} could not be loaded: {exc}") from exc
        multilingual = bool(model.model.is_multilingual)
        if spec.multilingual is not None and multilingual != spec.multilingual:
            raise TranscriptionUnavailable(f"{spec.name} is not the model its files claim to be")
        return _Loaded(model, multilingual)


_CHUNK = 1 << 20


def _hash_file(path: Path, digests: list[Any], copy_to: BinaryIO | None = None) -> None:
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            for digest in digests:
                digest.update(chunk)
            if copy_to is not None:
                copy_to.write(chunk)


def prepare_verified(spec: ModelSpec, into: Path, locate: Locator = package_folder) -> None:
    """Fill the empty directory ``into`` with the files of ``spec``, each checked by SHA-256
    (every part, and a joined file as a whole): a link to a file of one part, a joined copy of
    a file of several. Reads in 1 MiB chunks, so memory does not grow with the model."""
    for model_file in spec.files:
        target = into / model_file.name
        whole = hashlib.sha256()
        joined = target.open("wb") if len(model_file.parts) > 1 else None
        try:
            for part in model_file.parts:
                path = part_path(part, locate)
                digest = hashlib.sha256()
                try:
                    _hash_file(path, [digest, whole], joined)
                except FileNotFoundError:
                    hint = f"; reinstall {part.package}" if part.package else ""
                    raise ModelError(f"model file {path.name} of {spec.name} is missing ({path}){hint}") from None
                except OSError as exc:
                    raise ModelError(f"model file {path.name} of {spec.name} cannot be read: {exc}") from exc
                if digest.hexdigest() != part.sha256:
                    raise ModelError(f"model file {path.name} of {spec.name} failed its SHA-256 check ({path})")
                if joined is None:
                    target.symlink_to(path.resolve())
        finally:
            if joined is not None:
                joined.close()
        if joined is not None and whole.hexdigest() != model_file.sha256:
            raise ModelError(f"model file {model_file.name} of {spec.name} (its parts joined) failed its SHA-256 check")


def windows(
    audio: npt.NDArray[np.int16], window_seconds: float = WINDOW_SECONDS
) -> Iterable[tuple[int, npt.NDArray[np.int16]]]:
    """(first sample, samples) of consecutive windows of at most ``window_seconds``, each cut
    at its quietest `_CUT_FRAME_SECONDS` within its last sixth (`CUT_SEARCH_SECONDS` at most)."""
    limit = int(window_seconds * INPUT_RATE)
    search = int(min(CUT_SEARCH_SECONDS, window_seconds / 6) * INPUT_RATE)
    frame = int(_CUT_FRAME_SECONDS * INPUT_RATE)
    start = 0
    while start < len(audio):
        if len(audio) - start <= limit:
            yield start, audio[start:]
            return
        tail = audio[start + limit - search : start + limit].astype(np.float64)
        energy = np.square(tail[: len(tail) // frame * frame]).reshape(-1, frame).sum(axis=1)
        quietest = int(np.argmin(energy))
        end = start + limit - search + quietest * frame + frame // 2
        yield start, audio[start:end]
        start = end


def _to_model_rate(window: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
    floats = window.astype(np.float32) / 32768.0
    return np.asarray(soxr.resample(floats, INPUT_RATE, MODEL_RATE), dtype=np.float32)


def _transcribe_window(
    model: Any, window: npt.NDArray[np.int16], language: str | None, beam_size: int, vad: bool
) -> tuple[str, list[Segment], str]:
    pieces, info = model.transcribe(
        _to_model_rate(window),
        language=language,
        task="transcribe",
        beam_size=beam_size,
        best_of=1,
        temperature=0.0,
        condition_on_previous_text=False,
        vad_filter=vad,
        word_timestamps=False,
        without_timestamps=False,
    )
    segments: list[Segment] = []
    raw: list[str] = []
    for piece in pieces:
        text = piece.text.strip()
        if not text:
            continue
        raw.append(piece.text)
        segments.append(
            Segment(
                start_ms=max(0, round(piece.start * 1000)),
                end_ms=max(0, round(piece.end * 1000)),
                text=text,
                confidence=round(math.exp(min(0.0, piece.avg_logprob)), 4),
            )
        )
    return "".join(raw).strip(), segments, str(info.language)


def _decode_turn(model: Any, features: npt.NDArray[np.float32], language: str, max_new_tokens: int) -> str:
    import ctranslate2

    tokenizer = model.hf_tokenizer
    prompt = [tokenizer.token_to_id("<|startoftranscript|>")]
    if model.model.is_multilingual:
        prompt += [tokenizer.token_to_id(f"<|{language}|>"), tokenizer.token_to_id("<|transcribe|>")]
    prompt.append(tokenizer.token_to_id("<|notimestamps|>"))
    batch = ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None], dtype=np.float32))
    result = model.model.generate(
        batch,
        [prompt],
        beam_size=1,
        sampling_temperature=0.0,
        max_length=max_new_tokens,
        suppress_blank=True,
        suppress_tokens=[-1],
        return_no_speech_prob=True,
    )[0]
    if result.no_speech_prob > _NO_SPEECH:
        return ""
    text: str = tokenizer.decode([t for t in result.sequences_ids[0] if t < tokenizer.token_to_id("<|endoftext|>")])
    return text.strip()


_NO_SPEECH = 0.6  # faster-whisper's no_speech_threshold


def _overall_confidence(segments: list[Segment]) -> float | None:
    weights = [(max(s.end_ms - s.start_ms, 1), s.confidence) for s in segments if s.confidence is not None]
    if not weights:
        return None
    total = sum(w for w, _ in weights)
    return round(sum(w * c for w, c in weights) / total, 4)

