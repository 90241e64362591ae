"""The receive fast path (`MediaSession._rtp_in` → `Recorder.receive_next`) changes nothing
but speed: fed the same datagrams at the same times, a session with it and a session forced
down the general path record the same audio, digits and counters."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from afterbeep.audio.g711 import alaw_encode, ulaw_encode
from afterbeep.telephony.media import MediaEngine, MediaSession
from afterbeep.telephony.media.recorder import Recorder
from tests.media.helpers import Capture, engine, make_signal

PEER = ("127.0.0.1", 47010)
STRANGER = ("127.0.0.1", 47999)
OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    f"m=audio {PEER[1]} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"
).encode()
HEADER = struct.Struct("!BBHII")


class ClockedLoop:
    """The running loop, but with a clock the test moves."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.now = loop.time()

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)


def rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, *, marker: bool = False) -> bytes:
    return (
        HEADER.pack(0x80, pt | (0x80 if marker else 0), seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
        + payload
    )


def stream() -> list[tuple[float, bytes, tuple[str, int]]]:
    """(arrival offset s, datagram, source): contiguous runs broken by everything irregular."""
    pcm = make_signal(6.0)
    frames = [pcm[i : i + 160] for i in range(0, len(pcm), 160)]
    out: list[tuple[float, bytes, tuple[str, int]]] = []
    t = 0.0

    def add(data: bytes, source: tuple[str, int] = PEER, dt: float = 0.02) -> None:
        nonlocal t
        t += dt
        out.append((t, data, source))

    ssrc, seq, ts = 0x1234, 65500, 4_294_960_000  # both wrap during the run
    f = iter(frames)
    for _ in range(30):
        add(rtp(0, seq, ts, ssrc, ulaw_encode(next(f))))
        seq, ts = seq + 1, ts + 160
    seq, ts = seq + 2, ts + 320  # two lost
    for _ in range(5):
        add(rtp(0, seq, ts, ssrc, ulaw_encode(next(f))))
        seq, ts = seq + 1, ts + 160
    a, b = (
        rtp(0, seq, ts, ssrc, ulaw_encode(next(f))),
        rtp(0, seq + 1, ts + 160, ssrc, ulaw_encode(next(f))),
    )
    add(b)  # reordered
    add(a)
    add(a)  # duplicate
    seq, ts = seq + 2, ts + 320
    add(rtp(0, seq, ts, ssrc, ulaw_encode(next(f))), source=STRANGER)  # not the latched source
    add(rtp(13, seq, ts, ssrc, b"\x40"))  # comfort noise: not negotiated
    seq += 1
    for end, duration in ((False, 400), (True, 800), (True, 800), (True, 800)):  # a "5", end x3
        add(rtp(101, seq, ts, ssrc, bytes([5, 0x80 if end else 0, duration >> 8, duration & 0xFF])))
        seq += 1
    ts += 800
    for _ in range(5):
        add(rtp(8, seq, ts, ssrc, alaw_encode(next(f))))  # PCMA: offered, but not what we answered
        seq, ts = seq + 1, ts + 160
    ts += 8000  # a talkspurt after a pause, marked
    add(rtp(0, seq, ts, ssrc, ulaw_encode(next(f)), marker=True), dt=1.0)
    seq, ts = seq + 1, ts + 160
    padded = bytearray(rtp(0, seq, ts, ssrc, ulaw_encode(next(f)) + b"\x00\x00\x03"))
    padded[0] |= 0x20
    add(bytes(padded))
    seq, ts = seq + 1, ts + 160
    add(b"\x80")  # too short
    ssrc, seq, ts = 0x9999, 100, 1000  # a new source (a transfer)
    for _ in range(40):
        add(rtp(0, seq, ts, ssrc, ulaw_encode(next(f))))
        seq, ts = seq + 1, ts + 160
    return out


@pytest.fixture
async def eng() -> AsyncIterator[MediaEngine]:
    e = engine(inactivity_timeout=0)
    yield e
    await e.close()


async def receive_all(eng: MediaEngine, *, fast: bool) -> tuple[Capture, MediaSession, int]:
    capture = Capture()
    session = await eng.open_session(on_audio=capture.audio, on_dtmf=capture.dtmf)
    session.answer(OFFER)
    loop = ClockedLoop(asyncio.get_running_loop())
    session._loop = loop  # type: ignore[assignment]
    if not fast:
        session._rtp_in = session._rtp_in_general  # type: ignore[method-assign]
    general = 0
    original = Recorder.receive

    def counting(self: Recorder, packet: Any) -> None:
        nonlocal general
        general += 1
        original(self, packet)

    start = loop.now
    Recorder.receive = counting  # type: ignore[method-assign]
    try:
        for offset, data, source in stream():
            loop.now = start + offset
            session._rtp_endpoint.datagram_received(data, source)
    finally:
        Recorder.receive = original  # type: ignore[method-assign]
    session._recorder.flush()
    return capture, session, general


async def test_fast_path_records_what_the_general_path_records(eng: MediaEngine) -> None:
    fast, fast_session, fast_general = await receive_all(eng, fast=True)
    slow, slow_session, slow_general = await receive_all(eng, fast=False)

    assert len(fast.pcm) > 8000 and np.array_equal(fast.pcm, slow.pcm)
    assert fast.digits == slow.digits == ["5"]
    assert fast_session.stats() == slow_session.stats()
    stats = fast_session.stats()
    assert stats.lost == 2 and stats.duplicates == 1 and stats.dropped_source == 1
    assert stats.dropped_payload_type == 1 + 5 and stats.malformed == 1
    # most packets took the fast path; every irregular one went the general way
    assert slow_general == stats.packets_received
    assert 0 < fast_general < stats.packets_received // 3
