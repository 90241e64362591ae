"""No RTP before the caller is confirmed, and RTP all along a recording (issue 15, points 7, 11).

A raw UDP SIP peer on 127.0.0.1 calls a TelephonyServer whose script answers and plays a
greeting (or records), and counts the RTP that reaches the port its SDP named:

- an INVITE never ACKed gets no RTP at all, and the call ends by timer H (64*T1) with a BYE;
- an ACK that comes late still hears the greeting from its first frame;
- RTP from the caller's SDP address confirms the call as the ACK does;
- a call that records keeps sending RTP (silence) while it records.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import numpy as np
import pytest

from afterbeep.audio.compare import compare
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.interface import CallEnded
from afterbeep.telephony.media import Codec
from afterbeep.telephony.media.rtp import build_rtp
from afterbeep.telephony.server import TelephonyServer, telephony_configs
from afterbeep.telephony.sip.transaction import TimerConfig
from tests.e2e.rig import rtp_range
from tests.fixtures.rtp_pcap import RtpCapture, g711_roundtrip
from tests.sip.peer import RawPeer

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0  # bound on waiting for something to arrive; never a speed assertion
GREETING = (np.sin(np.arange(8000 * 2) * 2 * np.pi * 440 / 8000) * 8000).astype(np.int16)
GREETING[:160] = np.arange(160, dtype=np.int16) * 50  # a first frame that cannot be mistaken
_calls = itertools.count(1)


class Script:
    """Answers; plays GREETING (or records); remembers how the call ended."""

    def __init__(self, record: bool = False) -> None:
        self.record = record
        self.calls: list[SipCall] = []
        self.outcome: list[str] = []

    async def __call__(self, call: SipCall) -> None:
        self.calls.append(call)
        await call.answer()
        try:
            if self.record:
                await call.record(_Null(), max_seconds=WAIT * 3, silence_seconds=WAIT * 3)
            else:
                await call.play(GREETING)
            self.outcome.append("done")
        except CallEnded:
            self.outcome.append("ended")


class _Null:
    def write(self, pcm: object) -> None:
        pass


@contextlib.asynccontextmanager
async def serving(
    script: Callable[[SipCall], Awaitable[None]], t1: float = 0.5, rtcp_interval: float = 5.0
) -> AsyncIterator[int]:
    low, high = rtp_range()
    ua_config, media_config = telephony_configs("127.0.0.1:0", None, low, high)
    media_config = replace(media_config, rtcp_interval=rtcp_interval)
    ua_config = replace(ua_config, timers=TimerConfig(t1=t1, t2=min(4.0, 8 * t1), t4=10 * t1))
    async with TelephonyServer(ua_config, media_config, script) as server:
        assert server.udp_port is not None
        yield server.udp_port


class Caller:
    """One call from a raw SIP peer whose SDP names `rtp` and `rtcp` (RtpCaptures, the latter
    counting RTCP in `other`) as its media ports."""

    def __init__(self, sip: RawPeer, rtp: RtpCapture, rtcp: RtpCapture, server_port: int) -> None:
        self.sip = sip
        self.rtp = rtp
        self.rtcp = rtcp
        self.server_port = server_port
        n = next(_calls)
        self.call_id = f"confirm-{n}@127.0.0.1"
        self.branch = f"z9hG4bK-confirm-{n}"
        self.ok: bytes | None = None

    def _head(self, method: str, branch: str, cseq: int, to: str) -> str:
        return (
            f"{method} sip:+12025550100@127.0.0.1:{self.server_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.sip.port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:+12025550123@127.0.0.1>;tag=caller\r\n"
            f"To: {to}\r\n"
            f"Call-ID: {self.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:caller@127.0.0.1:{self.sip.port}>\r\n"
        )

    async def invite(self) -> bytes:
        sdp = (
            "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {self.rtp.port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
            f"a=rtcp:{self.rtcp.port}\r\n"
        ).encode()
        head = self._head("INVITE", self.branch, 1, "<sip:+12025550100@127.0.0.1>")
        head += f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n"
        self.sip.send(head.encode() + sdp, self.server_port)
        ok = await self.sip.response(self.branch, timeout=WAIT)
        assert ok is not None and ok.startswith(b"SIP/2.0 200"), ok
        self.ok = ok
        return ok

    @property
    def media_port(self) -> int:
        assert self.ok is not None
        found = re.search(rb"m=audio (\d+)", self.ok)
        assert found is not None
        return int(found.group(1))

    @property
    def to(self) -> str:
        assert self.ok is not None
        to = re.search(rb"^To: *(.*?)\r$", self.ok, re.M)
        assert to is not None
        return to.group(1).decode()

    def ack(self) -> None:
        head = self._head("ACK", self.branch + "-ack", 1, self.to)
        self.sip.send((head + "Content-Length: 0\r\n\r\n").encode(), self.server_port)

    def bye(self) -> None:
        head = self._head("BYE", self.branch + "-bye", 2, self.to)
        self.sip.send((head + "Content-Length: 0\r\n\r\n").encode(), self.server_port)

    async def bye_received(self) -> bytes | None:
        """The service's BYE, answered 200."""
        bye = await self.sip.wait_for(lambda data: data.startswith(b"BYE "), WAIT)
        if bye is not None:
            keep = (b"via:", b"from:", b"to:", b"call-id:", b"cseq:")
            lines = [line for line in bye.split(b"\r\n") if line.lower().startswith(keep)]
            reply = b"SIP/2.0 200 OK\r\n" + b"\r\n".join(lines) + b"\r\nContent-Length: 0\r\n\r\n"
            self.sip.send(reply, self.server_port)
        return bye

    def send_rtp(self) -> None:
        assert self.rtp.transport is not None
        packet = build_rtp(0, True, 1, 0, 0x1234, bytes([0xFF]) * 160)
        self.rtp.transport.sendto(packet, ("127.0.0.1", self.media_port))


