"""The native pacer (`_pace`): the C thread on real loopback sockets, then through MediaSession.

No wall-clock thresholds: numbering and timestamps are checked by arithmetic, and independence
from the event loop by what a receiving thread got while the loop was blocked.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from afterbeep.telephony.media import MediaSession
from afterbeep.telephony.media.sender import Prompt
from tests.media.helpers import engine, make_signal

pytestmark = pytest.mark.timeout(60)

# Built by `pip install -e .` (make venv): a missing extension fails here, it is not skipped.
pace: ModuleType = importlib.import_module("afterbeep.telephony.media._pace")

REMOTE_OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/8000\r\na=ptime:{ptime}\r\n"
)


@dataclass(frozen=True)
class Packet:
    at: float  # time.monotonic() when the receiving thread got it
    marker: bool
    pt: int
    seq: int
    ts: int
    ssrc: int
    payload: bytes


def parse(data: bytes, at: float) -> Packet:
    first, second, seq, ts, ssrc = struct.unpack_from("!BBHII", data)
    assert first == 0x80
    return Packet(at, bool(second & 0x80), second & 0x7F, seq, ts, ssrc, data[12:])


class Receiver:
    """A UDP socket drained by a thread of its own (it keeps receiving while the loop blocks)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.packets: list[Packet] = []
        self.rtcp: list[tuple[int, bytes]] = []
        self._arrived = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            if 192 <= data[1] <= 223:
                self.rtcp.append((len(self.packets), data))  # after how many RTP packets
            else:
                with self._arrived:
                    self.packets.append(parse(data, time.monotonic()))
                    self._arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        with self._arrived:
            assert self._arrived.wait_for(lambda: len(self.packets) >= count, timeout)

    async def arrived(self, count: int) -> None:
        await asyncio.to_thread(self.wait_for, count)

    def waiting(self) -> list[Packet]:
        """What was received so far plus what is queued in the socket right now."""
        self.close()
        self.sock.setblocking(False)
        while True:
            try:
                data = self.sock.recv(2048)
            except BlockingIOError:
                break
            if not 192 <= data[1] <= 223:
                self.packets.append(parse(data, time.monotonic()))
        return self.packets

    def close(self) -> None:
        if not self._stop:
            self._stop = True
            self._thread.join()


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def wait_done(ids: set[int], timeout: float = 10.0) -> dict[int, tuple[object, ...]]:
    """The done events of ``ids`` (drained from the module; first-frame events dropped)."""
    done: dict[int, tuple[object, ...]] = {}
    deadline = time.monotonic() + timeout
    while set(done) != ids and time.monotonic() < deadline:
        for event in pace.drain():
            if event[0] == 1 and event[1] in ids:
                done[event[1]] = event
        time.sleep(0.005)
    assert set(done) == ids
    return done


def start(sock: socket.socket, port: int, payload: bytes, **overrides: object) -> int:
    params: dict[str, object] = {
        "fd": sock.fileno(),
        "host": "127.0.0.1",
        "port": port,
        "payload": payload,
        "frame_bytes": 160,
        "ptime": 0.02,
        "pt": 0,
        "silence": 0xFF,
        "ssrc": 0xDEADBEEF,
        "seq": 65533,
        "ts": 2**32 - 320,
        "marker": True,
        "due": pace.now(),
        "sending": True,
    }
    params.update(overrides)
    job_id: int = pace.start(**params)
    return job_id


def frames_of(payload: bytes, size: int, silence: int) -> list[bytes]:
    padded = payload + bytes([silence]) * (-len(payload) % size)
    return [padded[i : i + size] for i in range(0, len(padded), size)]


