"""The engine's prompt cache: an array played again and again (a system prompt, a cached
greeting) is encoded once per codec, and sends the same bytes as encoding it at each play."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pytest

from afterbeep.telephony.media.sdp import Codec
from afterbeep.telephony.media.sender import (
    AudioJob,
    PlayResult,
    Prompt,
    PromptCache,
    RtpSendStream,
    encode,
)
from tests.media.helpers import make_signal


def read_only(seconds: float, seed: int = 1) -> npt.NDArray[np.int16]:
    pcm = make_signal(seconds, seed)
    pcm.setflags(write=False)
    return pcm


def test_a_read_only_array_gets_one_shared_prompt() -> None:
    cache = PromptCache()
    pcm = read_only(0.5)
    first = cache.get(pcm)
    assert cache.get(pcm) is first and len(cache) == 1
    assert first.encoded(Codec.PCMU) is cache.get(pcm).encoded(Codec.PCMU)
    given = Prompt(pcm)
    assert cache.get(given) is given  # a Prompt is already shared by whoever holds it


def test_arrays_whose_samples_may_change_are_not_cached() -> None:
    cache = PromptCache()
    writable = make_signal(0.5)
    assert cache.get(writable) is not cache.get(writable)
    view = read_only(0.5)[100:]  # read-only, but a view: not its own samples
    assert cache.get(view) is not cache.get(view)
    assert len(cache) == 0


def test_the_least_recently_played_go_past_the_size_bound() -> None:
    cache = PromptCache(max_samples=8000)
    a, b, c = read_only(0.4, 1), read_only(0.4, 2), read_only(0.4, 3)
    pa = cache.get(a)
    cache.get(b)
    assert cache.get(a) is pa  # a played again: b is now the oldest
    cache.get(c)
    assert len(cache) == 2 and cache.get(a) is pa
    assert cache.get(read_only(2.0)) is not None and len(cache) == 2  # too long: not held


@dataclass
class Target:
    codec: Codec
    payload_type: int
    ptime: int = 20
    event_payload_type: int | None = None
    sending: bool = True
    payloads: list[bytes] = field(default_factory=list)

    def transmit(self, packet: bytes) -> None:
        assert struct.unpack_from("!B", packet)[0] == 0x80
        self.payloads.append(packet[12:])


def played(codec: Codec, ptime: int, audio: Prompt | npt.NDArray[np.int16]) -> list[bytes]:
    target = Target(codec, 0 if codec is Codec.PCMU else 8, ptime)
    results: list[PlayResult | BaseException] = []
    job = AudioJob(RtpSendStream(1, 0, 0), target, audio, results.append)
    job.start(0.0)
    job.tick(1e6)  # a stall: MAX_BURST frames, then the schedule slips
    while not job.finished:
        job.tick(job.due)
    return target.payloads


@pytest.mark.parametrize("codec", [Codec.PCMU, Codec.PCMA])
@pytest.mark.parametrize("ptime", [20, 30])
def test_cached_frames_are_the_bytes_of_encoding_at_each_play(codec: Codec, ptime: int) -> None:
    pcm = read_only(1.01)  # not a whole number of frames: the last one is padded
    cache = PromptCache()
    cached = [played(codec, ptime, cache.get(pcm)) for _ in range(2)]
    frame = 8 * ptime
    expected = encode(codec, pcm.copy())
    silence = encode(codec, np.zeros(frame, dtype=np.int16))[:1]
    padded = expected + silence * (-len(expected) % frame)
    old_path = [padded[i : i + frame] for i in range(0, len(padded), frame)]
    assert cached[0] == cached[1] == old_path == played(codec, ptime, pcm.copy())


def test_a_ptime_change_between_two_frames_still_sends_every_sample_once() -> None:
    pcm = read_only(0.5)
    prompt = PromptCache().get(pcm)
    target = Target(Codec.PCMA, 8, ptime=30)
    results: list[PlayResult | BaseException] = []
    job = AudioJob(RtpSendStream(1, 0, 0), target, prompt, results.append)
    job.start(0.0)
    job.tick(0.065)  # three 30 ms frames: 720 samples, not a whole number of 20 ms frames
    target.ptime = 20
    while not job.finished:
        job.tick(job.due)
    assert [len(p) for p in target.payloads] == [240] * 3 + [160] * 20 + [160]
    sent = b"".join(target.payloads)
    assert sent[:4000] == encode(Codec.PCMA, pcm.copy()) and set(sent[4000:]) == {0xD5}
