"""Probe and decode an uploaded audio file, refusing anything that does not decode cleanly.

The file is judged by decoding it with libsndfile (through soundfile), never by
its name or declared content type.  Its header is checked first: 8 to 192 kHz,
1 to 8 channels, a declared length within the caller's limit.  ``open_audio``
then decodes block by block (memory: one block, whatever the file expands to);
``probe_and_decode`` into one array, for callers that want every sample.  The
whole stream is decoded, because a truncated MP3 opens fine and only comes up
short at the end:
the decoded length is compared with what the header claims (the Xing/Info
frame count for MP3, the data chunk size for WAV, STREAMINFO for FLAC).
When libsndfile cannot open a file at all, its first bytes decide only which
error is raised: a file that starts like MP3, WAV, FLAC or Ogg is corrupt,
anything else is unsupported.

Limits that follow from libsndfile 1.2.2:
- An MP3 without a Xing/Info/VBRI header has a length estimated from the file
  size and its first frames, and libsndfile stops decoding there: a truncation
  of such a file at a frame boundary passes, and a VBR one may come out short.
- Truncation by less than ``_TRUNCATION_TOLERANCE`` of the claimed length (or
  two MP3 frames, whichever is more) is accepted: that is the estimation error
  of a plain CBR MP3 whose frames alternate padding.
- Ogg has no length in its header: libsndfile takes the last page's, so a
  truncated Ogg file is caught only when it no longer decodes.
- mpg123 writes resync notes to the process's stderr; they are harmless.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import soundfile as sf

_SND = sf._snd
_FFI = sf._ffi


class AudioError(Exception):
    """Base of every error raised by ``afterbeep.audio``."""


class UnsupportedAudio(AudioError):
    """Not audio at all, or no decoder for it: text, 0 bytes, random bytes."""


class CorruptAudio(AudioError):
    """Recognisably audio, but truncated, damaged, or without a single sample."""


class WrongFormat(AudioError):
    """Decodes, but is not one of the formats allowed here."""

    def __init__(self, message: str, *, found: str, allowed: frozenset[str]) -> None:
        super().__init__(message)
        self.found = found
        self.allowed = allowed


class AudioTooLong(AudioError):
    """Longer than the caller's ``max_duration_ms``."""

    def __init__(self, message: str, *, max_duration_ms: int) -> None:
        super().__init__(message)
        self.max_duration_ms = max_duration_ms


AudioSource = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO

BLOCK_FRAMES = 65536
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000
MAX_CHANNELS = 8
_PREALLOCATE_SAMPLES = 48000 * 60 * 2  # the most a header makes us allocate at once (23 MB)
_MP3_FRAME_SAMPLES = 1152
_TRUNCATION_TOLERANCE = 0.005
_UNKNOWN_FRAMES = 2**63 - 1
_WAV_DATA_SIZE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_WAV_SIZE_PLACEHOLDERS = (0, 0x7FFFFFFF, 0xFFFFFFFF)

