"""The MP3 frame-header scan against soundfile-encoded MP3s and broken ones."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from afterbeep.audio.mp3scan import NotMp3, TruncatedMp3, _header, scan_mp3


def mp3(seconds: float, rate: int, channels: int = 1, mode: str = "CONSTANT") -> bytes:
    n = int(rate * seconds)
    tone = (0.3 * np.sin(np.arange(n) * 2 * np.pi * 440 / rate)).astype(np.float32)
    samples = np.stack([tone] * channels, axis=1)
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="MP3", bitrate_mode=mode)
    return buffer.getvalue()


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("mode", ["CONSTANT", "VARIABLE"])
def test_duration_is_what_the_decoder_yields(rate: int, channels: int, mode: str) -> None:
    data = mp3(11.3, rate, channels, mode)
    info = scan_mp3(data)
    decoded = sf.info(io.BytesIO(data))
    assert (info.sample_rate, info.channels) == (rate, channels)
    assert info.samples == decoded.frames
    assert abs(info.duration_ms - 11300) <= 1


def test_tags_at_both_ends_are_skipped() -> None:
    data = mp3(10.5, 22050)
    body = b"\x00" * 300
    size = bytes([0, 0, len(body) >> 7, len(body) & 0x7F])
    id3v2 = b"ID3\x04\x00\x00" + size + body
    ape_items = b"x" * 40
    ape_footer = b"APETAGEX" + (2000).to_bytes(4, "little") + (len(ape_items) + 32).to_bytes(4, "little")
    ape_footer += (1).to_bytes(4, "little") + (0).to_bytes(4, "little") + b"\x00" * 8
    id3v1 = b"TAG" + b"\x20" * 125
    tagged = id3v2 + data + ape_items + ape_footer + id3v1
    assert scan_mp3(tagged).samples == scan_mp3(data).samples
    assert scan_mp3(tagged).audio_start == len(id3v2)


def test_cbr_without_an_info_frame_is_counted_frame_by_frame() -> None:
    data = mp3(12, 16000)
    info = scan_mp3(data)
    first = _header(data, info.audio_start)
    assert first is not None
    bare = data[: info.audio_start] + data[info.audio_start + first.length :]
    plain = scan_mp3(bare)
    assert not plain.vbr_header
    assert plain.frames == info.frames
    assert plain.samples == info.frames * 576  # no LAME delay/padding known without the tag


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("wav", NotMp3),
        ("garbage", NotMp3),
        ("empty", NotMp3),
        ("cut-at-start", NotMp3),
        ("cut-in-half", TruncatedMp3),
        ("garbage-after-a-third", TruncatedMp3),
    ],
)
def test_what_is_not_a_whole_mp3_is_refused(case: str, error: type[Exception]) -> None:
    data = mp3(12, 22050)
    if case == "wav":
        buffer = io.BytesIO()
        sf.write(buffer, np.zeros(22050 * 12, np.float32), 22050, format="WAV")
        data = buffer.getvalue()
    elif case == "garbage":
        data = np.random.default_rng(5).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    elif case == "empty":
        data = b""
    elif case == "cut-at-start":
        data = data[1001:]
    elif case == "cut-in-half":
        data = data[: len(data) // 2]
    else:
        third = len(data) // 3
        noise = np.random.default_rng(6).integers(0, 256, len(data) - third, dtype=np.uint8)
        data = data[:third] + noise.tobytes()
    with pytest.raises(error):
        scan_mp3(data)
