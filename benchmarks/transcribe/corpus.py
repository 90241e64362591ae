"""The labelled speech: Asterisk's core prompts, recorded by professional voices, with their texts.

Debian ships them as ``asterisk-core-sounds-{en,es,fr}-wav`` (8 kHz 16-bit WAV files under
``/usr/share/asterisk/sounds/<voice>/``) and the texts as ``core-sounds-<lang>.txt.gz`` in
``/usr/share/doc/asterisk-core-sounds-<lang>/`` (installed with them): one ``name: text`` line
per prompt, the name being the WAV's path without ``.wav``. `benchmarks/transcribe/install-corpus.sh`
installs the three.

Kept: prompts that are speech of at least three words, whose text is not marked up
(``[ascending tones]``, ``(beep)``, ``<beep ascending>``) or cut (``...para bloquear``), outside
the folders of single words (``digits/``, ``letters/``, ``phonetic/``, ``silence/``).
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf

from afterbeep.audio import g711
from benchmarks.transcribe.wer import normalise

SOUNDS = Path("/usr/share/asterisk/sounds")
TEXTS = "/usr/share/doc/asterisk-core-sounds-{language}/core-sounds-{language}.txt.gz"
SKIPPED_FOLDERS = ("digits/", "letters/", "phonetic/", "silence/")
_MARKUP = re.compile(r"[\[\]<>()]|\.\.\.|…")


class CorpusMissing(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Prompt:
    name: str
    text: str
    path: Path


def prompts(language: str, sounds: Path = SOUNDS) -> list[Prompt]:
    texts = Path(TEXTS.format(language=language))
    folder = sounds / language
    if not texts.exists() or not folder.is_dir():
        raise CorpusMissing(
            f"the {language} prompts are not installed ({texts}, {folder}): "
            "run benchmarks/transcribe/install-corpus.sh"
        )
    found = []
    with gzip.open(texts, "rt", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith(";") or ":" not in line:
                continue
            name, _, text = line.partition(":")
            name, text = name.strip(), text.strip().strip("“”\"")
            if name.startswith(SKIPPED_FOLDERS) or _MARKUP.search(text):
                continue
            if len(normalise(text, language)) < 3:
                continue
            path = folder / f"{name}.wav"
            if path.exists():
                found.append(Prompt(name, text, path))
    return found


def telephone_audio(path: Path) -> npt.NDArray[np.int16]:
    """The prompt as a caller's message arrives: 8 kHz, through a G.711 µ-law round trip."""
    data, rate = sf.read(path, dtype="int16")
    if rate != g711.SAMPLE_RATE or data.ndim != 1:
        raise ValueError(f"{path}: expected 8 kHz mono, got {rate} Hz, {data.ndim} dimensions")
    return g711.ulaw_decode(g711.ulaw_encode(np.asarray(data, dtype=np.int16)))


def message_of(items: list[Prompt], seconds: float, pause_ms: int = 600) -> npt.NDArray[np.int16]:
    """Exactly ``seconds`` of prompts one after another, ``pause_ms`` apart (for timing)."""
    target = int(seconds * g711.SAMPLE_RATE)
    pause = np.zeros(pause_ms * g711.SAMPLE_RATE // 1000, dtype=np.int16)
    parts: list[npt.NDArray[np.int16]] = []
    length = 0
    while length < target:
        for item in items:
            parts += [telephone_audio(item.path), pause]
            length += len(parts[-2]) + len(pause)
            if length >= target:
                break
    return np.concatenate(parts)[:target]


def grouped(items: list[Prompt], seconds: float, pause_ms: int = 600) -> list[tuple[npt.NDArray[np.int16], str]]:
    """Whole prompts gathered, in order, into messages of at most ``seconds`` (a longer prompt
    alone), ``pause_ms`` apart, with the text they hold."""
    pause = np.zeros(pause_ms * g711.SAMPLE_RATE // 1000, dtype=np.int16)
    limit = int(seconds * g711.SAMPLE_RATE)
    messages: list[tuple[npt.NDArray[np.int16], str]] = []
    parts: list[npt.NDArray[np.int16]] = []
    texts: list[str] = []
    length = 0
    for item in items:
        audio = telephone_audio(item.path)
        if parts and length + len(audio) > limit:
            messages.append((np.concatenate(parts), " ".join(texts)))
            parts, texts, length = [], [], 0
        parts += [audio, pause]
        texts.append(item.text)
        length += len(audio) + len(pause)
    if parts:
        messages.append((np.concatenate(parts), " ".join(texts)))
    return messages
