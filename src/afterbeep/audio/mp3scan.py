"""Judge an MP3 stream by its frame headers alone: is it MPEG Layer III, and exactly how long.

Written here because neither libsndfile nor libmpg123 offers a cheap header-only pass: opening
a file with either decodes (or at least parses every frame's side information), which costs
about as much as the decode we want to avoid on the request path. The scan reads only the
4-byte header of each frame (a few microseconds per frame in Python, ~1 ms for a minute):

- an ID3v2 tag (or several) at the start is skipped by its size; an ID3v1 tag (`TAG`, 128 bytes)
  and an APEv2 tag (`APETAGEX` footer) at the end are left out;
- the first frame must start where the tags end (NUL padding allowed): a stream truncated at
  the start, or anything else with junk in front, is refused;
- from there the frames must follow one another (sync word, MPEG-1/2/2.5, Layer III, a valid
  bitrate and sample rate, the length those give), all with the same version and sample rate,
  covering at least `MIN_COVERAGE` of the bytes after the tags;
- a Xing/Info (or VBRI) header in the first frame gives the frame count the encoder wrote: fewer
  frames found than that means truncated; its LAME extension gives the encoder delay and padding,
  taken off as a gapless decoder does, so the duration is the decoded length.

The frames' audio data is not looked at: callers decode a little of it to prove it decodes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["MIN_COVERAGE", "Mp3Info", "Mp3ScanError", "NotMp3", "TruncatedMp3", "scan_mp3"]

MIN_COVERAGE = 0.9
_TRUNCATION_FRAMES = 2  # the frames an encoder's count may differ from what is found

_BITRATES_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_BITRATES_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


class Mp3ScanError(Exception):
    """The bytes are not a whole MPEG Layer III stream."""


class NotMp3(Mp3ScanError):
    """No MPEG Layer III frames where the audio should start (another format, or junk)."""


class TruncatedMp3(Mp3ScanError):
    """MP3 frames, but fewer than the stream's own header says, or broken off."""


@dataclass(frozen=True, slots=True)
class Mp3Info:
    sample_rate: int
    channels: int
    frames: int  # audio frames (the Xing/Info frame not counted)
    samples: int  # per channel, after the encoder delay and padding
    audio_start: int  # byte offset of the first frame
    vbr_header: bool

    @property
    def duration_ms(self) -> int:
        return self.samples * 1000 // self.sample_rate


@dataclass(frozen=True, slots=True)
class _Header:
    version: int  # 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5
    sample_rate: int
    length: int
    channels: int

    @property
    def samples(self) -> int:
        return 1152 if self.version == 3 else 576


def _header(data: bytes | memoryview, pos: int) -> _Header | None:
    if pos + 4 > len(data):
        return None
    b0, b1, b2, b3 = data[pos], data[pos + 1], data[pos + 2], data[pos + 3]
    if b0 != 0xFF or b1 & 0xE0 != 0xE0:
        return None
    version = (b1 >> 3) & 3
    if version == 1 or (b1 >> 1) & 3 != 1:  # reserved version; not Layer III
        return None
    bitrate_index, rate_index = b2 >> 4, (b2 >> 2) & 3
    if bitrate_index in (0, 15) or rate_index == 3:  # free format is not accepted
        return None
    rate = _RATES[version][rate_index]
    padding = (b2 >> 1) & 1
    if version == 3:
        length = 144_000 * _BITRATES_V1[bitrate_index] // rate + padding
    else:
        length = 72_000 * _BITRATES_V2[bitrate_index] // rate + padding
    return _Header(version, rate, length, 1 if b3 >> 6 == 3 else 2)


def _id3v2_end(data: bytes | memoryview) -> int:
    pos = 0
    while len(data) >= pos + 10 and bytes(data[pos : pos + 3]) == b"ID3":
        size = 0
        for byte in data[pos + 6 : pos + 10]:
            if byte & 0x80:
                raise NotMp3("the ID3v2 tag's size is not syncsafe")
            size = (size << 7) | byte
        footer = 10 if data[pos + 5] & 0x10 else 0
        pos += 10 + size + footer
    return pos


