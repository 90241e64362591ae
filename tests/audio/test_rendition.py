from __future__ import annotations

import io
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from afterbeep.audio.decode import (
    DecodedAudio,
    UnsupportedAudio,
    WrongFormat,
    open_audio,
    probe_and_decode,
)
from afterbeep.audio.levels import rms_dbfs
from afterbeep.audio.rendition import (
    TELEPHONY_RATE,
    read_wav_pcm,
    render_telephony,
    telephony_wav_bytes,
    telephony_wav_size,
    to_telephony,
    write_wav,
)
from tests.audio.signals import LEFT_HZ, RIGHT_HZ, STEREO_SECONDS, dominant_hz, sine


def _decoded(samples: np.ndarray, rate: int) -> DecodedAudio:
    two_d = samples.reshape(len(samples), -1).astype(np.float32)
    return DecodedAudio(two_d, rate, two_d.shape[1], "WAV", "FLOAT")


def test_stereo_mp3_to_telephony(stereo_mp3: Path) -> None:
    pcm = to_telephony(probe_and_decode(stereo_mp3))
    assert pcm.dtype == np.int16
    assert pcm.ndim == 1
    assert abs(len(pcm) - STEREO_SECONDS * TELEPHONY_RATE) <= 1152 * TELEPHONY_RATE // 44100
    spectrum = np.abs(np.fft.rfft(pcm[4000:20000].astype(np.float64)))
    hz = np.fft.rfftfreq(16000, 1 / TELEPHONY_RATE)
    peaks = sorted(hz[np.argsort(spectrum)[-2:]])
    assert peaks == pytest.approx([LEFT_HZ, RIGHT_HZ], abs=1)


def test_rendered_block_by_block_as_in_one_piece(stereo_mp3: Path) -> None:
    """The decoder, the resampler and the writer carry their state across blocks (a read of
    libsndfile's MP3 decoder through `SoundFile.read` began with up to 0.3 s of silence)."""
    whole = to_telephony(probe_and_decode(stereo_mp3))
    wav = io.BytesIO()
    with open_audio(stereo_mp3) as stream:
        written = render_telephony(stream, wav)
    pcm, rate = read_wav_pcm(wav.getvalue())
    assert rate == TELEPHONY_RATE and written == len(pcm)
    assert np.array_equal(pcm, whole)
    assert len(wav.getvalue()) == telephony_wav_size(stream.decoded_frames, stream.sample_rate)


def test_length_follows_the_rate() -> None:
    for rate in (8000, 11025, 16000, 22050, 44100, 48000):
        pcm = to_telephony(_decoded(sine(400, 1.25, rate), rate))
        assert len(pcm) == 10000, rate


def test_mix_down_averages_the_channels() -> None:
    left = sine(400, 1, 16000, amplitude=0.5)
    pcm = to_telephony(_decoded(np.stack([left, -left], axis=1), 16000))
    assert np.abs(pcm).max() <= 1
    same = to_telephony(_decoded(np.stack([left, left], axis=1), 16000))
    assert rms_dbfs(same) == pytest.approx(rms_dbfs(to_telephony(_decoded(left, 16000))), abs=0.01)


def test_resampling_filters_what_8k_cannot_carry() -> None:
    kept = to_telephony(_decoded(sine(3000, 1, 44100), 44100))
    removed = to_telephony(_decoded(sine(5000, 1, 44100), 44100))
    assert dominant_hz(kept, TELEPHONY_RATE) == pytest.approx(3000, abs=1)
    assert rms_dbfs(kept) > -14
    assert rms_dbfs(removed[400:-400]) < -80


def test_clipping_instead_of_wrapping() -> None:
    loud = sine(200, 0.5, 8000, amplitude=1.5)
    pcm = to_telephony(_decoded(loud, 8000))
    assert pcm.max() == 32767
    assert pcm.min() == -32768
    assert np.all(pcm[np.argmax(loud) - 2 : np.argmax(loud) + 3] > 30000)


def test_8k_input_is_only_converted() -> None:
    samples = np.array([0.0, 0.5, -0.5, 1.0, -1.0], dtype=np.float32)
    assert to_telephony(_decoded(samples, 8000)).tolist() == [0, 16384, -16384, 32767, -32767]


def test_wav_written_is_plain_16_bit_mono(tmp_path: Path) -> None:
    pcm = (np.arange(-800, 800, dtype=np.int16)) * 20
    path = tmp_path / "out.wav"
    write_wav(path, pcm)
    data = path.read_bytes()
    assert len(data) == 44 + 2 * len(pcm)
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt "
    fmt, channels, rate, _, _, bits = struct.unpack("<HHIIHH", data[20:36])
    assert (fmt, channels, rate, bits) == (1, 1, 8000, 16)
    assert data[36:40] == b"data"
    info = sf.info(path)
    assert (info.format, info.subtype, info.channels) == ("WAV", "PCM_16", 1)
    assert data == telephony_wav_bytes(pcm)


def test_wav_round_trip_is_exact(tmp_path: Path) -> None:
    pcm = np.random.default_rng(3).integers(-32768, 32768, 12345, dtype=np.int16)
    path = tmp_path / "r.wav"
    write_wav(path, pcm, rate=16000)
    back, rate = read_wav_pcm(path)
    assert rate == 16000
    np.testing.assert_array_equal(back, pcm)
    back, rate = read_wav_pcm(telephony_wav_bytes(pcm))
    assert rate == 8000
    np.testing.assert_array_equal(back, pcm)


def test_write_wav_to_a_file_object() -> None:
    buffer = io.BytesIO()
    write_wav(buffer, np.array([1, -1, 2], dtype=np.int16))
    with wave.open(io.BytesIO(buffer.getvalue())) as wav:
        assert wav.readframes(3) == struct.pack("<hhh", 1, -1, 2)


def test_write_wav_refuses_other_sample_types(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_wav(tmp_path / "x.wav", np.zeros(10, dtype=np.float32))
    with pytest.raises(TypeError):
        write_wav(tmp_path / "x.wav", np.zeros((10, 2), dtype=np.int16))


def test_read_wav_pcm_mixes_stereo(tmp_path: Path) -> None:
    path = tmp_path / "s.wav"
    stereo = np.array([[1000, 3000], [-1000, -2000], [5, 6]], dtype=np.int16)
    sf.write(path, stereo, 8000, subtype="PCM_16")
    pcm, rate = read_wav_pcm(path)
    assert (pcm.tolist(), rate) == ([2000, -1500, 6], 8000)


def test_read_wav_pcm_refuses_other_formats(flac_48k: Path, tmp_path: Path) -> None:
    with pytest.raises(WrongFormat):
        read_wav_pcm(flac_48k)
    with pytest.raises(UnsupportedAudio):
        read_wav_pcm(b"not a wav file at all")
    with pytest.raises(FileNotFoundError):
        read_wav_pcm(tmp_path / "missing.wav")
