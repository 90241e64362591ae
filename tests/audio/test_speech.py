"""The espeak-ng adapter, with the real espeak-ng: the telephony format, voices chosen by
language, text spoken literally and safely, and the limits on time and output."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import pytest

from afterbeep.audio.levels import rms_dbfs
from afterbeep.audio.rendition import TELEPHONY_RATE, read_wav_pcm
from afterbeep.audio.speech import EspeakSynthesizer
from afterbeep.services.ports.speech import SpeechFailed, SpeechUnavailable, UnknownVoice


@pytest.fixture(scope="module")
def espeak() -> EspeakSynthesizer:
    return EspeakSynthesizer()


def _pcm(wav: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(wav)) as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (
            TELEPHONY_RATE,
            1,
            2,
        )
        assert reader.getcomptype() == "NONE"
    pcm, rate = read_wav_pcm(wav)
    assert rate == TELEPHONY_RATE
    return pcm


def _files(directory: Path) -> list[Path]:
    return list(directory.iterdir())


def _running(pid_file: Path) -> bool:
    return Path(f"/proc/{int(pid_file.read_text())}").exists()


async def test_speech_is_telephony_wav_with_speech_in_it(espeak: EspeakSynthesizer) -> None:
    voice = await espeak.voice("en-US")
    wav = await espeak.synthesize("Thank you for calling. Please hold.", voice)
    pcm = _pcm(wav)
    seconds = len(pcm) / TELEPHONY_RATE
    # Six words at espeak-ng's 175 words a minute, with its pauses: about two seconds.
    assert 1.0 < seconds < 5.0
    assert rms_dbfs(pcm) > -35
    # Speech has pauses and loud parts; a tone or noise would not vary like this.
    frames = pcm[: len(pcm) // 160 * 160].reshape(-1, 160).astype(np.float64)
    levels = np.sqrt((frames**2).mean(axis=1))
    assert (levels < 100).sum() > 3 and (levels > 1000).sum() > 10


async def test_the_same_text_and_voice_give_the_same_bytes(espeak: EspeakSynthesizer) -> None:
    voice = await espeak.voice("en")
    first = await espeak.synthesize("Press one for sales.", voice)
    assert await espeak.synthesize("Press one for sales.", voice) == first


async def test_another_language_speaks_differently(espeak: EspeakSynthesizer) -> None:
    english = await espeak.synthesize("Bonjour Madame", await espeak.voice("en"))
    french = await espeak.synthesize("Bonjour Madame", await espeak.voice("fr-CA"))
    assert english != french
    assert rms_dbfs(_pcm(french)) > -35


@pytest.mark.parametrize(
    ("language", "variant", "voice"),
    [
        ("en", None, "en-gb"),
        ("en-US", None, "en-us"),
        ("es", None, "es"),
        ("es-MX", None, "es-419"),
        ("es-AR", None, "es-419"),
        ("es-ES", None, "es"),
        ("fr-CA", None, "fr-fr"),
        ("de", None, "de"),
        ("de-AT", None, "de"),
        ("pt-BR", None, "pt-br"),
        ("zh-Hant-TW", None, "cmn"),
        ("en", "f3", "en-gb+f3"),
        ("en", "female3", "en-gb+f3"),
        ("es-MX", "+m3", "es-419+m3"),
        ("en-US", "Annie", "en-us+Annie"),
        ("en", "en-gb-scotland", "en-gb-scotland"),
        ("en", "en-gb-scotland+m3", "en-gb-scotland+m3"),
        ("de", "DE+klatt", "de+klatt"),
    ],
)
async def test_languages_and_variants_pick_espeak_voices(
    espeak: EspeakSynthesizer, language: str, variant: str | None, voice: str
) -> None:
    assert await espeak.voice(language, variant) == voice


@pytest.mark.parametrize(
    ("language", "variant", "reason"),
    [
        ("tlh", None, "no espeak-ng voice speaks 'tlh'"),
        ("en", "nosuchvoice", "no voice or variant 'nosuchvoice'"),
        ("en", "de", "'de' does not speak 'en'"),
        ("en", "en-us+nosuch", "no voice variant 'nosuch'"),
        ("en", "-w /tmp/x", "no voice or variant"),
        ("en", "+", "no voice or variant ''"),
    ],
)
async def test_unknown_languages_and_voices_are_refused(
    espeak: EspeakSynthesizer, language: str, variant: str | None, reason: str
) -> None:
    with pytest.raises(UnknownVoice, match=reason):
        await espeak.voice(language, variant)


async def test_markup_is_read_out_not_interpreted(espeak: EspeakSynthesizer) -> None:
    voice = await espeak.voice("en")
    plain = _pcm(await espeak.synthesize("hello", voice))
    marked = _pcm(await espeak.synthesize('<speak><break time="3s"/>hello</speak>', voice))
    # SSML would add 3 s of silence and say "hello"; as text, the tags are spoken.
    assert len(marked) > len(plain)
    silent = np.abs(marked[: 3 * TELEPHONY_RATE]) < 100
    assert silent.mean() < 0.8


async def test_shell_and_option_text_is_only_spoken(
    espeak: EspeakSynthesizer, tmp_path: Path
) -> None:
    voice = await espeak.voice("en")
    marker = tmp_path / "pwned"
    for text in (
        f"$(touch {marker}); `touch {marker}` && touch {marker} | cat; echo 'x' \"y\"",
        f"-w {marker}",
        f"--stdout -w {marker} --voices",
        "it's a \"quoted\" text\x00 with a NUL and \x1b[31m escapes",
    ):
        pcm = _pcm(await espeak.synthesize(text, voice))
        assert rms_dbfs(pcm) > -35
    assert _files(tmp_path) == []


async def test_a_voice_name_that_is_not_one_is_refused(espeak: EspeakSynthesizer) -> None:
    for bad in ("-w/tmp/x", "en us", "en;id", ""):
        with pytest.raises(UnknownVoice):
            await espeak.synthesize("hello", bad)


async def test_blank_text_is_refused(espeak: EspeakSynthesizer) -> None:
    with pytest.raises(SpeechFailed, match="no text"):
        await espeak.synthesize(" \x00\n ", "en")


async def test_output_past_the_limit_stops_the_engine() -> None:
    short = EspeakSynthesizer(max_seconds=1)
    voice = await short.voice("en")
    with pytest.raises(SpeechFailed, match="longer than 1 s"):
        await short.synthesize("This sentence takes well over one second to say. " * 20, voice)


async def test_an_engine_that_hangs_is_killed(tmp_path: Path) -> None:
    hanging = tmp_path / "espeak-ng"
    pid_file = tmp_path / "pid"
    hanging.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n")
    hanging.chmod(0o755)
    engine = EspeakSynthesizer(binary=str(hanging), timeout=0.5)
    with pytest.raises(SpeechFailed, match=r"took longer than 0\.5 s"):
        await engine.synthesize("hello", "en")
    assert not _running(pid_file)  # killed and reaped


async def test_a_failing_engine_says_why(tmp_path: Path) -> None:
    failing = tmp_path / "espeak-ng"
    failing.write_text("#!/bin/sh\necho 'Error: something broke' >&2\nexit 3\n")
    failing.chmod(0o755)
    with pytest.raises(SpeechFailed, match="something broke"):
        await EspeakSynthesizer(binary=str(failing)).synthesize("hello", "en")


async def test_no_engine_is_unavailable(tmp_path: Path) -> None:
    missing = EspeakSynthesizer(binary=str(tmp_path / "espeak-ng"))
    with pytest.raises(SpeechUnavailable):
        await missing.voice("en")
    with pytest.raises(SpeechUnavailable):
        await missing.synthesize("hello", "en")