def test_frames_arrive_in_order_with_their_numbering_and_the_exact_bytes(
    sender: socket.socket,
) -> None:
    rx = Receiver()
    payload = bytes(np.random.default_rng(3).integers(0, 256, 1000, dtype=np.uint8))
    job = start(sender, rx.port, payload, pt=8, silence=0xD5)
    (done,) = wait_done({job}).values()
    packets = rx.waiting()
    expected = frames_of(payload, 160, 0xD5)  # 7 frames, the last one padded
    assert [p.payload for p in packets] == expected
    assert [p.seq for p in packets] == [(65533 + n) % 65536 for n in range(7)]
    assert [p.ts for p in packets] == [(2**32 - 320 + 160 * n) % 2**32 for n in range(7)]
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert {p.pt for p in packets} == {8} and {p.ssrc for p in packets} == {0xDEADBEEF}
    # ended, interrupted, frames, samples, packets, octets, withheld, slips, errors, state
    assert done[3:11] == (False, 7, 1000, 7, 7 * 160, 0, 0, 0)
    seq, ts, _, marker = done[11]  # type: ignore[misc]
    assert (seq, ts, marker) == ((65533 + 7) % 65536, (2**32 - 320 + 7 * 160) % 2**32, False)


def test_a_chain_of_prompts_is_gapless_and_each_starts_where_the_last_ended(
    sender: socket.socket,
) -> None:
    rx = Receiver()
    parts = [b"\x11" * 480, b"\x22" * 170, b"\x33" * 320]  # 3, 2 (padded) and 2 frames
    first = start(sender, rx.port, parts[0])
    second = start(sender, rx.port, parts[1], after=first, seq=0, ts=0, marker=True)
    third = start(sender, rx.port, parts[2], after=second, seq=0, ts=0, marker=True)
    done = wait_done({first, second, third})
    packets = rx.waiting()
    assert len(packets) == 7
    assert [p.seq for p in packets] == [(65533 + n) % 65536 for n in range(7)]
    assert [p.ts for p in packets] == [(2**32 - 320 + 160 * n) % 2**32 for n in range(7)]
    assert [p.marker for p in packets] == [True] + [False] * 6  # one talkspurt
    assert [p.payload[0] for p in packets] == [0x11] * 3 + [0x22] * 2 + [0x33] * 2
    assert packets[4].payload == b"\x22" * 10 + b"\xff" * 150
    # each one's end state is the next one's start, on one schedule
    due_after_first = done[first][11][2]  # type: ignore[index]
    due_after_third = done[third][11][2]  # type: ignore[index]
    assert due_after_third - due_after_first == pytest.approx(4 * 0.02, abs=1e-6)


def test_cancel_stops_sending_before_it_returns(sender: socket.socket) -> None:
    rx = Receiver()
    job = start(sender, rx.port, b"\x44" * 160 * 500)  # 10 s
    follower = start(sender, rx.port, b"\x55" * 160 * 500, after=job)
    rx.wait_for(3)
    assert pace.cancel(job, follower) == 2
    # loopback delivers during sendmsg: whatever the thread sent is in the socket now
    got = len(rx.waiting())
    done = wait_done({job, follower})
    assert done[job][3] is True and done[job][6] == got  # interrupted, packets sent
    assert done[follower][3] is True and done[follower][5] == 0
    assert done[follower][4] == 0 and done[follower][11] == done[job][11]  # nothing of it sent
    sender.close()  # the fd may be reused now: nothing of the jobs may reach it
    assert pace.stats()[:2] == (0, 0)
    assert pace.cancel(job) == 0


def test_cancelling_a_playing_prompt_starts_its_follower_at_the_next_frame_slot(
    sender: socket.socket,
) -> None:
    rx = Receiver()
    job = start(sender, rx.port, b"\x44" * 160 * 500)
    beep = start(sender, rx.port, b"\x66" * 320, after=job)
    rx.wait_for(3)
    pace.cancel(job)
    done = wait_done({job, beep})
    packets = rx.waiting()
    played = done[job][4]  # frames
    assert [p.payload[0] for p in packets] == [0x44] * played + [0x66] * 2  # type: ignore[operator]
    assert [p.ts for p in packets] == [
        (2**32 - 320 + 160 * n) % 2**32
        for n in range(played + 2)  # type: ignore[operator]
    ]
    assert not any(p.marker for p in packets[1:])


