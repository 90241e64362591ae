"""Text-to-speech with espeak-ng (Debian package `espeak-ng`): the `SpeechSynthesizer` port.

espeak-ng runs as a subprocess with an argument list (no shell). The text goes on its standard
input in plain-text mode (no `-m`: `<speak>` and other markup are read out, never interpreted),
with control characters replaced by spaces. Every run has a time limit and an output limit;
past either the process is killed. The WAV it writes (22 050 Hz) is resampled with soxr to the
telephony rendition: 8 kHz mono 16-bit PCM.

Voices come from espeak-ng's own catalogue (`espeak-ng --voices`, `--voices=variant`), read
once. A BCP 47 tag is matched to a voice by its full tag (`en-US` → `en-us`), then the
languages a voice declares (`es-MX` → `es-419`, `en` → `en-gb`), then its base language
(`fr-CA` → `fr` → `fr-fr`, `de-AT` → `de`); Latin American Spanish takes `es-419`. A variant
is a voice of the same language (`en-gb-scotland`), a voice variant (`f3`, `female3`, `Annie`),
or both (`en-gb-scotland+f3`).
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import soundfile as sf

from afterbeep.audio.decode import DecodedAudio
from afterbeep.audio.rendition import telephony_wav_bytes, to_telephony
from afterbeep.services.ports.speech import SpeechFailed, SpeechUnavailable, UnknownVoice

log = logging.getLogger("afterbeep.speech")

ESPEAK = "/usr/bin/espeak-ng"
TIMEOUT_SECONDS = 20.0
MAX_SPEECH_SECONDS = 180
# espeak-ng writes 16-bit mono at 22 050 Hz; the limit allows for a rate up to 48 kHz.
_MAX_BYTES_PER_SECOND = 48_000 * 2
_MAX_CATALOGUE_BYTES = 1024 * 1024
_MAX_STDERR_BYTES = 4096
# Spanish of the Americas (and 419, Latin America) speaks with espeak-ng's `es-419`.
_LATIN_AMERICA = frozenset(
    {"419", "AR", "BO", "CL", "CO", "CR", "CU", "DO", "EC", "GT", "HN", "MX", "NI", "PA", "PE"}
    | {"PR", "PY", "SV", "US", "UY", "VE"}
)
_VOICE_SPEC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(\+[A-Za-z0-9][A-Za-z0-9_-]*)?$")
_OTHER_LANGUAGE = re.compile(r"\(([^ ()]+) (\d+)\)")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class Catalogue:
    """What espeak-ng knows: voices by their language name (`en-us`), the best voice for each
    language a voice declares (`en` → `en-gb`), and variants by their file id (`f3`)."""

    voices: Mapping[str, frozenset[str]]  # voice -> the base languages it speaks
    languages: Mapping[str, str]  # declared language -> voice
    variants: Mapping[str, str]  # lowercased id or name -> file id

    @classmethod
    def parse(cls, voices_text: str, variants_text: str) -> Catalogue:
        voices: dict[str, set[str]] = {}
        declared: dict[str, tuple[int, str]] = {}
        for line in voices_text.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 5:
                continue
            name = fields[1].lower()
            spoken = voices.setdefault(name, {name.split("-")[0]})
            for language, priority in _OTHER_LANGUAGE.findall(" ".join(fields[5:])):
                language = language.lower()
                spoken.add(language.split("-")[0])
                best = declared.get(language)
                if best is None or int(priority) < best[0]:
                    declared[language] = (int(priority), name)
        variants: dict[str, str] = {}
        for line in variants_text.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 5 or not fields[4].startswith("!v/"):
                continue
            file_id = fields[4][3:]
            variants.setdefault(file_id.lower(), file_id)
            variants.setdefault(fields[3].lower(), file_id)
        return cls(
            MappingProxyType({k: frozenset(v) for k, v in voices.items()}),
            MappingProxyType({k: v for k, (_p, v) in declared.items()}),
            MappingProxyType(variants),
        )

    def voice_for(self, language: str) -> str | None:
        """The voice that speaks a BCP 47 tag, or None."""
        parts = language.lower().split("-")
        candidates = ["-".join(parts)]
        if parts[0] == "es" and len(parts) > 1 and parts[-1].upper() in _LATIN_AMERICA:
            candidates.append("es-419")
        candidates.append(parts[0])
        for candidate in candidates:
            if candidate in self.voices:
                return candidate
            if candidate in self.languages:
                return self.languages[candidate]
        return None

    def resolve(self, language: str, variant: str | None) -> str:
        """The `-v` argument for `language` with `variant`; raises `UnknownVoice`."""
        voice = self.voice_for(language)
        if voice is None:
            raise UnknownVoice(f"no espeak-ng voice speaks {language!r}")
        if variant is None:
            return voice
        base = language.lower().split("-")[0]
        named, _, variant_name = variant.strip().partition("+")
        chosen_variant: str | None = None
        if variant_name:
            chosen_variant = self.variants.get(variant_name.lower())
            if chosen_variant is None:
                raise UnknownVoice(f"espeak-ng has no voice variant {variant_name!r}")
        if named.lower() in self.voices:
            if base not in self.voices[named.lower()] and named.lower() != voice:
                raise UnknownVoice(f"the espeak-ng voice {named!r} does not speak {language!r}")
            voice = named.lower()
        elif not variant_name and named.lower() in self.variants:
            chosen_variant = self.variants[named.lower()]
        elif named or chosen_variant is None:  # `+f3` alone: the language's voice, that variant
            raise UnknownVoice(
                f"espeak-ng has no voice or variant {named!r} (see `espeak-ng --voices`"
                " and `espeak-ng --voices=variant`)"
            )
        return voice if chosen_variant is None else f"{voice}+{chosen_variant}"


class EspeakSynthesizer:
    """The `SpeechSynthesizer` of espeak-ng. The catalogue is read on first use (so a service
    without espeak-ng starts, and answers `SpeechUnavailable` when speech is asked for)."""

    def __init__(
        self,
        binary: str = ESPEAK,
        timeout: float = TIMEOUT_SECONDS,
        max_seconds: int = MAX_SPEECH_SECONDS,
    ) -> None:
        self._binary = binary
        self._timeout = timeout
        self._max_seconds = max_seconds
        self._catalogue: Catalogue | None = None
        self._loading = asyncio.Lock()

    async def catalogue(self) -> Catalogue:
        if self._catalogue is None:
            async with self._loading:
                if self._catalogue is None:
                    voices = await self._run(["--voices"], b"", _MAX_CATALOGUE_BYTES)
                    variants = await self._run(["--voices=variant"], b"", _MAX_CATALOGUE_BYTES)
                    self._catalogue = Catalogue.parse(
                        voices.decode("utf-8", "replace"), variants.decode("utf-8", "replace")
                    )
        return self._catalogue

    async def voice(self, language: str, variant: str | None = None) -> str:
        return (await self.catalogue()).resolve(language, variant)

    async def synthesize(self, text: str, voice: str) -> bytes:
        if not _VOICE_SPEC.match(voice):
            raise UnknownVoice(f"{voice[:40]!r} is not an espeak-ng voice name")
        spoken = _CONTROL.sub(" ", text).strip()
        if not spoken:
            raise SpeechFailed("there is no text to speak")
        limit = 64 + self._max_seconds * _MAX_BYTES_PER_SECOND
        # -b 1: the input is UTF-8; --stdin: the text is read there, never parsed as options.
        wav = await self._run(["-v", voice, "-b", "1", "--stdin", "--stdout"], spoken.encode(), limit)
        return await asyncio.to_thread(_telephony, wav)

    async def _run(self, args: Sequence[str], stdin: bytes, max_bytes: int) -> bytes:
        try:
            process = await asyncio.create_subprocess_exec(
                self._binary,
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise SpeechUnavailable(f"espeak-ng cannot be started: {exc.strerror}") from exc
        assert process.stdin and process.stdout and process.stderr

        def stop() -> None:
            if process.returncode is None:
                process.kill()

        try:
            async with asyncio.timeout(self._timeout):
                _sent, out, err = await asyncio.gather(
                    _feed(process.stdin, stdin),
                    _read_at_most(process.stdout, max_bytes, stop),
                    _read_at_most(process.stderr, _MAX_STDERR_BYTES, stop),
                )
                status = await process.wait()
        except TimeoutError as exc:
            raise SpeechFailed(f"espeak-ng took longer than {self._timeout:g} s") from exc
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        if out is None:
            raise SpeechFailed(f"the speech would be longer than {self._max_seconds} s")
        if status != 0:
            reason = (err or b"").decode("utf-8", "replace").strip().splitlines()
            raise SpeechFailed(f"espeak-ng failed ({reason[0][:200] if reason else status})")
        return out


async def _feed(stream: asyncio.StreamWriter, data: bytes) -> None:
    try:
        stream.write(data)
        await stream.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the process ended first: its exit status says why
    finally:
        stream.close()


async def _read_at_most(
    stream: asyncio.StreamReader, limit: int, kill: Callable[[], None]
) -> bytes | None:
    """The stream to its end, or None once it passes `limit` bytes (the process is killed
    then, so that it does not block on a pipe nobody reads)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(65536):
        size += len(chunk)
        if size > limit:
            kill()
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _telephony(wav: bytes) -> bytes:
    """espeak-ng's WAV (its header gives no length: it was written to a pipe) as the telephony
    rendition."""
    try:
        samples, rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise SpeechFailed("espeak-ng wrote no readable WAV") from exc
    if len(samples) == 0 or not np.any(samples):
        raise SpeechFailed("espeak-ng wrote no audio")
    decoded = DecodedAudio(samples, int(rate), int(samples.shape[1]), "WAV", "PCM_16")
    return telephony_wav_bytes(to_telephony(decoded))
