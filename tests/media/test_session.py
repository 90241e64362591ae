"""Two MediaSessions talking over real UDP sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import numpy as np
import numpy.typing as npt
import pytest

from afterbeep.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from afterbeep.telephony.media import (
    Codec,
    Direction,
    MediaEngine,
    MediaSessionStateError,
    NoCommonMediaError,
    PortsExhaustedError,
    SdpPrefs,
)
from tests.media.helpers import Capture, Relay, connect, engine, make_signal, set_port, snr_db

pytestmark = pytest.mark.timeout(60)

FRAME = 160


@pytest.fixture
async def eng() -> AsyncIterator[MediaEngine]:
    e = engine()
    yield e
    await e.close()


def g711(codec: Codec, pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    if codec is Codec.PCMA:
        return alaw_decode(alaw_encode(pcm))
    return ulaw_decode(ulaw_encode(pcm))


def align(recorded: npt.NDArray[np.int16], expected: npt.NDArray[np.int16]) -> int:
    """The lag at which the first 20 ms sent appear exactly in the recording."""
    head = expected[:FRAME]
    for lag in range(0, max(1, len(recorded) - FRAME + 1)):
        if np.array_equal(recorded[lag : lag + FRAME], head):
            return lag
    raise AssertionError("the start of the signal is not in the recording")


async def drain() -> None:
    """Let packets in flight on the loopback reach their socket."""
    await asyncio.sleep(0.15)


@pytest.mark.parametrize(
    ("codec", "ptime"), [(Codec.PCMU, 20), (Codec.PCMA, 30)], ids=["pcmu-20", "pcma-30"]
)
async def test_three_seconds_arrive_sample_exact(codec: Codec, ptime: int) -> None:
    eng = engine(sdp=SdpPrefs(codecs=(codec,), ptime=ptime))
    try:
        cap = Capture()
        a = await eng.open_session()
        b = await eng.open_session(on_audio=cap.audio)
        connect(a, b)
        assert a.negotiated is not None and a.negotiated.ptime == ptime
        assert b.negotiated is not None and b.negotiated.codec is codec
        sent = make_signal(3.0)
        result = await a.play(sent)
        assert result.frames == len(sent) // (8 * ptime) and not result.interrupted
        await drain()
        await b.close()
        expected = g711(codec, sent)
        got = cap.pcm
        lag = align(got, expected)
        assert lag == 0  # the recording starts with the first packet
        n = min(len(got) - lag, len(expected))
        assert np.array_equal(got[lag : lag + n], expected[:n])
        assert len(expected) - n <= FRAME  # at most 20 ms missing at the end
        assert snr_db(sent[:n], got[lag : lag + n]) >= 30
        stats = b.stats()
        assert stats.lost == 0 and stats.dropped_payload_type == 0
        assert stats.packets_received == result.frames
    finally:
        await eng.close()


async def test_loss_reordering_duplicates_and_foreign_payload_type(eng: MediaEngine) -> None:
    relay = Relay()
    await relay.start()
    try:
        cap = Capture()
        a = await eng.open_session()
        b = await eng.open_session(on_audio=cap.audio)
        relay.a_port, relay.b_port = a.local_port, b.local_port
        relay.drop = {20, 21, 75}
        relay.swap_after = {40, 100}
        relay.duplicate = {60}
        relay.rewrite_pt = {90: 18}  # G.729, never negotiated
        connect(
            a,
            b,
            rewrite_offer=lambda o: set_port(o, Relay.port(relay.to_b)),
            rewrite_answer=lambda an: set_port(an, Relay.port(relay.to_a)),
        )
        sent = make_signal(3.0)
        await a.play(sent)
        await drain()
        await b.close()
        expected = g711(Codec.PCMU, sent)
        for n in (20, 21, 75, 90):
            expected[n * FRAME : (n + 1) * FRAME] = 0
        got = cap.pcm
        assert len(got) == len(expected)  # nothing lost at the end, gaps filled
        assert np.array_equal(got, expected)
        stats = b.stats()
        assert stats.lost == 3 and stats.duplicates == 1
        assert stats.dropped_payload_type == 1
    finally:
        relay.close()


async def test_packets_from_a_third_socket_are_ignored(eng: MediaEngine) -> None:
    cap = Capture()
    a = await eng.open_session()
    b = await eng.open_session(on_audio=cap.audio)
    connect(a, b)
    loud = struct.pack("!BBHII", 0x80, 0, 1, 0, 0xBAD) + b"\x80" * FRAME

    def rogue(host: str, count: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((host, 0))
            for i in range(count):
                packet = bytearray(loud)
                packet[2:4] = struct.pack("!H", i)
                s.sendto(bytes(packet), ("127.0.0.1", b.local_port))

    rogue("127.0.0.2", 20)  # before anything: not the SDP address, never latched
    sent = make_signal(1.0)
    play = asyncio.create_task(a.play(sent))
    await asyncio.sleep(0.3)
    rogue("127.0.0.1", 20)  # same IP, another port, after the stream latched
    await play
    await drain()
    await b.close()
    assert np.array_equal(cap.pcm, g711(Codec.PCMU, sent)[: len(cap.pcm)])
    assert len(cap.pcm) >= len(sent) - FRAME
    assert b.stats().dropped_source == 40


@pytest.mark.parametrize("event_pt", [101, 96])
async def test_dtmf_digits_arrive_once_each(event_pt: int) -> None:
    eng = engine(sdp=SdpPrefs(telephone_event_pt=event_pt))
    try:
        cap = Capture()
        a = await eng.open_session()
        b = await eng.open_session(on_audio=cap.audio, on_dtmf=cap.dtmf)
        connect(a, b)
        assert b.negotiated is not None and b.negotiated.telephone_event_pt == event_pt
        before, after = make_signal(0.1, seed=2), make_signal(0.2, seed=3)
        await a.play(before)
        for digit in "1#9*":
            await a.send_dtmf(digit, duration_ms=80)  # 3 progress + 3 end packets each
        await a.play(after)
        await drain()
        assert cap.digits == list("1#9*")
        assert b.stats().dtmf_digits == 4 and b.stats().dropped_payload_type == 0
        await b.close()
        got = cap.pcm
        head, tail = g711(Codec.PCMU, before), g711(Codec.PCMU, after)
        gap = len(got) - len(head) - len(tail)
        assert gap >= 4 * 6 * FRAME and gap % FRAME == 0  # the events are silence, not audio
        assert np.array_equal(got[: len(head)], head)
        assert not got[len(head) : len(head) + gap].any()
        assert np.array_equal(got[len(head) + gap :], tail)
    finally:
        await eng.close()


async def test_inactivity_is_reported_and_not_while_on_hold() -> None:
    timeout = 0.8  # generous: a loaded machine must not fake an inactive peer
    eng = engine(inactivity_timeout=timeout)
    try:
        fired = asyncio.Event()
        a = await eng.open_session()
        b = await eng.open_session(on_inactivity=fired.set)
        connect(a, b)
        await asyncio.wait_for(fired.wait(), 10)  # a never sends
        # the peer now puts the call on hold (it will not send): no report during the hold
        fired.clear()
        hold = a.offer(direction=Direction.INACTIVE)
        a.accept_answer(b.answer(hold))
        assert b.negotiated is not None and not b.negotiated.expects_rtp
        await asyncio.sleep(2 * timeout)
        assert not fired.is_set()
        # resumed: RTP flowing for longer than the timeout keeps it quiet
        a.accept_answer(b.answer(a.offer()))
        await a.play(make_signal(3 * timeout))
        assert not fired.is_set()
        await asyncio.wait_for(fired.wait(), 10)  # and silence after it is reported again
    finally:
        await eng.close()


async def test_hold_stops_sending_and_resume_continues(eng: MediaEngine) -> None:
    cap = Capture()
    a = await eng.open_session()
    b = await eng.open_session(on_audio=cap.audio)
    connect(a, b)
    await a.play(make_signal(0.2))
    a.accept_answer(b.answer(a.offer(direction=Direction.SENDONLY)))
    assert b.negotiated is not None and b.negotiated.direction is Direction.RECVONLY
    sent_before = b.stats().packets_sent
    await b.play(make_signal(0.2))  # b is held by a: frames are withheld
    assert b.stats().packets_sent == sent_before and b.stats().frames_withheld == 10
    a.accept_answer(b.answer(a.offer()))
    result = await b.play(make_signal(0.2))
    assert result.frames == 10 and b.stats().packets_sent == sent_before + 10


async def test_interrupt_and_close_end_a_play_early(eng: MediaEngine) -> None:
    a = await eng.open_session()
    b = await eng.open_session()
    connect(a, b)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    result = await a.play(make_signal(5.0), interrupt=stop)
    assert result.interrupted and 0 < result.frames < 250
    play = asyncio.create_task(a.play(make_signal(5.0)))
    await asyncio.sleep(0.2)
    await a.close()
    result = await play
    assert result.interrupted
    with pytest.raises(MediaSessionStateError):
        await a.play(make_signal(0.1))


@pytest.mark.parametrize("mux", [True, False], ids=["rtcp-mux", "rtcp-port"])
async def test_rtcp_reports_flow_both_ways(mux: bool) -> None:
    eng = engine(rtcp_interval=0.1, sdp=SdpPrefs(rtcp_mux=mux))
    try:
        a = await eng.open_session()
        b = await eng.open_session()
        connect(a, b)
        assert a.negotiated is not None and a.negotiated.rtcp_mux is mux
        await a.play(make_signal(0.6))
        await drain()
        assert a.stats().rtcp_sent > 0 and b.stats().rtcp_received > 0
        assert b.stats().rtcp_sent > 0 and a.stats().rtcp_received > 0
    finally:
        await eng.close()


async def test_ports_are_even_pairs_and_exhaustion_is_reported() -> None:
    eng = engine(port_min=31000, port_max=31005)
    try:
        sessions = [await eng.open_session() for _ in range(3)]
        assert sorted(s.local_port for s in sessions) == [31000, 31002, 31004]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe, pytest.raises(OSError):
            probe.bind(("127.0.0.1", 31001))  # the RTCP port is bound too
        with pytest.raises(PortsExhaustedError):
            await eng.open_session()
        await sessions[1].close()
        again = await eng.open_session()
        assert again.local_port == 31002
    finally:
        await eng.close()
    assert eng.sessions == 0


async def test_answer_errors_leave_the_session_untouched(eng: MediaEngine) -> None:
    b = await eng.open_session()
    g729 = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    g729 += b"m=audio 5000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
    with pytest.raises(NoCommonMediaError):
        b.answer(g729)
    assert b.negotiated is None
    with pytest.raises(MediaSessionStateError):
        await b.play(make_signal(0.1))


async def test_reinvite_handler_for_the_sip_layer(eng: MediaEngine) -> None:
    a = await eng.open_session()
    b = await eng.open_session()
    connect(a, b)
    before = b.negotiated
    assert b.handle_reinvite(b"v=0\r\nnot an offer") is None  # -> 488, media unchanged
    assert b.negotiated is before
    hold = b.handle_reinvite(a.offer(direction=Direction.SENDONLY))
    assert hold is not None and b"a=recvonly" in hold
    assert b.negotiated is not None and b.negotiated.on_hold
    ours = b.handle_reinvite(b"")  # offerless re-INVITE: b offers, the ACK answers
    assert ours is not None and b"m=audio" in ours
    b.accept_answer(a.answer(ours))
    assert b.negotiated is not None and not b.negotiated.on_hold
