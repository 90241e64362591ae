"""Paced sending over real sockets: frame counts and continuous numbering, one shared loop."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from afterbeep.telephony.media import MediaSession
from afterbeep.telephony.media.sender import RtpSendStream
from tests.media.helpers import engine, make_signal

pytestmark = pytest.mark.timeout(60)

REMOTE_OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:{ptime}\r\n"
)


def listener() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


def received(sock: socket.socket) -> list[tuple[bool, int, int, int]]:
    """(marker, seq, ts, payload bytes) of every RTP packet waiting on the socket."""
    out: list[tuple[bool, int, int, int]] = []
    while True:
        try:
            data = sock.recv(2048)
        except BlockingIOError:
            return out
        if 192 <= data[1] <= 223:
            continue  # RTCP
        b1, seq, ts = struct.unpack("!xBHI", data[:8])
        out.append((bool(b1 & 0x80), seq, ts, len(data) - 12))


def answer_to(session: MediaSession, sock: socket.socket, ptime: int = 20) -> None:
    port = sock.getsockname()[1]
    session.answer(REMOTE_OFFER.format(port=port, ptime=ptime).encode())


async def test_two_seconds_of_frames_with_continuous_numbering() -> None:
    eng = engine()
    sock = listener()
    try:
        session = await eng.open_session()
        answer_to(session, sock)
        first = await session.play(make_signal(1.2))
        second = await session.play(make_signal(0.8))  # back to back: one talkspurt
        await asyncio.sleep(0.1)
        packets = received(sock)
        assert first.frames + second.frames == 100 == len(packets)
        assert all(size == 160 for *_, size in packets)
        _, seq0, ts0, _ = packets[0]
        jump = 0
        for n, (marker, seq, ts, _) in enumerate(packets):
            assert seq == (seq0 + n) % 65536
            if n == 60 and marker:  # the test resumed too late for back to back (a busy machine)
                jump = (ts - ts0 - 160 * n) % 2**32  # a new talkspurt, whole frames later
                assert jump > 0 and jump % 160 == 0
            else:
                assert marker == (n == 0)
            assert ts == (ts0 + 160 * n + jump) % 2**32
    finally:
        sock.close()
        await eng.close()


async def test_many_sessions_share_one_pacing_loop_that_sleeps_when_idle() -> None:
    eng = engine(pacer="python")
    socks = [listener() for _ in range(20)]
    try:
        sessions = [await eng.open_session() for _ in socks]
        for session, sock in zip(sessions, socks, strict=True):
            answer_to(session, sock, ptime=30)
        results = await asyncio.gather(*(s.play(make_signal(0.9)) for s in sessions))
        assert all(r.frames == 30 for r in results)
        await asyncio.sleep(0.1)
        for sock in socks:
            packets = received(sock)
            assert len(packets) == 30
            seqs = [p[1] for p in packets]
            tss = [p[2] for p in packets]
            assert seqs == [(seqs[0] + i) % 65536 for i in range(30)]
            assert tss == [(tss[0] + 240 * i) % 2**32 for i in range(30)]
        # one loop served 20 sessions: far fewer wake-ups than frames sent
        assert eng.pacer.wakeups < 20 * 30 / 4
        idle_wakeups = eng.pacer.wakeups
        await asyncio.sleep(0.3)
        assert eng.pacer.active == 0 and eng.pacer.wakeups == idle_wakeups  # no idle timer
    finally:
        for sock in socks:
            sock.close()
        await eng.close()


def test_a_play_begun_within_a_frame_continues_the_talkspurt_and_a_pause_opens_one() -> None:
    stream = RtpSendStream(ssrc=1, sequence=100, timestamp=8000)
    stream.begin(10.0, 0.02, 160)
    first = [stream.audio(0, bytes(160), 0.02) for _ in range(3)]
    stream.begin(10.0 + 0.06 + 0.015, 0.02, 160)  # back to back: 15 ms after the next frame's due
    after = stream.audio(0, bytes(160), 0.02)
    stream.begin(stream.due + 0.1 + 0.005, 0.02, 160)  # a 105 ms pause: five whole frames
    paused = stream.audio(0, bytes(160), 0.02)
    fields = [struct.unpack("!xBHI", packet[:8]) for packet in [*first, after, paused]]
    assert [(b1 >> 7, seq, ts) for b1, seq, ts in fields] == [
        (1, 100, 8000), (0, 101, 8160), (0, 102, 8320), (0, 103, 8480), (1, 104, 8640 + 5 * 160),
    ]
