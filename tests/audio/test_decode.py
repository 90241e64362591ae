from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from afterbeep.audio.decode import (
    AudioError,
    AudioTooLong,
    CorruptAudio,
    UnsupportedAudio,
    WrongFormat,
    probe_and_decode,
)
from tests.audio.signals import (
    LEFT_HZ,
    RIGHT_HZ,
    STEREO_RATE,
    STEREO_SECONDS,
    dominant_hz,
    sine,
)

MP3_FRAME_MS = 1152 * 1000 / STEREO_RATE


def test_stereo_mp3(stereo_mp3: Path) -> None:
    decoded = probe_and_decode(stereo_mp3, allowed_formats={"MP3"})
    assert (decoded.format, decoded.subtype) == ("MP3", "MPEG_LAYER_III")
    assert decoded.sample_rate == STEREO_RATE
    assert decoded.channels == 2
    assert decoded.samples.dtype == np.float32
    assert decoded.samples.shape == (decoded.frames, 2)
    assert abs(decoded.duration_ms - STEREO_SECONDS * 1000) <= MP3_FRAME_MS
    middle = decoded.samples[STEREO_RATE // 2 : STEREO_RATE * 5 // 2]
    assert dominant_hz(middle[:, 0], STEREO_RATE) == pytest.approx(LEFT_HZ, abs=1)
    assert dominant_hz(middle[:, 1], STEREO_RATE) == pytest.approx(RIGHT_HZ, abs=1)


def test_wav_16k_is_decoded_sample_exact(mono_wav_16k: Path) -> None:
    decoded = probe_and_decode(mono_wav_16k)
    assert (decoded.format, decoded.subtype) == ("WAV", "PCM_16")
    assert (decoded.sample_rate, decoded.channels, decoded.duration_ms) == (16000, 1, 2000)
    written, _ = sf.read(mono_wav_16k, dtype="float32", always_2d=True)
    np.testing.assert_array_equal(decoded.samples, written)


def test_flac(flac_48k: Path) -> None:
    decoded = probe_and_decode(flac_48k, allowed_formats={"flac", "mp3"})
    assert (decoded.format, decoded.sample_rate, decoded.channels) == ("FLAC", 48000, 1)
    assert decoded.duration_ms == 1500
    assert dominant_hz(decoded.samples[:, 0], 48000) == pytest.approx(300, abs=1)


def test_ogg_vorbis(tmp_path: Path) -> None:
    path = tmp_path / "a.ogg"
    sf.write(path, sine(500, 1, 22050), 22050)
    decoded = probe_and_decode(path)
    assert (decoded.format, decoded.subtype, decoded.sample_rate) == ("OGG", "VORBIS", 22050)
    assert decoded.duration_ms == 1000


def test_bytes_and_file_objects_decode_like_the_path(stereo_mp3: Path) -> None:
    from_path = probe_and_decode(stereo_mp3)
    from_bytes = probe_and_decode(stereo_mp3.read_bytes())
    with stereo_mp3.open("rb") as file:
        from_file = probe_and_decode(file)
    np.testing.assert_array_equal(from_path.samples, from_bytes.samples)
    np.testing.assert_array_equal(from_path.samples, from_file.samples)


def test_long_file_is_read_in_blocks(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    samples = sine(200, 20, 8000)
    sf.write(path, samples, 8000, subtype="FLOAT")
    decoded = probe_and_decode(path)
    assert decoded.duration_ms == 20000
    np.testing.assert_array_equal(decoded.samples[:, 0], samples)


def test_wav_renamed_mp3_is_the_wrong_format(mono_wav_16k: Path) -> None:
    renamed = mono_wav_16k.rename(mono_wav_16k.with_suffix(".mp3"))
    with pytest.raises(WrongFormat) as caught:
        probe_and_decode(renamed, allowed_formats={"MP3"})
    assert caught.value.found == "WAV"
    assert caught.value.allowed == frozenset({"MP3"})
    assert probe_and_decode(renamed).format == "WAV"


def test_mp3_is_the_wrong_format_where_wav_is_required(stereo_mp3: Path) -> None:
    with pytest.raises(WrongFormat):
        probe_and_decode(stereo_mp3, allowed_formats={"WAV"})


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"Hello,\nthis is a text file pretending to be audio.\n" * 40,
        b"<html><body>not audio</body></html>",
    ],
    ids=["empty", "text", "html"],
)
def test_not_audio(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "upload.mp3"
    path.write_bytes(content)
    with pytest.raises(UnsupportedAudio):
        probe_and_decode(path)
    with pytest.raises(UnsupportedAudio):
        probe_and_decode(content)


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "noise.mp3"
    path.write_bytes(np.random.default_rng(seed).bytes(20000))
    with pytest.raises(UnsupportedAudio):
        probe_and_decode(path, allowed_formats={"MP3"})


def test_random_bytes_that_start_with_an_mpeg_sync_word_are_not_mp3() -> None:
    data = np.random.default_rng(1).bytes(20000)  # this seed begins with ff e4
    assert data[0] == 0xFF
    with pytest.raises(UnsupportedAudio):
        probe_and_decode(data)


def test_mp3_cut_in_half_is_corrupt(stereo_mp3: Path) -> None:
    data = stereo_mp3.read_bytes()
    with pytest.raises(CorruptAudio, match="header claims"):
        probe_and_decode(data[: len(data) // 2], allowed_formats={"MP3"})


def test_mp3_cut_to_1000_bytes_is_corrupt(stereo_mp3: Path, tmp_path: Path) -> None:
    path = tmp_path / "short.mp3"
    path.write_bytes(stereo_mp3.read_bytes()[:1000])
    with pytest.raises(CorruptAudio):
        probe_and_decode(path, allowed_formats={"MP3"})


def test_mp3_missing_its_last_few_frames_is_corrupt(stereo_mp3: Path) -> None:
    data = stereo_mp3.read_bytes()
    with pytest.raises(CorruptAudio):
        probe_and_decode(data[:-2000])


def test_mp3_with_garbage_in_the_middle_is_corrupt(stereo_mp3: Path) -> None:
    data = stereo_mp3.read_bytes()
    damaged = data[:5000] + np.random.default_rng(2).bytes(3000) + data[8000:]
    with pytest.raises(CorruptAudio):
        probe_and_decode(damaged)


def test_truncated_flac_is_corrupt(flac_48k: Path) -> None:
    data = flac_48k.read_bytes()
    with pytest.raises(CorruptAudio):
        probe_and_decode(data[: len(data) // 2])


def test_truncated_wav_is_corrupt(mono_wav_16k: Path) -> None:
    data = mono_wav_16k.read_bytes()
    with pytest.raises(CorruptAudio, match="data chunk"):
        probe_and_decode(data[: len(data) // 2])
    with pytest.raises(CorruptAudio):
        probe_and_decode(data[:40])


def test_wav_with_a_streaming_placeholder_size_is_accepted(mono_wav_16k: Path) -> None:
    data = bytearray(mono_wav_16k.read_bytes())
    data_chunk = data.find(b"data")
    data[data_chunk + 4 : data_chunk + 8] = struct.pack("<I", 0xFFFFFFFF)
    assert probe_and_decode(bytes(data)).duration_ms == 2000


def test_wav_without_samples_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 8000)
    with pytest.raises(CorruptAudio, match="no audio"):
        probe_and_decode(path)


def test_too_long_is_refused_from_the_header(stereo_mp3: Path) -> None:
    with pytest.raises(AudioTooLong) as caught:
        probe_and_decode(stereo_mp3, max_duration_ms=2999)
    assert caught.value.max_duration_ms == 2999
    assert probe_and_decode(stereo_mp3, max_duration_ms=3000).duration_ms == 3000


def test_errors_share_one_base() -> None:
    for error in (UnsupportedAudio, CorruptAudio, WrongFormat, AudioTooLong):
        assert issubclass(error, AudioError)


def test_a_missing_path_is_not_an_audio_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe_and_decode(tmp_path / "nothing.mp3")


def test_an_empty_allowed_set_allows_nothing(flac_48k: Path) -> None:
    with pytest.raises(WrongFormat):
        probe_and_decode(flac_48k, allowed_formats=set())