def test_fifty_jobs_at_once_each_complete_with_their_counts() -> None:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(50)]
    receivers = [Receiver() for _ in range(50)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
        jobs = {
            start(sock, rx.port, bytes([n]) * 160 * 25, ssrc=n, seq=n, ts=n * 1000): n
            for n, (sock, rx) in enumerate(zip(socks, receivers, strict=True))
        }
        done = wait_done(set(jobs))
        for job, n in jobs.items():
            assert done[job][4:8] == (25, 25 * 160, 25, 25 * 160)
            packets = receivers[n].waiting()
            assert [p.seq for p in packets] == [n + i for i in range(25)]
            assert [p.ts for p in packets] == [n * 1000 + 160 * i for i in range(25)]
            assert {p.payload for p in packets} == {bytes([n]) * 160}
    finally:
        for rx in receivers:
            rx.close()
            rx.sock.close()
        for sock in socks:
            sock.close()


def test_on_hold_frames_pass_unsent_and_the_next_sent_one_is_marked(
    sender: socket.socket,
) -> None:
    rx = Receiver()
    due = pace.now() - 0.05  # three frames due at once, on hold
    job = start(sender, rx.port, b"\x10" * 160 * 200, sending=False, marker=False, due=due)
    while not any(event[:2] == (0, job) for event in pace.drain()):  # the thread served it
        time.sleep(0.005)
    assert pace.retarget(job, "127.0.0.1", rx.port, 0, True)
    rx.wait_for(2)
    pace.cancel(job)
    done = wait_done({job})
    packets = rx.waiting()
    withheld: int = done[job][8]  # type: ignore[assignment]
    assert withheld >= 3
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    assert packets[0].seq == 65533  # withheld frames are not numbered
    assert packets[0].ts == (2**32 - 320 + 160 * withheld) % 2**32


# --- through MediaSession -----------------------------------------------------------------


def answer_to(session: MediaSession, port: int, ptime: int = 20, pcma: bool = False) -> None:
    pt, name = (8, "PCMA") if pcma else (0, "PCMU")
    offer = REMOTE_OFFER.format(port=port, pt=pt, name=name, ptime=ptime)
    session.answer(offer.encode())


def relative(packets: list[Packet]) -> list[tuple[bool, int, int, int, bytes]]:
    """What two plays must share: marker, PT, numbering from the first packet, payload."""
    seq0, ts0 = packets[0].seq, packets[0].ts
    return [
        (p.marker, p.pt, (p.seq - seq0) % 65536, (p.ts - ts0) % 2**32, p.payload) for p in packets
    ]


async def _play_twice(
    kind: str, greeting: Prompt, beep: Prompt, ptime: int, pcma: bool
) -> list[tuple[bool, int, int, int, bytes]]:
    eng = engine(pacer=kind)
    assert (eng.native_pacer is not None) == (kind == "native")
    rx = Receiver()
    try:
        session = await eng.open_session()
        answer_to(session, rx.port, ptime, pcma)
        first = await session.play(greeting)
        second = await session.play((beep, greeting), then=beep)
        stats = session.stats()
        await session.close()
        packets = rx.waiting()
    finally:
        rx.close()
        rx.sock.close()
        await eng.close()
    frames = -(-len(greeting) // (8 * ptime))
    beep_frames = -(-len(beep) // (8 * ptime))
    assert first.frames == frames and second.frames == frames + beep_frames
    assert stats.packets_sent == len(packets) == 2 * frames + 2 * beep_frames
    assert stats.bytes_sent == sum(12 + len(p.payload) for p in packets)
    return relative(packets)


@pytest.mark.parametrize(("ptime", "pcma"), [(20, False), (30, True)])
async def test_native_and_python_pacers_send_the_same_packets(ptime: int, pcma: bool) -> None:
    greeting = Prompt(make_signal(0.33, seed=4))  # not whole frames: the last one is padded
    beep = Prompt(make_signal(0.1, seed=5))
    sent = {"native": await _play_twice("native", greeting, beep, ptime, pcma)}
    # The Python pacer begins a play when the loop gets to it: on a busy machine a late start is
    # a new talkspurt (a marker mid-stream). Played again until one run has none.
    for _ in range(5):
        sent["python"] = await _play_twice("python", greeting, beep, ptime, pcma)
        if not any(p[0] for p in sent["python"][1:]):
            break
    assert sent["native"] == sent["python"]


async def test_prompts_and_the_beep_go_out_while_the_event_loop_is_blocked() -> None:
    eng = engine()
    late: list[float] = []
    eng.on_prompt_late = late.append
    rx = Receiver()
    try:
        session = await eng.open_session()
        answer_to(session, rx.port)
        greeting, instructions, beep = (
            Prompt(make_signal(s, seed=n)) for n, s in enumerate((0.2, 0.4, 0.2))
        )
        play = asyncio.ensure_future(session.play((greeting, instructions), then=beep))
        await rx.arrived(1)
        blocked_from = time.monotonic()
        time.sleep(1.2)  # noqa: ASYNC251 - the event loop is stuck; the prompts are due within 0.8 s of their start
        blocked_until = time.monotonic()
        result = await play
        packets = rx.waiting()
        assert result.frames == 30 and not result.interrupted
        assert len(packets) == 40
        during = [p for p in packets if blocked_from <= p.at <= blocked_until]
        assert len(during) >= 20  # the beep's 10 frames and more left while the loop slept
        assert packets[-1].at < blocked_until  # the beep's last frame too
        assert [p.ts - packets[0].ts for p in packets] == [160 * n for n in range(40)]
        assert [p.marker for p in packets] == [True] + [False] * 39
        assert len(late) == 3  # every prompt's first frame was measured
    finally:
        rx.close()
        rx.sock.close()
        await eng.close()


async def test_the_python_pacer_sends_nothing_while_the_loop_is_blocked() -> None:
    """The contrast that makes the test above mean something."""
    eng = engine(pacer="python")
    rx = Receiver()
    try:
        session = await eng.open_session()
        answer_to(session, rx.port)
        play = asyncio.ensure_future(session.play(make_signal(1.0)))
        await rx.arrived(1)
        blocked_from = time.monotonic()
        time.sleep(0.5)  # noqa: ASYNC251 - the event loop is stuck
        blocked_until = time.monotonic()
        await play
        packets = rx.waiting()
        assert not [p for p in packets if blocked_from + 0.001 < p.at < blocked_until]
    finally:
        rx.close()
        rx.sock.close()
        await eng.close()


async def test_an_interrupt_skips_the_rest_and_the_beep_follows_at_the_next_frame() -> None:
    eng = engine()
    rx = Receiver()
    try:
        session = await eng.open_session()
        answer_to(session, rx.port)
        greeting, instructions, beep = (
            Prompt(make_signal(s, seed=n)) for n, s in enumerate((2.0, 2.0, 0.2))
        )
        pressed = asyncio.Event()
        play = asyncio.ensure_future(session.play((greeting, instructions), pressed, then=beep))
        await rx.arrived(5)
        pressed.set()
        result = await play
        await asyncio.sleep(0)
        packets = rx.waiting()
        assert result.interrupted and result.frames < 100
        assert len(packets) == result.frames + 10
        assert [p.ts - packets[0].ts for p in packets] == [160 * n for n in range(len(packets))]
        beep_payloads = [p.payload for p in packets[-10:]]
        assert beep_payloads == list(beep.frames(session.codec, 160))
        assert session.stats().packets_sent == len(packets)
    finally:
        rx.close()
        rx.sock.close()
        await eng.close()


async def test_closing_the_session_ends_its_play_and_nothing_is_sent_after() -> None:
    eng = engine()
    rx = Receiver()
    try:
        session = await eng.open_session()
        answer_to(session, rx.port)
        play = asyncio.ensure_future(session.play(make_signal(5.0)))
        await rx.arrived(3)
        await session.close()
        result = await play
        sent = len(rx.waiting())
        assert result.interrupted and result.frames == sent
        assert eng.native_pacer is not None and eng.native_pacer.active == 0
    finally:
        rx.close()
        rx.sock.close()
        await eng.close()


def test_a_waiting_prompt_cancelled_alone_leaves_its_follower_to_its_predecessor(
    sender: socket.socket,
) -> None:
    rx = Receiver()
    first = start(sender, rx.port, b"\x11" * 320)
    skipped = start(sender, rx.port, b"\x22" * 320, after=first)
    last = start(sender, rx.port, b"\x33" * 320, after=skipped)
    assert pace.cancel(skipped) == 1
    done = wait_done({first, skipped, last})
    packets = rx.waiting()
    assert done[skipped][11] is None and done[skipped][4] == 0  # never began
    assert [p.payload[0] for p in packets] == [0x11, 0x11, 0x33, 0x33]
    assert [p.seq for p in packets] == [(65533 + n) % 65536 for n in range(4)]
    assert [p.ts for p in packets] == [(2**32 - 320 + 160 * n) % 2**32 for n in range(4)]


async def test_a_reinvite_to_another_port_moves_the_playing_prompt_there() -> None:
    eng = engine()
    first, second = Receiver(), Receiver()
    try:
        session = await eng.open_session()
        answer_to(session, first.port)
        play = asyncio.ensure_future(session.play(make_signal(1.0)))
        await first.arrived(5)
        answer_to(session, second.port)
        result = await play
        before, after = first.waiting(), second.waiting()
        assert result.frames == 50 and len(before) + len(after) == 50 and after
        packets = before + after
        assert [(p.seq - packets[0].seq) % 65536 for p in packets] == list(range(50))
    finally:
        for rx in (first, second):
            rx.close()
            rx.sock.close()
        await eng.close()


async def test_a_codec_change_mid_prompt_goes_on_in_python_with_every_sample_once() -> None:
    eng = engine()
    rx = Receiver()
    try:
        session = await eng.open_session()
        answer_to(session, rx.port)
        play = asyncio.ensure_future(session.play(make_signal(1.0)))
        await rx.arrived(5)
        answer_to(session, rx.port, pcma=True)
        result = await play
        packets = rx.waiting()
        assert not result.interrupted and result.samples == 8000
        assert sum(len(p.payload) for p in packets) == 8000
        kinds = [p.pt for p in packets]
        assert kinds[0] == 0 and kinds[-1] == 8 and kinds == sorted(kinds)
        assert [(p.seq - packets[0].seq) % 65536 for p in packets] == list(range(len(packets)))
    finally:
        rx.close()
        rx.sock.close()
        await eng.close()


@pytest.mark.parametrize("kind", ["python", "native"])
async def test_an_interrupt_set_before_the_play_still_plays_the_tail(kind: str) -> None:
    eng = engine(pacer=kind)
    rx = Receiver()
    try:
        session = await eng.open_session()
        answer_to(session, rx.port)
        pressed = asyncio.Event()
        pressed.set()
        beep = Prompt(make_signal(0.1))
        result = await session.play(make_signal(1.0), pressed, then=beep)
        assert result.interrupted and result.frames == 0
        await rx.arrived(5)
        assert [p.payload for p in rx.waiting()] == list(beep.frames(session.codec, 160))
    finally:
        rx.close()
        rx.sock.close()
        await eng.close()


async def test_sender_reports_during_a_native_prompt_count_what_the_thread_sent() -> None:
    eng = engine(rtcp_interval=0.2)
    rx = Receiver()
    try:
        session = await eng.open_session()
        offer = REMOTE_OFFER.format(port=rx.port, pt=0, name="PCMU", ptime=20) + "a=rtcp-mux\r\n"
        session.answer(offer.encode())
        await session.play(make_signal(2.0))
        rx.waiting()
        during = []
        for seen, data in rx.rtcp:
            if data[1] == 200 and 0 < seen < 100:  # a sender report while the prompt played
                packets, octets = struct.unpack_from("!II", data, 20)
                during.append((seen, packets, octets))
        assert during
        for seen, packets, octets in during:
            assert 0 < packets <= seen + 1 and octets == 160 * packets
    finally:
        rx.close()
        rx.sock.close()
        await eng.close()


def test_after_a_stall_the_frames_due_are_dropped_and_the_follower_keeps_its_time(
    sender: socket.socket,
) -> None:
    """A job half a second behind (as after the thread was starved): MAX_BURST frames go at
    once, the rest of those due are dropped, and the next prompt (a beep) starts at its slot."""
    rx = Receiver()
    greeting = bytes(range(256)) * 5 + bytes(range(64))  # 1344 octets: 9 frames (last padded)
    beep = b"\x77" * 1600  # 10 frames
    due = pace.now() - 0.5
    first = start(sender, rx.port, greeting * 4, due=due)  # 34 frames, 25 of them past due
    second = start(sender, rx.port, beep, after=first, seq=0, ts=0, marker=True)
    done = wait_done({first, second})
    packets = rx.waiting()
    frames = -(-len(greeting * 4) // 160)
    ended_first, ended_second = done[first], done[second]
    assert ended_first[4] == frames and ended_first[10] == 0  # every frame's time passed
    burst, rest = packets[: pace.MAX_BURST], packets[pace.MAX_BURST :]
    assert [p.seq for p in packets] == [(65533 + n) % 65536 for n in range(len(packets))]
    assert [p.ts for p in burst] == [(2**32 - 320 + 160 * n) % 2**32 for n in range(5)]
    dropped = (rest[0].ts - burst[-1].ts) % 2**32 // 160 - 1
    assert dropped >= 25 - pace.MAX_BURST and rest[0].marker  # a new talkspurt
    assert len(packets) == frames - dropped + 10
    assert ended_first[9] >= 1  # the stall is counted
    # the beep: on the first job's schedule, all of it, right after the greeting's last frame
    assert [p.payload for p in packets[-10:]] == [b"\x77" * 160] * 10
    beep_ts = (packets[-10].ts - (2**32 - 320)) % 2**32
    assert beep_ts == 160 * frames and ended_second[9] == 0
    due_next = ended_second[11][2]  # type: ignore[index]
    assert due_next == pytest.approx(due + (frames + 10) * 0.02)


def _fifo_threads() -> int:
    """Threads of this process under SCHED_FIFO (/proc: `policy` is field 41 of a task's stat)."""
    count = 0
    for stat in Path("/proc/self/task").glob("*/stat"):
        fields = stat.read_text().rsplit(")", 1)[1].split()
        count += fields[41 - 3] == "1"  # fields after the command name start at field 3
    return count


def test_the_thread_says_truly_whether_it_runs_real_time(sender: socket.socket) -> None:
    rx = Receiver()
    job = start(sender, rx.port, b"\x11" * 320)
    wait_done({job})
    assert pace.realtime() == (_fifo_threads() == 1)
    allowed: list[bool] = []

    def probe() -> None:  # may a thread of this process take SCHED_FIFO? (it ends right after)
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            allowed.append(True)
        except PermissionError:
            allowed.append(False)

    probing = threading.Thread(target=probe)
    probing.start()
    probing.join()
    assert [pace.realtime()] == allowed