def _tags_start(data: bytes | memoryview, start: int) -> int:
    """Where the trailing tags (ID3v1, then APEv2 before it) begin."""
    end = len(data)
    if end - start >= 128 and bytes(data[end - 128 : end - 125]) == b"TAG":
        end -= 128
    if end - start >= 32 and bytes(data[end - 32 : end - 24]) == b"APETAGEX":
        size, flags = struct.unpack_from("<I4xI", data, end - 20)
        end -= size + (32 if flags & 0x80000000 else 0)
    return max(end, start)


def _vbr_header(
    data: bytes | memoryview, pos: int, first: _Header
) -> tuple[int, int, int] | None:
    """(frames, encoder delay, padding) from a Xing/Info/VBRI header in the frame at `pos`."""
    mono = first.channels == 1
    side = (17 if mono else 32) if first.version == 3 else (9 if mono else 17)
    at = pos + 4 + side
    tag = bytes(data[at : at + 4])
    if tag in (b"Xing", b"Info"):
        (flags,) = struct.unpack_from(">I", data, at + 4)
        field = at + 8
        frames = -1
        if flags & 1:
            (frames,) = struct.unpack_from(">I", data, field)
            field += 4
        field += (4 if flags & 2 else 0) + (100 if flags & 4 else 0) + (4 if flags & 8 else 0)
        delay = padding = 0
        if bytes(data[field : field + 4]) in (b"LAME", b"Lavf", b"Lavc") and field + 24 <= pos + first.length:
            b21, b22, b23 = data[field + 21], data[field + 22], data[field + 23]
            delay = (b21 << 4) | (b22 >> 4)
            padding = ((b22 & 0x0F) << 8) | b23
        return frames, delay, padding
    vbri = pos + 4 + 32
    if bytes(data[vbri : vbri + 4]) == b"VBRI":
        (frames,) = struct.unpack_from(">I", data, vbri + 14)
        return frames, 0, 0
    return None


def scan_mp3(data: bytes | memoryview) -> Mp3Info:
    """Check `data` is an MPEG Layer III stream as the module docstring says, and measure it.

    Raises `NotMp3` or `TruncatedMp3` (both `Mp3ScanError`).
    """
    start = _id3v2_end(data)
    end = _tags_start(data, start)
    while start < end and data[start] == 0:
        start += 1
    first = _header(data, start)
    if first is None or start + first.length > end:
        raise NotMp3("no MPEG Layer III frame where the audio starts")
    vbr = _vbr_header(data, start, first)
    pos, frames, broken = start, 0, False
    raw = bytes(data) if isinstance(data, memoryview) else data
    # A stream repeats a handful of distinct headers (bitrates x padding): parse each once.
    seen: dict[bytes, _Header | None] = {}
    while pos < end:
        key = raw[pos : pos + 4]
        try:
            header = seen[key]
        except KeyError:
            header = seen[key] = _header(raw, pos)
        if header is None:
            break
        if header.version != first.version or header.sample_rate != first.sample_rate:
            break
        if pos + header.length > end:
            broken = True  # the last frame is cut off
            pos = end
            break
        pos += header.length
        frames += 1
    if frames < 2 and vbr is None:
        raise NotMp3("fewer than two consecutive MPEG Layer III frames")
    if (pos - start) < MIN_COVERAGE * (end - start):
        raise TruncatedMp3(f"frames stop at byte {pos} of {end}: damaged or not MP3")
    audio_frames = frames - (1 if vbr is not None else 0)
    delay = padding = 0
    if vbr is not None:
        claimed, delay, padding = vbr
        if claimed >= 0 and audio_frames < claimed - _TRUNCATION_FRAMES:
            raise TruncatedMp3(f"{audio_frames} frames of the {claimed} its header announces")
        if claimed >= 0 and broken:
            audio_frames = min(audio_frames, claimed)
    samples = max(audio_frames * first.samples - delay - padding, 0)
    return Mp3Info(
        sample_rate=first.sample_rate,
        channels=first.channels,
        frames=audio_frames,
        samples=samples,
        audio_start=start,
        vbr_header=vbr is not None,
    )
