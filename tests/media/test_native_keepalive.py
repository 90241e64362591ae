"""Keep-alive silence (one frame in `every`, sent while recording) on the native pacer: the C
thread's numbering by arithmetic, then the same packets as the Python pacer through
MediaSession, its interrupt, and no prompt lateness measured for it. No wall-clock thresholds."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest

from afterbeep.telephony.media.sender import Prompt
from tests.media.helpers import engine, make_signal
from tests.media.test_native_pacer import (
    Receiver,
    answer_to,
    relative,
    start,
    wait_done,
)
from tests.media.test_native_pacer import sender as sender  # the fixture

pytestmark = pytest.mark.timeout(60)


def test_one_frame_in_every_is_sent_marked_and_the_others_time_passes(
    sender: socket.socket,
) -> None:
    rx = Receiver()
    payload = bytes(range(160)) * 35  # 35 frames: sent are 0, 10, 20 and 30
    job = start(sender, rx.port, payload, every=10, marker=False)
    done = wait_done({job})
    rx.wait_for(4)
    packets = rx.waiting()
    assert [p.seq for p in packets] == [65533, 65534, 65535, 0]
    assert [(p.ts - packets[0].ts) % 2**32 for p in packets] == [0, 1600, 3200, 4800]
    assert packets[0].ts == 2**32 - 320
    assert not packets[0].marker  # as given to start
    assert all(p.marker for p in packets[1:])  # each follows unsent frames: a new talkspurt
    assert all(p.payload == bytes(range(160)) for p in packets)
    assert done[job][4:9] == (35, 35 * 160, 4, 640, 0)  # frames, samples, packets, octets, held
    state = done[job][11]
    assert isinstance(state, tuple)
    assert state[:2] == ((65533 + 4) % 65536, (2**32 - 320 + 35 * 160) % 2**32)  # next seq, ts
    with pytest.raises(ValueError, match="every"):
        start(sender, rx.port, payload, every=0)


async def _keep_alive(kind: str) -> tuple[list[tuple[bool, int, int, int, bytes]], int, int]:
    eng = engine(pacer=kind)
    assert (eng.native_pacer is not None) == (kind == "native")
    late: list[float] = []
    eng.on_prompt_late = late.append
    rx = Receiver()
    try:
        session = await eng.open_session()
        answer_to(session, rx.port)
        silence = Prompt(np.zeros(8000 * 45 // 100, dtype=np.int16))  # 22.5 frames
        result = await session.play(silence, every=10)
        sent = session.stats().packets_sent
        await session.close()
        packets = rx.waiting()
    finally:
        rx.close()
        rx.sock.close()
        await eng.close()
    assert (result.frames, result.samples, result.interrupted) == (23, 3600, False)
    assert late == []  # a keep-alive is not a prompt
    return relative(packets), sent, len(packets)


async def test_native_and_python_keep_alives_send_the_same_packets() -> None:
    native, sent, received = await _keep_alive("native")
    assert sent == received == 3
    python = await _keep_alive("python")
    assert native == python[0]
    assert [p[3] for p in native] == [0, 1600, 3200]


async def test_an_interrupted_keep_alive_hands_its_numbering_to_the_next_prompt() -> None:
    eng = engine()
    assert eng.native_pacer is not None
    rx = Receiver()
    try:
        session = await eng.open_session()
        answer_to(session, rx.port)
        hush = asyncio.Event()
        minute = Prompt(np.zeros(8000 * 60, dtype=np.int16))
        keep_alive = asyncio.ensure_future(session.play(minute, hush, every=10))
        await rx.arrived(2)
        assert (eng.native_pacer.active, eng.pacer.active) == (1, 0)  # on the thread
        hush.set()
        result = await keep_alive
        assert result.interrupted and 10 < result.frames < 3000
        beep = Prompt(make_signal(0.1, seed=3))
        await session.play(beep)
        stats = session.stats()
        await session.close()
        packets = rx.waiting()
    finally:
        rx.close()
        rx.sock.close()
        await eng.close()
    assert stats.packets_sent == len(packets)
    assert [(p.seq - packets[0].seq) % 65536 for p in packets] == list(range(len(packets)))
    tail = packets[-5:]
    assert [p.payload for p in tail] == list(beep.frames(session.codec, 160))
    assert not any(p.marker for p in tail[1:])
    # the beep goes on from the keep-alive's time (all its frames, sent or not); started later
    # than the frame after, it opens a talkspurt (the rules of RtpSendStream.begin)
    gap = (tail[0].ts - packets[0].ts) % 2**32 - 160 * result.frames
    assert gap >= 0 and tail[0].marker == (gap > 0)
