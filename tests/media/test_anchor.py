"""A sequence timed from the answer (`sender.anchor`, `MediaSession.play(start_at=...)`): what
fell due before the play began is skipped, so the beep keeps its time however late the loop
handed the sequence over. Pure arithmetic and a fake clock first, then both pacers on sockets
(no wall-clock thresholds: frame counts, payloads and numbering)."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from afterbeep.telephony.media.pacer import Pacer
from afterbeep.telephony.media.sdp import Codec
from afterbeep.telephony.media.sender import (
    ANCHOR_WINDOW,
    Anchored,
    AudioJob,
    PlayResult,
    Prompt,
    RtpSendStream,
    anchor,
)
from tests.media.helpers import engine, make_signal

pytestmark = pytest.mark.timeout(60)

FRAME = 160
SECONDS = 0.02


# --- the arithmetic -------------------------------------------------------------------------


def test_handed_over_on_time_nothing_is_skipped() -> None:
    assert anchor([800, 1600], FRAME, SECONDS, 10.0, 10.0) == Anchored(0, 0, 0, 10.0, 10.0)
    # within the first frame: it is still that frame's turn
    assert anchor([800, 1600], FRAME, SECONDS, 10.0, 10.015) == Anchored(0, 0, 0, 10.0, 10.0)


def test_late_inside_the_first_prompt_skips_its_due_frames() -> None:
    got = anchor([800, 1600], FRAME, SECONDS, 10.0, 10.065)  # frames 0-2 due, the 4th is due
    assert (got.dropped, got.offset, got.skipped) == (0, 3 * FRAME, 3 * FRAME)
    assert got.due == got.intended == pytest.approx(10.06)


def test_a_prompt_wholly_past_is_dropped_and_its_padded_frame_counts() -> None:
    # 810 samples = 6 frames (the last padded); 7 frames due: the second prompt from its 2nd
    got = anchor([810, 1600], FRAME, SECONDS, 10.0, 10.145)
    assert (got.dropped, got.offset, got.skipped) == (1, FRAME, 7 * FRAME)
    assert got.due == got.intended == pytest.approx(10.14)


def test_all_of_the_cuttable_part_past_the_tail_starts_now_and_is_late() -> None:
    got = anchor([800, 800], FRAME, SECONDS, 10.0, 10.5)  # 10 frames cuttable, 25 due
    assert (got.dropped, got.offset, got.skipped) == (2, 0, 10 * FRAME)
    assert got.due == 10.5 and got.intended == pytest.approx(10.2)


def test_ending_exactly_with_the_cuttable_part_the_tail_is_on_time() -> None:
    got = anchor([800], FRAME, SECONDS, 10.0, 10.105)
    assert (got.dropped, got.skipped) == (1, 5 * FRAME)
    assert got.due == got.intended == pytest.approx(10.1)


def test_past_the_window_nothing_is_cut_and_the_start_is_late() -> None:
    now = 10.0 + ANCHOR_WINDOW + 0.1
    got = anchor([80_000], FRAME, SECONDS, 10.0, now)
    assert (got.dropped, got.offset, got.skipped, got.due, got.intended) == (0, 0, 0, now, 10.0)


def test_prompt_after_shares_the_encodings_and_the_frames() -> None:
    prompt = Prompt(make_signal(0.5))
    frames = prompt.frames(Codec.PCMU, FRAME)
    encoded = prompt.encoded(Codec.PCMU)
    rest = prompt.after(3 * FRAME)
    assert len(rest) == len(prompt) - 3 * FRAME
    assert rest.encoded(Codec.PCMU) == encoded[3 * FRAME :]
    assert rest.frames(Codec.PCMU, FRAME) == frames[3:]
    assert rest.frames(Codec.PCMU, FRAME)[0] is frames[3]  # the same objects, not re-made
    assert rest.encoded(Codec.PCMA) == Prompt(prompt.pcm[3 * FRAME :]).encoded(Codec.PCMA)


# --- the Python pacer with a fake clock ------------------------------------------------------


class _Target:
    codec = Codec.PCMU
    payload_type = 0
    event_payload_type = None
    ptime = 20
    sending = True

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def transmit(self, packet: bytes) -> None:
        self.sent.append(packet)


def test_an_anchored_job_starts_at_its_slot_not_at_the_late_now() -> None:
    target = _Target()
    stream = RtpSendStream(ssrc=1, sequence=0, timestamp=0)
    results: list[PlayResult | BaseException] = []
    prompt = Prompt(make_signal(0.2))
    rest = prompt.after(3 * FRAME)
    job = AudioJob(stream, target, rest, results.append)
    pacer = Pacer()
    job.start(100.065, (100.06, 100.06))  # handed over at .065, its slot on the answer's clock
    assert job.intended == 100.06 and job.due == 100.06
    pacer.push(job)
    assert pacer.serve(100.065) == pytest.approx(100.08)  # one frame now, no burst
    assert len(target.sent) == 1 and target.sent[0][12:] == prompt.frames(Codec.PCMU, FRAME)[3]
    assert target.sent[0][1] & 0x80  # the stream's first packet: a marker
    t = 100.08
    while pacer.serve(t) is not None:
        t += SECONDS
    assert len(target.sent) == 7 and results == [PlayResult(7, 7 * FRAME, False)]
    assert [struct.unpack("!H", p[2:4])[0] for p in target.sent] == list(range(7))


def test_a_stream_already_begun_ignores_the_anchor() -> None:
    target = _Target()
    stream = RtpSendStream(ssrc=1, sequence=0, timestamp=0)
    stream.begin(50.0, SECONDS, FRAME)
    job = AudioJob(stream, target, Prompt(make_signal(0.1)), lambda _: None)
    job.start(100.0, (90.0, 90.0))
    assert job.intended == 100.0 and job.due == pytest.approx(100.0, abs=SECONDS)  # its own


# --- through MediaSession, both pacers -------------------------------------------------------

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
)


def _received(sock: socket.socket) -> list[bytes]:
    out: list[bytes] = []
    while True:
        try:
            data = sock.recv(2048)
        except BlockingIOError:
            return out
        if not 192 <= data[1] <= 223:  # not RTCP
            out.append(data)


@pytest.mark.parametrize("pacer", ["native", "python"])
async def test_a_late_play_skips_what_was_due_and_ends_with_the_whole_beep(pacer: str) -> None:
    eng = engine(pacer=pacer)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    late: list[float] = []
    eng.on_prompt_late = late.append
    try:
        session = await eng.open_session()
        session.answer(OFFER.format(port=sock.getsockname()[1]).encode())
        greeting, instructions, beep = (
            Prompt(make_signal(s, seed=n)) for n, s in enumerate((0.4, 0.4, 0.1))
        )
        answered = time.monotonic() - 0.3  # the 200 OK left 0.3 s before the play
        result = await session.play((greeting, instructions), then=beep, start_at=answered)
        await session.close()
        packets = _received(sock)
    finally:
        sock.close()
        await eng.close()
    skipped = result.skipped // FRAME
    assert result.skipped % FRAME == 0 and 15 <= skipped < 40  # at least the 0.3 s
    assert len(packets) == 45 - skipped
    sent = [*greeting.frames(Codec.PCMU, FRAME), *instructions.frames(Codec.PCMU, FRAME)]
    expected = sent[skipped:] + list(beep.frames(Codec.PCMU, FRAME))
    assert [p[12:] for p in packets] == expected
    assert [bool(p[1] & 0x80) for p in packets] == [True] + [False] * (len(packets) - 1)
    ts0 = struct.unpack("!I", packets[0][4:8])[0]
    assert [struct.unpack("!I", p[4:8])[0] - ts0 for p in packets] == [
        FRAME * n for n in range(len(packets))
    ]
    assert result.frames == 40 - skipped and not result.interrupted
    assert len(late) >= 1  # the start was measured (its value is the machine's timing)


async def test_without_an_anchor_nothing_is_skipped() -> None:
    eng = engine()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        session = await eng.open_session()
        session.answer(OFFER.format(port=sock.getsockname()[1]).encode())
        result = await session.play(Prompt(make_signal(0.2)), then=Prompt(make_signal(0.1)))
        await session.close()
        packets = _received(sock)
    finally:
        sock.close()
        await eng.close()
    assert result.skipped == 0 and len(packets) == 15
