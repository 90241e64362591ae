"""The telephony rendition of an audio file: 8 kHz mono 16-bit PCM, and WAV I/O for it.

`render_telephony` makes it from an open `AudioStream` block by block (decoder, mix-down,
soxr's streaming resampler, int16, WAV writer), so it needs one decoded block and the resampler's
state in memory whatever the file's rate, channels or length: the WAV it writes is the only thing
that grows, 16 000 bytes a second of audio.

WAV files are written with the stdlib ``wave`` module (a plain 44-byte
RIFF header, nothing else) and read back with soundfile, so any PCM WAV a
person or another tool produced can be read too.
"""

from __future__ import annotations

import io
import os
import wave
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from afterbeep.audio.decode import (
    AudioStream,
    CorruptAudio,
    DecodedAudio,
    UnsupportedAudio,
    WrongFormat,
)
from afterbeep.audio.pcm import TELEPHONY_RATE, float_to_int16, mix_to_mono

__all__ = [
    "TELEPHONY_RATE",
    "read_wav_pcm",
    "render_telephony",
    "telephony_wav_bytes",
    "telephony_wav_size",
    "to_telephony",
    "write_wav",
]


def to_telephony(decoded: DecodedAudio, rate: int = TELEPHONY_RATE) -> npt.NDArray[np.int16]:
    """Mix down to mono, resample with soxr (HQ) to ``rate``, convert to int16 with clipping."""
    samples = decoded.samples
    mono = samples[:, 0] if samples.ndim == 2 and samples.shape[1] == 1 else mix_to_mono(samples)
    if decoded.sample_rate != rate:
        mono = soxr.resample(mono, decoded.sample_rate, rate)
    return float_to_int16(mono)


def render_telephony(
    stream: AudioStream, target: BinaryIO, rate: int = TELEPHONY_RATE
) -> int:
    """Decode ``stream`` to the end, writing its telephony rendition to ``target`` as a WAV file
    (``target`` must be seekable: the header's sizes are written last). Returns the frames
    written. The stream's errors (too long, damaged, short) propagate; ``target`` then holds
    a partial file."""
    resampler = (
        None
        if stream.sample_rate == rate
        else soxr.ResampleStream(stream.sample_rate, rate, 1, dtype="float32", quality="HQ")
    )
    written = 0
    wav: wave.Wave_write
    with wave.open(target, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        for block in stream.blocks():
            mono = block[:, 0] if stream.channels == 1 else mix_to_mono(block)
            if resampler is not None:
                mono = resampler.resample_chunk(mono)
            wav.writeframes(float_to_int16(mono).astype("<i2", copy=False).tobytes())
            written += len(mono)
        if resampler is not None:
            tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            wav.writeframes(float_to_int16(tail).astype("<i2", copy=False).tobytes())
            written += len(tail)
    return written


def telephony_wav_size(frames: int, sample_rate: int, rate: int = TELEPHONY_RATE) -> int:
    """The bytes of the rendition of ``frames`` frames at ``sample_rate`` (header included)."""
    return _WAV_HEADER_BYTES + 2 * round(frames * rate / sample_rate)


_WAV_HEADER_BYTES = 44


def write_wav(
    target: str | os.PathLike[str] | BinaryIO,
    pcm: npt.NDArray[np.int16],
    rate: int = TELEPHONY_RATE,
) -> None:
    """Write mono int16 samples as a 16-bit PCM WAV file."""
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise TypeError(f"write_wav takes 1-D int16 samples, not {pcm.ndim}-D {pcm.dtype}")
    wav: wave.Wave_write
    with wave.open(os.fspath(target) if isinstance(target, os.PathLike) else target, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.astype("<i2", copy=False).tobytes())


def telephony_wav_bytes(pcm: npt.NDArray[np.int16], rate: int = TELEPHONY_RATE) -> bytes:
    """The bytes of the WAV file ``write_wav`` would write."""
    buffer = io.BytesIO()
    write_wav(buffer, pcm, rate)
    return buffer.getvalue()


def read_wav_pcm(
    source: str | os.PathLike[str] | bytes | BinaryIO,
) -> tuple[npt.NDArray[np.int16], int]:
    """Read a WAV file as mono int16 samples and its rate; several channels are averaged."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with sf.SoundFile(source) as handle:
            if handle.format not in ("WAV", "WAVEX", "RF64"):
                raise WrongFormat(
                    f"{handle.format} where WAV is required",
                    found=handle.format,
                    allowed=frozenset({"WAV"}),
                )
            data: npt.NDArray[np.int16] = handle.read(dtype="int16", always_2d=True)
            rate = int(handle.samplerate)
    except sf.LibsndfileError as exc:
        if isinstance(source, str | os.PathLike) and not os.path.exists(source):
            raise FileNotFoundError(source) from exc
        raise UnsupportedAudio("not a readable WAV file") from exc
    if rate <= 0:
        raise CorruptAudio(f"WAV header has {rate} Hz")
    if data.shape[1] == 1:
        return data[:, 0].copy(), rate
    mono: npt.NDArray[np.int16] = np.rint(data.mean(axis=1)).astype(np.int16)
    return mono, rate
