"""The native receiver (`_recv.c`, `native.py`) on real loopback sockets: it records what the
Python receive path records, hands everything irregular to Python in order, and lets go of a
socket synchronously when its session closes."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pytest

from afterbeep.audio import g711
from afterbeep.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from afterbeep.metrics import REGISTRY
from afterbeep.telephony.media import MediaEngine, MediaSession, native
from afterbeep.telephony.media._recv import Receiver
from tests.media.helpers import Capture, engine, make_signal

# Built by `pip install -e .` (make venv, after make system-deps installs gcc): a missing
# extension fails here, it is not skipped.
assert native.available(), "afterbeep.telephony.media._recv is not built"

HEADER = struct.Struct("!BBHII")
TIMEOUT = 5.0


def rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, *, marker: bool = False) -> bytes:
    second = pt | (0x80 if marker else 0)
    return HEADER.pack(0x80, second, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def offer(port: int, pts: str = "0 8 101") -> bytes:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {pts}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"
    ).encode()


def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


Script = list[tuple[bytes, str]]  # (datagram, "peer" or "stranger")


def script() -> Script:
    """Contiguous runs broken by everything irregular (timing-independent: no pause long
    enough for the placer to measure a gap by the arrival clock)."""
    pcm = make_signal(4.0)
    frames = iter(pcm[i : i + 160] for i in range(0, len(pcm), 160))
    out: Script = []
    ssrc, seq, ts = 0x1234, 65500, 4_294_960_000  # both wrap during the run

    def audio(n: int, pt: int = 0, marker: bool = False) -> None:
        nonlocal seq, ts
        encode = alaw_encode if pt == 8 else ulaw_encode
        for i in range(n):
            out.append(
                (rtp(pt, seq, ts, ssrc, encode(next(frames)), marker=marker and not i), "peer")
            )
            seq, ts = seq + 1, ts + 160

    audio(30)
    seq, ts = seq + 2, ts + 320  # two lost
    audio(7)
    a = rtp(0, seq, ts, ssrc, ulaw_encode(next(frames)))
    b = rtp(0, seq + 1, ts + 160, ssrc, ulaw_encode(next(frames)))
    out += [(b, "peer"), (a, "peer"), (a, "peer")]  # reordered, then a duplicate
    seq, ts = seq + 2, ts + 320
    audio(12)
    out.append((rtp(0, seq, ts, ssrc, ulaw_encode(next(frames))), "stranger"))
    out.append((rtp(13, seq, ts, ssrc, b"\x40"), "peer"))  # comfort noise: not negotiated
    seq += 1
    for end, duration in ((False, 400), (True, 800), (True, 800), (True, 800)):  # "5", end x3
        payload = bytes([5, 0x80 if end else 0, duration >> 8, duration & 0xFF])
        out.append((rtp(101, seq, ts, ssrc, payload), "peer"))
        seq += 1
    ts += 800
    audio(12)
    audio(5, pt=8)  # PCMA: offered, not answered
    ts += 1600  # a short pause, marked
    audio(12, marker=True)
    padded = bytearray(rtp(0, seq, ts, ssrc, ulaw_encode(next(frames)) + b"\x00\x00\x03"))
    padded[0] |= 0x20
    out.append((bytes(padded), "peer"))
    seq, ts = seq + 1, ts + 160
    out.append((b"\x80", "peer"))  # too short
    audio(15)
    ssrc, seq, ts = 0x9999, 100, 1000  # a new source (a transfer)
    audio(40)
    return out


@dataclass
class Recorded:
    capture: Capture
    session: MediaSession
    samples_at_digit: list[int] = field(default_factory=list)


@pytest.fixture
async def engines() -> AsyncIterator[tuple[MediaEngine, MediaEngine]]:
    fast = engine(inactivity_timeout=0, native_receive=True, port_min=23000, port_max=23499)
    slow = engine(inactivity_timeout=0, native_receive=False, port_min=23500, port_max=23999)
    yield fast, slow
    await fast.close()
    await slow.close()


async def open_recording(eng: MediaEngine, peer_port: int, pts: str = "0 8 101") -> Recorded:
    capture = Capture()
    session = await eng.open_session(on_audio=capture.audio)
    recorded = Recorded(capture, session)

    def dtmf(digit: str) -> None:
        session.on_audio = capture.audio  # as a call does on "#": the audio before the key
        recorded.samples_at_digit.append(len(capture.pcm))
        capture.dtmf(digit)

    session.on_dtmf = dtmf
    session.answer(offer(peer_port, pts))
    return recorded


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():  # noqa: ASYNC110 (counters of another thread's work)
            await asyncio.sleep(0.005)


def seen(session: MediaSession) -> int:
    s = session.stats()
    return s.packets_received + s.dropped_source + s.malformed


async def test_records_what_the_python_path_records(
    engines: tuple[MediaEngine, MediaEngine],
) -> None:
    fast_engine, slow_engine = engines
    peer, stranger = udp(), udp()
    try:
        fast = await open_recording(fast_engine, peer.getsockname()[1])
        slow = await open_recording(slow_engine, peer.getsockname()[1])
        items = script()
        for n, (data, source) in enumerate(items):
            sock = peer if source == "peer" else stranger
            for rec in (fast, slow):
                sock.sendto(data, ("127.0.0.1", rec.session.local_port))
            # one at a time, as a phone sends them (a burst would queue behind the first
            # packet handed to Python, which is correct but not what this counts)
            await until(lambda n=n: min(seen(fast.session), seen(slow.session)) > n)
        await until(lambda: seen(fast.session) == seen(slow.session) == len(items))
        await fast.session.close()
        await slow.session.close()
    finally:
        peer.close()
        stranger.close()

    assert len(fast.capture.pcm) > 2 * 8000
    assert np.array_equal(fast.capture.pcm, slow.capture.pcm)
    assert fast.capture.digits == slow.capture.digits == ["5"]
    assert fast.samples_at_digit == slow.samples_at_digit != [0]
    a, b = fast.session.stats(), slow.session.stats()
    for name in (
        "packets_received",
        "bytes_received",
        "lost",
        "late",
        "duplicates",
        "dropped_payload_type",
        "dropped_source",
        "malformed",
        "dtmf_digits",
        "samples_recorded",
    ):
        assert getattr(a, name) == getattr(b, name), name
    assert a.lost == 2 and a.duplicates == 1 and a.dropped_source == 1 and a.malformed == 1
    # the thread took the runs; Python got the irregular packets and the first of each run
    receiver = fast_engine.native
    assert receiver is not None
    assert 0 < receiver.datagrams < len(items) // 3


async def test_many_sessions_at_once_each_record_their_own_audio() -> None:
    eng = engine(inactivity_timeout=0, native_receive=True, port_min=24000, port_max=24999)
    peers = [udp() for _ in range(12)]
    try:
        recs = [await open_recording(eng, p.getsockname()[1]) for p in peers]
        signals = [make_signal(1.0, seed=i + 1) for i in range(len(peers))]
        for k in range(50):
            for i, (p, rec) in enumerate(zip(peers, recs, strict=True)):
                frame = ulaw_encode(signals[i][k * 160 : (k + 1) * 160])
                p.sendto(rtp(0, k, k * 160, 1000 + i, frame), ("127.0.0.1", rec.session.local_port))
            await until(lambda k=k: all(seen(r.session) > k for r in recs))
        for rec in recs:
            await rec.session.close()
        for i, rec in enumerate(recs):
            assert np.array_equal(rec.capture.pcm, ulaw_decode(ulaw_encode(signals[i]))), i
        assert eng.native is not None and eng.native.datagrams == len(peers)  # a first each
    finally:
        for p in peers:
            p.close()
        await eng.close()


async def test_partial_block_is_delivered_when_the_caller_stops() -> None:
    eng = engine(inactivity_timeout=0, native_receive=True, port_min=25000, port_max=25499)
    peer = udp()
    try:
        rec = await open_recording(eng, peer.getsockname()[1], "8 101")
        signal = make_signal(0.3)
        for k in range(15):  # 300 ms: one 200 ms block and a partial one
            frame = alaw_encode(signal[k * 160 : (k + 1) * 160])
            peer.sendto(rtp(8, k, k * 160, 5, frame), ("127.0.0.1", rec.session.local_port))
        # the thread delivers the partial block once it is 0.4 s old, without a close
        await until(lambda: len(rec.capture.pcm) == len(signal))
        assert np.array_equal(rec.capture.pcm, alaw_decode(alaw_encode(signal)))
        assert [len(b) for b in rec.capture.blocks] == [1600, 800]
    finally:
        peer.close()
        await eng.close()


async def test_close_while_packets_arrive_lets_go_of_the_socket() -> None:
    eng = engine(inactivity_timeout=0, native_receive=True, port_min=25500, port_max=25999)
    peer = udp()
    peer.setblocking(False)
    stop = asyncio.Event()
    try:
        recs = [await open_recording(eng, peer.getsockname()[1]) for _ in range(6)]
        ports = [r.session.local_port for r in recs]

        async def blast() -> int:
            k = 0
            while not stop.is_set():
                for port in ports:
                    with contextlib.suppress(OSError):  # ICMP from a port already closed
                        peer.sendto(rtp(0, k, k * 160, 9, b"\xff" * 160), ("127.0.0.1", port))
                k += 1
                await asyncio.sleep(0)
            return k

        sender = asyncio.create_task(blast())
        await until(lambda: all(seen(r.session) > 20 for r in recs))
        for rec in recs:
            await rec.session.close()
            fd_gone = rec.session._rtp_transport.get_extra_info("socket").fileno() == -1
            assert fd_gone
        stop.set()
        assert await sender > 20
        receiver = eng.native
        assert receiver is not None and not receiver._clients
        for rec in recs:  # everything received was delivered, in whole blocks and the tail
            assert len(rec.capture.pcm) == rec.session.stats().samples_recorded > 0
    finally:
        stop.set()
        peer.close()
        await eng.close()


async def test_inactivity_is_still_detected() -> None:
    eng = engine(inactivity_timeout=0.3, native_receive=True, port_min=26000, port_max=26499)
    peer = udp()
    try:
        rec = await open_recording(eng, peer.getsockname()[1])
        silent = asyncio.Event()
        rec.session.on_inactivity = silent.set
        for k in range(25):  # 0.5 s at 20 ms: longer than the timeout, so only its end counts
            peer.sendto(rtp(0, k, k * 160, 3, b"\xff" * 160), ("127.0.0.1", rec.session.local_port))
            await asyncio.sleep(0.02)
        assert not silent.is_set()
        async with asyncio.timeout(TIMEOUT):
            await silent.wait()
        assert rec.session.stats().packets_received == 25
        # audio again: the Python path takes it and the thread is armed again
        for k in range(25, 30):
            peer.sendto(rtp(0, k, k * 160, 3, b"\xff" * 160), ("127.0.0.1", rec.session.local_port))
        await until(lambda: seen(rec.session) == 30)
        assert rec.session._native_armed
    finally:
        peer.close()
        await eng.close()


def test_decodes_every_code_as_the_python_decoder() -> None:
    receiver = native._recv.Receiver(
        g711._ULAW_DECODE.astype("=i2").tobytes(),
        g711._ALAW_DECODE.astype("=i2").tobytes(),
        256,
        10.0,
    )
    rx, peer = udp(), udp()
    rx.setblocking(False)
    try:
        host, port = peer.getsockname()
        for alaw, pt, decode in ((False, 0, ulaw_decode), (True, 8, alaw_decode)):
            sid = receiver.add(rx.fileno())
            armed = receiver.arm(
                sid, host, port, pt, alaw, 77, 10, 1600, 0, 9, 0.0, None, 0.0, b"", 0, 0.0
            )
            assert armed
            codes = bytes(range(256))
            sent = native._recv.now()
            peer.sendto(rtp(pt, 10, 1600, 77, codes[:100]), rx.getsockname())
            peer.sendto(rtp(pt, 11, 1700, 77, codes[100:]), rx.getsockname())
            assert select.select([receiver.fileno()], [], [], TIMEOUT)[0]
            packets, ready = receiver.poll()
            assert packets == [] and ready == [sid]
            state = receiver.remove(sid)
            blocks, count, octets, samples, seq, ts = state[:6]
            assert (count, octets, samples, seq, ts) == (2, 280, 256, 12, 1856)
            [(offset, pcm, arrival)] = blocks
            assert offset == 0
            assert sent <= arrival <= native._recv.now()  # its first packet's receive time
            expected: npt.NDArray[np.int16] = decode(codes)
            assert np.array_equal(np.frombuffer(pcm, dtype=np.int16), expected)
        assert receiver.taken == 4  # never handed to Python
    finally:
        receiver.close()
        rx.close()
        peer.close()


def test_packets_of_a_session_not_armed_go_to_python_as_they_came() -> None:
    receiver = native._recv.Receiver(bytes(512), bytes(512), 1600, 0.4)
    rx, peer = udp(), udp()
    rx.setblocking(False)
    try:
        sid = receiver.add(rx.fileno())
        sent = [rtp(0, k, k * 160, 1, bytes([k]) * 160) for k in range(3)] + [b"x"]
        for data in sent:
            peer.sendto(data, rx.getsockname())
        got: list[tuple[int, bytes, tuple[str, int], float]] = []
        while len(got) < len(sent):
            assert select.select([receiver.fileno()], [], [], TIMEOUT)[0]
            got += receiver.poll()[0]
        assert [g[1] for g in got] == sent
        assert {(g[0], g[2]) for g in got} == {(sid, peer.getsockname())}
        arrivals = [g[3] for g in got]
        assert arrivals == sorted(arrivals) and arrivals[-1] <= native._recv.now()
        # a session with datagrams not yet taken by Python is not armed (order is kept)
        peer.sendto(sent[0], rx.getsockname())
        assert select.select([receiver.fileno()], [], [], TIMEOUT)[0]
        host, port = peer.getsockname()
        assert not receiver.arm(
            sid, host, port, 0, False, 1, 3, 480, 0, 2, 0.0, None, 0.0, b"", 0, 0.0
        )
        receiver.poll()
        assert receiver.arm(sid, host, port, 0, False, 1, 3, 480, 0, 2, 0.0, None, 0.0, b"", 0, 0.0)
    finally:
        receiver.close()
        rx.close()
        peer.close()


async def test_python_receive_leaves_the_socket_to_the_loop() -> None:
    eng = engine(inactivity_timeout=0, native_receive=False, port_min=26500, port_max=26999)
    peer = udp()
    try:
        rec = await open_recording(eng, peer.getsockname()[1])
        peer.sendto(rtp(0, 1, 160, 3, b"\xff" * 160), ("127.0.0.1", rec.session.local_port))
        await until(lambda: seen(rec.session) == 1)
        assert eng.native is None and not rec.session._native_armed
    finally:
        peer.close()
        await eng.close()


async def test_a_failing_sink_does_not_stop_the_other_sessions() -> None:
    eng = engine(inactivity_timeout=0, native_receive=True, port_min=27000, port_max=27499)
    peer = udp()
    errors: list[BaseException | None] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: errors.append(context.get("exception")))
    try:
        bad = await open_recording(eng, peer.getsockname()[1])
        good = await open_recording(eng, peer.getsockname()[1])

        def broken(pcm: npt.NDArray[np.int16], offset: int) -> None:
            raise RuntimeError("sink failed")

        bad.session.on_audio = broken
        for k in range(30):
            for rec in (bad, good):
                frame = rtp(0, k, k * 160, 4, b"\xff" * 160)
                peer.sendto(frame, ("127.0.0.1", rec.session.local_port))
            await until(lambda k=k: seen(good.session) > k and seen(bad.session) > k)
        await until(lambda: len(good.capture.pcm) >= 3200)
        assert errors and all(isinstance(e, RuntimeError) for e in errors)
    finally:
        loop.set_exception_handler(None)
        peer.close()
        await eng.close()


def _wakeups_settle(receiver: Receiver) -> int:
    """The thread's wake-ups once it has had its first scan (then, idle, it blocks)."""
    for _ in range(int(TIMEOUT / 0.01)):
        if receiver.wakeups >= 1:
            break
        time.sleep(0.01)
    return int(receiver.wakeups)