@contextlib.asynccontextmanager
async def caller(server_port: int) -> AsyncIterator[Caller]:
    sip = await RawPeer.open()
    rtp = await RtpCapture.open()
    rtcp = await RtpCapture.open()
    try:
        yield Caller(sip, rtp, rtcp, server_port)
    finally:
        sip.close()
        rtp.close()
        rtcp.close()


async def packets(rtp: RtpCapture, count: int) -> None:
    async with asyncio.timeout(WAIT):
        while len(rtp.packets) < count:
            rtp.arrived.clear()
            await rtp.arrived.wait()


async def test_an_invite_never_acked_gets_no_rtp_and_ends_by_timer_h() -> None:
    script = Script()
    # timer H: 1.28 s; RTCP would be sent every 0.05-0.15 s
    async with serving(script, t1=0.02, rtcp_interval=0.1) as port, caller(port) as call:
        await call.invite()
        bye = await call.bye_received()  # the service gives up on the missing ACK
        assert bye is not None
        assert call.rtp.packets == []  # nothing reflected to the address the SDP named
        assert call.rtcp.other == 0 and call.rtp.other == 0  # no RTCP either (no BYE report)
        async with asyncio.timeout(WAIT):
            while not script.outcome:  # noqa: ASYNC110 (the script ends on its own)
                await asyncio.sleep(0.01)
    assert script.outcome == ["ended"]
    assert script.calls[0].end_reason == "no-ack"


async def test_a_late_ack_hears_the_greeting_from_its_first_frame() -> None:
    script = Script()
    async with serving(script) as port, caller(port) as call:
        await call.invite()
        await asyncio.sleep(0.3)  # the ACK is slow (the old code played meanwhile)
        assert call.rtp.packets == []
        call.ack()
        frames = len(GREETING) // 160
        await packets(call.rtp, frames)
        first = call.rtp.packets[0]
        assert first.marker
        sent = g711_roundtrip(Codec.PCMU, GREETING)
        heard = call.rtp.audio()
        assert (heard[:160] == sent[:160]).all()
        result = compare(sent, heard)
        assert result.lag == 0 and result.missing_head_ms == 0 and result.snr_db > 30, result
        assert await call.bye_received() is not None


async def test_rtp_from_the_sdp_address_confirms_the_call_like_the_ack() -> None:
    script = Script()
    async with serving(script) as port, caller(port) as call:
        await call.invite()
        await asyncio.sleep(0.2)
        assert call.rtp.packets == []
        call.send_rtp()  # from the port the SDP named, before any ACK
        await packets(call.rtp, len(GREETING) // 160)
        sent = g711_roundtrip(Codec.PCMU, GREETING)
        assert (call.rtp.audio()[:160] == sent[:160]).all()
        call.ack()
        assert await call.bye_received() is not None


async def test_a_recording_call_keeps_sending_rtp() -> None:
    script = Script(record=True)
    async with serving(script) as port, caller(port) as call:
        await call.invite()
        call.ack()
        await packets(call.rtp, 10)  # two seconds of keep-alive silence while it records
        assert {p.payload_type for p in call.rtp.packets} == {0}
        assert all(p.payload == bytes([0xFF]) * 160 for p in call.rtp.packets)
        assert script.outcome == []  # still recording
        first = call.rtp.packets[:10]
        # one 20 ms frame every 200 ms: numbered in turn, stamped with the time gone by, each
        # marked as the start of a talkspurt after the frames left unsent
        assert [p.sequence for p in first] == [(first[0].sequence + i) & 0xFFFF for i in range(10)]
        assert [p.timestamp for p in first] == [(first[0].timestamp + 1600 * i) & 0xFFFFFFFF for i in range(10)]
        assert all(p.marker for p in first[1:])
        call.bye()
        assert await call.sip.response(call.branch + "-bye", timeout=WAIT) is not None
