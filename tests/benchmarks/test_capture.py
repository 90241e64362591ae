"""What the SIPp caller heard, sorted into calls from a packet capture
(benchmarks.sip_load.capture), on captures written here with the calls' timing known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from benchmarks.sip_load.capture import (
    Rtp,
    SipMessage,
    calls_heard,
    capture_filter,
    read_pcap,
)
from benchmarks.sip_load.fixed_time import Nominal, beep_lateness

from afterbeep.audio.tones import speech_like
from afterbeep.telephony.media import Codec
from afterbeep.telephony.media.rtp import build_rtp
from afterbeep.telephony.prompts import beep
from tests.fixtures.rtp_pcap import PcapFile, PcapRecord, RtpStreamBuilder, UdpFrame, g711_roundtrip

SIP = ("127.0.0.1", 5072)
CALLER = ("127.0.0.1", 5061)
MEDIA = ("127.0.0.1", 6000)  # the caller's media port
BEEP = g711_roundtrip(Codec.PCMU, beep())


def ok(call_id: str, rtp_port: int) -> bytes:
    sdp = (
        f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    head = (
        f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n"
    )
    return (head + sdp).encode()


def bye(call_id: str) -> bytes:
    return (
        f"BYE sip:+12025550100@127.0.0.1:5072 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061\r\n"
        f"i: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_calls_are_told_apart_by_the_address_they_answered_from(tmp_path: Path) -> None:
    """Two calls in turn from the same RTP port (the target reuses it), a third at the same
    time from another; the first two hear a beep 20 ms and 120 ms late."""
    prompt = g711_roundtrip(Codec.PCMU, speech_like(500, seed=2))
    audio = np.concatenate([prompt, BEEP])
    nominal = Nominal(beep_start=len(prompt) / 8000, beep_end=0.0, speak_at=1.0)
    records: list[PcapRecord] = []

    def add(at: float, src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> None:
        records.append(PcapRecord(at, UdpFrame(src, dst, payload)))

    def call(call_id: str, answered: float, port: int, stall: float) -> None:
        add(answered, SIP, CALLER, ok(call_id, port))
        stream = RtpStreamBuilder(Codec.PCMU).audio(audio).take()
        for index, (sent, packet) in enumerate(stream):
            late = stall if index >= 10 else 0.0
            add(answered + 0.02 + sent + late, ("127.0.0.1", port), MEDIA, packet)
        add(answered + 0.03, MEDIA, ("127.0.0.1", port), build_rtp(0, True, 1, 0, 7, b"\xff" * 160))
        add(answered + 1.0, MEDIA, ("127.0.0.1", port), build_rtp(0, True, 50, 8000, 7, b"\xff" * 160))
        add(answered + 1.5, CALLER, SIP, bye(call_id))

    call("first", 10.0, 20000, 0.0)
    call("second", 20.0, 20000, 0.1)
    call("third", 20.5, 20002, 0.0)
    add(30.0, ("127.0.0.1", 20004), MEDIA, build_rtp(0, False, 1, 0, 9, b"\xff" * 160))
    add(30.1, SIP, CALLER, b"not SIP at all")
    records.sort(key=lambda r: r.time)
    path = tmp_path / "heard.pcap"
    path.write_bytes(bytes(PcapFile(tuple(records))))

    capture = calls_heard(read_pcap(path), SIP[1], MEDIA[1], keep_seconds=5.0)

    assert [c.call_id for c in capture.calls] == ["first", "second", "third"]
    assert capture.unmatched_rtp == 1 and capture.sip_unparsed == 1
    first, second, third = capture.calls
    assert first.answered == pytest.approx(10.0) and first.ended == pytest.approx(11.5)
    assert first.media == ("127.0.0.1", 20000) and third.media == ("127.0.0.1", 20002)
    frames = -(-len(audio) // 160)
    assert [len(c.times) for c in capture.calls] == [frames] * 3
    heard = first.arrivals()
    assert np.array_equal(heard.pcm[: len(audio)], audio)
    assert beep_lateness(heard, 10.0, nominal, BEEP) == pytest.approx(0.02, abs=1e-5)
    assert second.answered is not None
    assert beep_lateness(second.arrivals(), second.answered, nominal, BEEP) == pytest.approx(0.12, abs=1e-5)
    assert third.speech_started() == pytest.approx(21.5)


def test_a_call_keeps_only_its_first_seconds(tmp_path: Path) -> None:
    records = [PcapRecord(0.0, UdpFrame(SIP, CALLER, ok("c", 20000)))]
    for i in range(10):
        packet = build_rtp(0, i == 0, i, i * 160, 5, b"\x00" * 160)
        records.append(PcapRecord(0.5 * i, UdpFrame(("127.0.0.1", 20000), MEDIA, packet)))
    path = tmp_path / "c.pcap"
    path.write_bytes(bytes(PcapFile(tuple(records))))
    (call,) = calls_heard(read_pcap(path), SIP[1], MEDIA[1], keep_seconds=2.0).calls
    assert len(call.times) == 5
    assert call.speech_started() is None


def test_sip_and_rtp_parsing() -> None:
    message = SipMessage.parse(ok("abc", 30000))
    assert (message.status, message.request, message.call_id, message.cseq_method) == (200, None, "abc", "INVITE")
    assert message.sdp_audio() == ("127.0.0.1", 30000)
    request = SipMessage.parse(bye("abc"))
    assert (request.request, request.status, request.call_id) == ("BYE", None, "abc")
    assert request.sdp_audio() is None
    with pytest.raises(ValueError):
        SipMessage.parse(b"\x80\x00garbage")
    with pytest.raises(ValueError):
        SipMessage.parse(b"SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n\r\n")
    rtp = Rtp.parse(build_rtp(8, True, 1, 2, 3, b"abc"))
    assert (rtp.payload_type, rtp.marker, rtp.payload) == (8, True, b"abc")
    padded = bytearray(build_rtp(0, False, 1, 2, 3, b"abcd\x00\x00\x03"))
    padded[0] |= 0x20
    assert Rtp.parse(bytes(padded)).payload == b"abcd"
    with pytest.raises(ValueError):
        Rtp.parse(b"\x00" * 12)


def test_the_capture_filter_names_both_ports() -> None:
    text = capture_filter(5072, 6000)
    assert "port 5072" in text and "dst port 6000" in text and "src port 6000" in text
    assert "udp[9] & 0x80" in text  # the RTP marker bit, after the 8-byte UDP header