def test_an_idle_receiver_does_not_wake_until_a_packet_comes() -> None:
    receiver = native._recv.Receiver(bytes(512), bytes(512), 1600, 0.05)
    rx, peer = udp(), udp()
    try:
        receiver.add(rx.fileno())
        before = _wakeups_settle(receiver)
        time.sleep(0.2)  # ten scan periods: the old thread woke for each
        assert receiver.wakeups == before
        peer.sendto(b"x", rx.getsockname())
        assert select.select([receiver.fileno()], [], [], TIMEOUT)[0]
        assert receiver.wakeups > before
    finally:
        receiver.close()
        rx.close()
        peer.close()


def test_arming_with_a_partial_block_wakes_the_idle_thread_to_flush_it() -> None:
    receiver = native._recv.Receiver(bytes(512), bytes(512), 1600, 0.05)
    rx, peer = udp(), udp()
    try:
        sid = receiver.add(rx.fileno())
        _wakeups_settle(receiver)
        host, port = peer.getsockname()
        pending = bytes(range(160))
        since = native._recv.now()
        assert receiver.arm(sid, host, port, 0, False, 1, 1, 160, 160, 0, 0.0, 0, since, pending, 0, since)
        assert select.select([receiver.fileno()], [], [], TIMEOUT)[0]  # flushed without a packet
        assert receiver.poll() == ([], [sid])
        blocks = receiver.sync(sid, True)[0]
        assert [(offset, len(pcm)) for offset, pcm, _ in blocks] == [(0, 320)]  # 160 int16 samples
    finally:
        receiver.close()
        rx.close()
        peer.close()