_SNIFF_BYTES = 4096
_MPEG_RATES = (44100, 48000, 32000)
_MPEG_BITRATES = {  # (MPEG-1?, layer) -> kbit/s for bitrate index 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}

# soundfile's major format, refined by subtype where one name covers several codecs
_FORMAT_NAMES = {"WAVEX": "WAV"}
_SUBTYPE_FORMATS = {"MPEG_LAYER_I": "MP1", "MPEG_LAYER_II": "MP2", "MPEG_LAYER_III": "MP3"}


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    """Decoded samples, float32 in [-1, 1], shape (frames, channels) even for mono."""

    samples: npt.NDArray[np.float32]
    sample_rate: int
    channels: int
    format: str
    subtype: str

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration_ms(self) -> int:
        return round(self.frames * 1000 / self.sample_rate)


def probe_and_decode(
    source: AudioSource,
    *,
    allowed_formats: set[str] | frozenset[str] | None = None,
    max_duration_ms: int | None = None,
) -> DecodedAudio:
    """Decode ``source`` (a path, the file's bytes, or a binary file) in full.

    ``allowed_formats`` holds format names as reported in ``DecodedAudio.format``
    ("MP3", "WAV", "FLAC", "OGG", ...), case-insensitive.  ``max_duration_ms``
    is checked against the header before decoding and again while decoding, so
    a long file is refused without being held in memory.
    """
    handle, name = _open(source, allowed_formats)
    with handle:
        rate, channels, claimed = handle.samplerate, handle.channels, _declared_frames(handle)
        subtype = handle.subtype
        max_frames = _check_header(name, rate, channels, claimed, max_duration_ms)
        samples = _read_all(handle, name, max_frames, max_duration_ms)
        log = handle.extra_info

    decoded = int(samples.shape[0])
    if decoded == 0:
        raise CorruptAudio(f"{name} file holds no audio samples")
    _check_complete(name, claimed, decoded, log)
    return DecodedAudio(samples, rate, channels, name, subtype)


class AudioStream:
    """An open audio file whose header passed the checks, decoded block by block.

    ``blocks()`` yields at most ``BLOCK_FRAMES`` frames at a time (float32, shape (frames,
    channels)) in one buffer it reuses: use each block before asking for the next. It refuses the
    stream once it runs past ``max_duration_ms`` and, at the end, one that came up short of its
    header or held no sample, so memory stays one block whatever the file claims or holds.
    """

    def __init__(self, handle: sf.SoundFile, name: str, max_duration_ms: int | None) -> None:
        self._handle = handle
        self.format = name
        self.subtype: str = handle.subtype
        self.sample_rate: int = handle.samplerate
        self.channels: int = handle.channels
        self.claimed_frames: int = _declared_frames(handle)
        self._max_duration_ms = max_duration_ms
        self._max_frames = _check_header(
            name, self.sample_rate, self.channels, self.claimed_frames, max_duration_ms
        )
        self.decoded_frames = 0

    @property
    def duration_ms(self) -> int:
        """The decoded length once ``blocks()`` has run to the end."""
        return round(self.decoded_frames * 1000 / self.sample_rate)

    def blocks(self, frames: int = BLOCK_FRAMES) -> Iterator[npt.NDArray[np.float32]]:
        buffer = np.empty((frames, self.channels), np.float32)
        total = 0
        while got := _read_into(self._handle, self.format, buffer, total):
            total += got
            if self._max_frames is not None and total > self._max_frames:
                assert self._max_duration_ms is not None
                raise AudioTooLong(
                    f"{self.format} runs past the limit", max_duration_ms=self._max_duration_ms
                )
            yield buffer[:got]
        self.decoded_frames = total
        if total == 0:
            raise CorruptAudio(f"{self.format} file holds no audio samples")
        _check_complete(self.format, self.claimed_frames, total, self._handle.extra_info)


@contextmanager
def open_audio(
    source: AudioSource,
    *,
    allowed_formats: set[str] | frozenset[str] | None = None,
    max_duration_ms: int | None = None,
) -> Iterator[AudioStream]:
    """Open ``source`` and check its header (format, sample rate, channels, declared length)
    before a single frame is decoded; decode it with the stream's ``blocks()``."""
    handle, name = _open(source, allowed_formats)
    with handle:
        yield AudioStream(handle, name, max_duration_ms)


def _open(
    source: AudioSource, allowed_formats: set[str] | frozenset[str] | None
) -> tuple[sf.SoundFile, str]:
    allowed = None if allowed_formats is None else frozenset(f.upper() for f in allowed_formats)
    if isinstance(source, bytes | bytearray | memoryview):
        source = io.BytesIO(source)
    if _is_empty(source):
        raise UnsupportedAudio("empty file")
    try:
        handle = sf.SoundFile(source)
    except sf.LibsndfileError as exc:
        raise _classify_unopenable(source) from exc
    name = _format_name(handle.format, handle.subtype)
    if allowed is not None and name not in allowed:
        handle.close()
        raise WrongFormat(
            f"{name} audio where {', '.join(sorted(allowed))} is required",
            found=name,
            allowed=allowed,
        )
    return handle, name


def _declared_frames(handle: sf.SoundFile) -> int:
    """The header's length in frames; 0 when it gives none (libsndfile's SF_COUNT_MAX)."""
    frames = int(handle.frames)
    return 0 if frames >= _UNKNOWN_FRAMES else frames


def _check_header(
    name: str, rate: int, channels: int, claimed: int, max_duration_ms: int | None
) -> int | None:
    """Refuse a header no telephony audio has (a 1 Hz rate, 0 or 200 channels) or one that
    declares more than ``max_duration_ms``; the most frames to decode (None: no limit)."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise CorruptAudio(
            f"{name} header has a {rate} Hz sample rate, outside"
            f" {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz"
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise CorruptAudio(f"{name} header has {channels} channels, outside 1 to {MAX_CHANNELS}")
    if claimed < 0:
        raise CorruptAudio(f"{name} header declares {claimed} frames")
    if max_duration_ms is None:
        return None
    max_frames = max_duration_ms * rate // 1000
    if claimed > max_frames:
        raise AudioTooLong(
            f"{name} is {claimed * 1000 // rate} ms long", max_duration_ms=max_duration_ms
        )
    return max_frames


def _is_empty(source: str | os.PathLike[str] | BinaryIO) -> bool:
    if isinstance(source, str | os.PathLike):
        return os.stat(source).st_size == 0
    position = source.tell()
    empty = source.read(1) == b""
    source.seek(position)
    return empty


def _format_name(major: str, subtype: str) -> str:
    return _SUBTYPE_FORMATS.get(subtype) or _FORMAT_NAMES.get(major, major)


def _read_all(
    handle: sf.SoundFile, name: str, max_frames: int | None, max_duration_ms: int | None
) -> npt.NDArray[np.float32]:
    """Every frame, read into one array sized from the header (a block more, to see the end).

    One read into a preallocated array costs less than blocks joined afterwards; a stream that
    runs past its header's length goes on in blocks.
    """
    channels = handle.channels
    expected = max(handle.frames, 0)
    if max_frames is not None:
        expected = min(expected, max_frames)
    first = min(expected, _PREALLOCATE_SAMPLES // channels) + BLOCK_FRAMES
    out = np.empty((first, channels), np.float32)
    total = _read_into(handle, name, out, 0)
    if max_frames is not None and max_duration_ms is not None and total > max_frames:
        raise AudioTooLong(f"{name} runs past the limit", max_duration_ms=max_duration_ms)
    if total < first:
        return out[:total]
    blocks = [out]
    while True:
        block = np.empty((BLOCK_FRAMES, channels), np.float32)
        got = _read_into(handle, name, block, total)
        total += got
        if max_frames is not None and max_duration_ms is not None and total > max_frames:
            raise AudioTooLong(f"{name} runs past the limit", max_duration_ms=max_duration_ms)
        if got == 0:
            break
        blocks.append(block[:got])
    return np.concatenate(blocks)


def _read_into(handle: sf.SoundFile, name: str, out: npt.NDArray[np.float32], done: int) -> int:
    """Fill ``out`` (C-contiguous, one column a channel) from the current position.

    Calls libsndfile's ``sf_readf_float`` itself: ``SoundFile.read`` seeks to where it already
    is after every read, and libsndfile 1.2.2's MP3 decoder answers a seek by restarting
    mpg123, which then decodes silence for the frames whose bit reservoir was dropped (every
    read of a block-by-block decode started with up to 0.3 s of silence).
    """
    assert out.flags.c_contiguous and out.shape[1] == handle.channels
    pointer = _FFI.cast("float *", out.__array_interface__["data"][0])
    got = int(_SND.sf_readf_float(handle._file, pointer, out.shape[0]))
    error = int(_SND.sf_error(handle._file))
    if error != 0:
        raise CorruptAudio(
            f"{name} stream fails to decode after {done} frames"
        ) from sf.LibsndfileError(error)
    return got


def _check_complete(name: str, claimed: int, decoded: int, log: str) -> None:
    tolerance = max(2 * _MP3_FRAME_SAMPLES, int(claimed * _TRUNCATION_TOLERANCE))
    if claimed - decoded > tolerance:
        raise CorruptAudio(f"{name} decodes to {decoded} of the {claimed} frames its header claims")
    wav_sizes = _WAV_DATA_SIZE.search(log)
    if wav_sizes is not None:
        declared, actual = int(wav_sizes[1]), int(wav_sizes[2])
        if declared > actual and declared not in _WAV_SIZE_PLACEHOLDERS:
            raise CorruptAudio(f"{name} data chunk holds {actual} of its {declared} bytes")


def _classify_unopenable(source: str | os.PathLike[str] | BinaryIO) -> AudioError:
    """A file libsndfile cannot open: corrupt if it starts like audio, else unsupported."""
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as file:
            head = file.read(_SNIFF_BYTES)
    else:
        source.seek(0)
        head = source.read(_SNIFF_BYTES)
    kind = _sniff(head)
    if kind is not None:
        return CorruptAudio(f"starts like {kind} but does not decode")
    return UnsupportedAudio("not a recognised audio format")


def _sniff(head: bytes) -> str | None:
    if head.startswith(b"ID3") or _looks_like_mpeg_audio(head):
        return "MP3"
    for magic, kind in ((b"RIFF", "WAV"), (b"RF64", "WAV"), (b"fLaC", "FLAC"), (b"OggS", "OGG")):
        if head.startswith(magic):
            return kind
    return None


def _looks_like_mpeg_audio(head: bytes) -> bool:
    """A frame header at 0 and, if the data reaches that far, another right after it."""
    length = _mpeg_frame_length(head)
    if length is None:
        return False
    return len(head) < length + 4 or _mpeg_frame_length(head[length:]) is not None


def _mpeg_frame_length(head: bytes) -> int | None:
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return None
    version = (head[1] >> 3) & 0x03  # 0: MPEG 2.5, 2: MPEG 2, 3: MPEG 1
    layer = 4 - ((head[1] >> 1) & 0x03)  # 4 is reserved
    bitrate_index = head[2] >> 4
    rate_index = (head[2] >> 2) & 0x03
    if version == 1 or layer == 4 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    mpeg1 = version == 3
    kbps = _MPEG_BITRATES[(mpeg1, layer if mpeg1 or layer == 1 else 2)][bitrate_index - 1]
    rate = _MPEG_RATES[rate_index] >> {3: 0, 2: 1, 0: 2}[version]
    padding = (head[2] >> 1) & 0x01
    if layer == 1:
        return (12 * kbps * 1000 // rate + padding) * 4
    per_frame = 144 if mpeg1 or layer == 2 else 72
    return per_frame * kbps * 1000 // rate + padding