def _recv_metric(name: str) -> float:
    value = REGISTRY.get_sample_value(f"afterbeep_recv_{name}_total")
    assert value is not None
    return value


async def test_the_receivers_counters_are_in_the_metrics() -> None:
    before = {name: _recv_metric(name) for name in ("packets", "thread_wakeups", "wakeups")}
    receiver = native.NativeReceiver(asyncio.get_running_loop(), 1600, 0.4)
    rx, peer = udp(), udp()
    rx.setblocking(False)
    try:
        host, port = peer.getsockname()
        sid = receiver.rx.add(rx.fileno())
        assert receiver.rx.arm(
            sid, host, port, 0, False, 5, 1, 160, 0, 0, 0.0, None, 0.0, b"", 0, 0.0
        )
        for k in range(3):
            peer.sendto(rtp(0, 1 + k, 160 * (k + 1), 5, b"\xff" * 160), rx.getsockname())
        await until(lambda: receiver.rx.taken == 3)
        assert _recv_metric("packets") == before["packets"] + 3
        assert _recv_metric("thread_wakeups") > before["thread_wakeups"]
        receiver.rx.remove(sid)
    finally:
        receiver.close()
        rx.close()
        peer.close()
    assert _recv_metric("packets") == before["packets"] + 3  # kept once the receiver is closed
    assert _recv_metric("overflow") >= 0 and _recv_metric("oversize") >= 0
