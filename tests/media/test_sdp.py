"""SDP offer/answer against offers shaped like those of real peers."""

from __future__ import annotations

import pytest
from aiosipua.sdp import parse_sdp

from afterbeep.telephony.media import (
    Codec,
    Direction,
    NoCommonMediaError,
    SdpError,
    SdpPrefs,
    answer,
    offer,
    parse_answer,
)

LOCAL = "198.51.100.7"  # our advertised address
PORT = 20000


def crlf(text: str) -> bytes:
    return "".join(line.strip() + "\r\n" for line in text.strip().splitlines()).encode()


SIPP_PCAP = crlf("""
    v=0
    o=user1 53655765 2353687637 IN IP4 127.0.0.1
    s=-
    c=IN IP4 127.0.0.1
    t=0 0
    m=audio 6000 RTP/AVP 8 101
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-11,16
""")

SIPP_BASIC = crlf("""
    v=0
    o=user1 53655765 2353687637 IN IP4 127.0.0.1
    s=-
    c=IN IP4 127.0.0.1
    t=0 0
    m=audio 6000 RTP/AVP 0
    a=rtpmap:0 PCMU/8000
""")

BARESIP = crlf("""
    v=0
    o=- 1286396582 2120458412 IN IP4 192.0.2.10
    s=-
    c=IN IP4 192.0.2.10
    t=0 0
    m=audio 10180 RTP/AVP 96 0 8 101
    b=AS:64
    a=rtpmap:96 opus/48000/2
    a=fmtp:96 stereo=1;sprop-stereo=1
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=rtcp-mux
    a=ptime:20
    a=sendrecv
    a=label:1
    a=ssrc:1472303426 cname:f0a1b2c3-d4e5
""")

ASTERISK = crlf("""
    v=0
    o=- 1613478236 1613478236 IN IP4 192.0.2.5
    s=Asterisk
    c=IN IP4 192.0.2.5
    t=0 0
    m=audio 17802 RTP/AVP 0 8 3 111 101
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:3 GSM/8000
    a=rtpmap:111 G726-32/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
    a=ptime:20
    a=maxptime:150
    a=sendrecv
""")

TWILIO_LIKE = crlf("""
    v=0
    o=root 1835290497 1835290497 IN IP4 203.0.113.60
    s=Media Gateway
    c=IN IP4 203.0.113.60
    t=0 0
    m=audio 14488 RTP/AVP 0 96
    a=rtpmap:0 PCMU/8000
    a=rtpmap:96 telephone-event/8000
    a=fmtp:96 0-16
    a=sendrecv
    a=rtcp:14489
    a=ptime:20
""")

PCMA_30 = crlf("""
    v=0
    o=- 1 1 IN IP4 192.0.2.20
    s=-
    c=IN IP4 192.0.2.20
    t=0 0
    m=audio 30000 RTP/AVP 8 18 101
    a=rtpmap:8 PCMA/8000
    a=rtpmap:18 G729/8000
    a=rtpmap:101 telephone-event/8000
    a=ptime:30
""")


def media_lines(body: bytes) -> list[str]:
    return [line for line in body.decode().split("\r\n") if line.startswith("m=")]


def test_sipp_pcap_offer_pcma_with_event_101() -> None:
    body, neg = answer(SIPP_PCAP, LOCAL, PORT)
    assert neg.codec is Codec.PCMA and neg.payload_type == 8
    assert neg.telephone_event_pt == 101 and neg.receive_event_pts == {101}
    assert neg.remote_address == ("127.0.0.1", 6000)
    assert neg.ptime == 20 and neg.direction is Direction.SENDRECV
    assert not neg.rtcp_mux and neg.remote_rtcp_address == ("127.0.0.1", 6001)
    assert media_lines(body) == [f"m=audio {PORT} RTP/AVP 8 101"]
    assert "a=fmtp:101 0-11,16" in body.decode()
    assert "c=IN IP4 198.51.100.7" in body.decode()


def test_sipp_basic_offer_without_telephone_event() -> None:
    body, neg = answer(SIPP_BASIC, LOCAL, PORT)
    assert neg.codec is Codec.PCMU and neg.telephone_event_pt is None
    assert neg.receive_event_pts == frozenset()
    assert media_lines(body) == [f"m=audio {PORT} RTP/AVP 0"]
    assert "telephone-event" not in body.decode()


def test_baresip_offer_skips_opus_and_accepts_rtcp_mux() -> None:
    body, neg = answer(BARESIP, LOCAL, PORT)
    assert neg.codec is Codec.PCMU and neg.payload_type == 0
    assert neg.telephone_event_pt == 101
    assert neg.receive_payload_types == {0: Codec.PCMU}
    assert neg.rtcp_mux and neg.remote_rtcp_address == ("192.0.2.10", 10180)
    text = body.decode()
    assert "a=rtcp-mux" in text and "opus" not in text and "a=fmtp:101 0-15" in text


def test_asterisk_offer_order_wins_and_maxptime_respected() -> None:
    _, neg = answer(ASTERISK, LOCAL, PORT, SdpPrefs(codecs=(Codec.PCMA, Codec.PCMU)))
    assert neg.codec is Codec.PCMU  # the offerer listed PCMU first
    assert neg.ptime == 20


def test_twilio_like_offer_keeps_payload_type_96_for_events() -> None:
    body, neg = answer(TWILIO_LIKE, LOCAL, PORT)  # our own preference would be 101
    assert neg.telephone_event_pt == 96 and neg.receive_event_pts == {96}
    assert 96 not in neg.receive_payload_types
    text = body.decode()
    assert f"m=audio {PORT} RTP/AVP 0 96" in text
    media_lines = [line for line in text.splitlines() if line.startswith(("m=", "a="))]
    assert "a=rtpmap:96 telephone-event/8000" in media_lines
    assert not any("101" in line for line in media_lines)  # o= holds a random session id
    assert neg.remote_rtcp_address == ("203.0.113.60", 14489)


def test_pcma_with_30ms_ptime_is_honoured() -> None:
    body, neg = answer(PCMA_30, LOCAL, PORT)
    assert neg.codec is Codec.PCMA and neg.ptime == 30 and neg.samples_per_packet == 240
    assert "a=ptime:30" in body.decode()
    assert "a=fmtp:101 0-15" in body.decode()  # RFC 4733 default when the offer has no fmtp


def test_unsupported_ptime_falls_back_to_preference() -> None:
    offer_40 = SIPP_BASIC + b"a=ptime:40\r\n"
    _, neg = answer(offer_40, LOCAL, PORT, SdpPrefs(ptime=30))
    assert neg.ptime == 30
    _, neg = answer(offer_40 + b"a=maxptime:20\r\n", LOCAL, PORT, SdpPrefs(ptime=30))
    assert neg.ptime == 20


def test_no_common_codec_is_a_precise_error() -> None:
    g729_only = crlf("""
        v=0
        o=- 1 1 IN IP4 192.0.2.1
        s=-
        c=IN IP4 192.0.2.1
        t=0 0
        m=audio 4000 RTP/AVP 18 101
        a=rtpmap:18 G729/8000
        a=rtpmap:101 telephone-event/8000
    """)
    with pytest.raises(NoCommonMediaError, match="G729"):
        answer(g729_only, LOCAL, PORT)
    with pytest.raises(NoCommonMediaError):
        answer(SIPP_PCAP, LOCAL, PORT, SdpPrefs(codecs=(Codec.PCMU,)))


def test_srtp_only_and_video_only_offers_are_refused() -> None:
    srtp = SIPP_BASIC.replace(b"RTP/AVP", b"RTP/SAVP")
    with pytest.raises(NoCommonMediaError):
        answer(srtp, LOCAL, PORT)
    video = SIPP_BASIC.replace(b"m=audio 6000 RTP/AVP 0", b"m=video 6000 RTP/AVP 0")
    with pytest.raises(NoCommonMediaError):
        answer(video, LOCAL, PORT)


def test_malformed_offers_are_sdp_errors() -> None:
    with pytest.raises(SdpError):
        answer(b"\xff\xfe garbage", LOCAL, PORT)
    with pytest.raises(SdpError):
        answer(b"hello", LOCAL, PORT)
    with pytest.raises(SdpError):
        answer(SIPP_BASIC.replace(b"m=audio 6000", b"m=audio six"), LOCAL, PORT)
    with pytest.raises(SdpError, match="c="):
        answer(SIPP_BASIC.replace(b"c=IN IP4 127.0.0.1\r\n", b""), LOCAL, PORT)
    with pytest.raises(SdpError, match="IP literal"):
        answer(SIPP_BASIC.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 media.example"), LOCAL, PORT)


def test_extra_streams_are_rejected_in_order_with_port_zero() -> None:
    with_video = BARESIP + crlf("""
        m=video 10182 RTP/AVP 97
        a=rtpmap:97 H264/90000
    """)
    body, neg = answer(with_video, LOCAL, PORT)
    assert media_lines(body) == [f"m=audio {PORT} RTP/AVP 0 101", "m=video 0 RTP/AVP 97"]
    assert neg.codec is Codec.PCMU


def test_hold_with_sendonly_and_resume() -> None:
    body1, neg1 = answer(ASTERISK, LOCAL, PORT)
    hold = ASTERISK.replace(b"a=sendrecv", b"a=sendonly").replace(
        b"1613478236 IN", b"1613478237 IN"
    )
    body2, neg2 = answer(hold, LOCAL, PORT, previous=neg1)
    assert neg2.direction is Direction.RECVONLY and neg2.on_hold
    assert not neg2.sends and neg2.expects_rtp  # music on hold may come our way
    assert b"a=recvonly" in body2
    assert neg2.sdp_session_id == neg1.sdp_session_id and neg2.sdp_version == neg1.sdp_version + 1
    body3, neg3 = answer(ASTERISK, LOCAL, PORT, previous=neg2)
    assert neg3.direction is Direction.SENDRECV and not neg3.on_hold and neg3.sends
    assert neg3.sdp_version == neg2.sdp_version + 1
    # a re-INVITE that changes nothing keeps the version (RFC 3264 section 8)
    body4, neg4 = answer(ASTERISK, LOCAL, PORT, previous=neg3)
    assert body4 == body3 and neg4.sdp_version == neg3.sdp_version
    assert b"a=sendrecv" in body1


def test_hold_with_inactive() -> None:
    inactive = TWILIO_LIKE.replace(b"a=sendrecv", b"a=inactive")
    body, neg = answer(inactive, LOCAL, PORT)
    assert neg.direction is Direction.INACTIVE and neg.on_hold
    assert not neg.sends and not neg.expects_rtp
    assert b"a=inactive" in body


def test_hold_with_connection_address_zero() -> None:
    old_style = SIPP_PCAP.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 0.0.0.0")
    body, neg = answer(old_style, LOCAL, PORT)
    assert not neg.remote_reachable and not neg.sends and neg.on_hold
    assert neg.remote_rtcp_address is None
    assert neg.direction is Direction.RECVONLY and neg.remote_direction is Direction.SENDONLY
    assert b"c=IN IP4 198.51.100.7" in body and b"0.0.0.0" not in body


def test_session_level_direction_attribute() -> None:
    session_level = SIPP_BASIC.replace(b"t=0 0\r\n", b"t=0 0\r\na=sendonly\r\n")
    _, neg = answer(session_level, LOCAL, PORT)
    assert neg.direction is Direction.RECVONLY


def test_our_address_is_never_unspecified() -> None:
    for bad in ("0.0.0.0", "::", "pbx.example"):
        with pytest.raises(ValueError):
            answer(SIPP_BASIC, bad, PORT)
        with pytest.raises(ValueError):
            offer(bad, PORT)


def test_ipv6_answer() -> None:
    v6 = SIPP_BASIC.replace(b"IN IP4 127.0.0.1", b"IN IP6 2001:db8::5")
    body, neg = answer(v6, "2001:db8::1", PORT)
    assert neg.remote_ip == "2001:db8::5"
    assert b"c=IN IP6 2001:db8::1" in body


def test_offer_and_answer_round_trip_for_outbound_calls() -> None:
    ours = offer(LOCAL, PORT, SdpPrefs(codecs=(Codec.PCMA, Codec.PCMU), telephone_event_pt=100))
    parsed = parse_sdp(ours.decode())
    assert parsed.audio is not None and parsed.audio.formats == ["8", "0", "100"]
    assert parsed.connection is not None and parsed.connection.address == LOCAL
    # the far end answers with its own telephone-event number and 30 ms
    far = crlf("""
        v=0
        o=- 7 7 IN IP4 192.0.2.30
        s=-
        c=IN IP4 192.0.2.30
        t=0 0
        m=audio 5004 RTP/AVP 8 101
        a=rtpmap:8 PCMA/8000
        a=rtpmap:101 telephone-event/8000
        a=ptime:30
        a=rtcp-mux
    """)
    neg = parse_answer(far, ours)
    assert neg.codec is Codec.PCMA and neg.ptime == 30
    assert neg.telephone_event_pt == 101  # we send with the number the receiver declared
    assert neg.receive_event_pts == {100, 101}
    assert neg.rtcp_mux and neg.local_port == PORT and neg.local_ip == LOCAL
    assert neg.remote_address == ("192.0.2.30", 5004)


def test_answer_that_rejects_or_changes_codec() -> None:
    ours = offer(LOCAL, PORT, SdpPrefs(codecs=(Codec.PCMU,)))
    with pytest.raises(NoCommonMediaError):
        parse_answer(SIPP_PCAP, ours)  # PCMA was never offered
    rejected = SIPP_BASIC.replace(b"m=audio 6000", b"m=audio 0")
    with pytest.raises(NoCommonMediaError):
        parse_answer(rejected, ours)


def test_our_hold_reoffer_and_resume() -> None:
    ours = offer(LOCAL, PORT)
    neg = parse_answer(SIPP_BASIC, ours)
    hold = offer(LOCAL, PORT, direction=Direction.SENDONLY, previous=neg)
    assert b"a=sendonly" in hold
    far_recvonly = SIPP_BASIC + b"a=recvonly\r\n"
    held = parse_answer(far_recvonly, hold)
    assert held.direction is Direction.SENDONLY and held.on_hold and not held.expects_rtp
    assert held.sdp_session_id == neg.sdp_session_id and held.sdp_version == neg.sdp_version + 1
    resume = offer(LOCAL, PORT, previous=held)
    assert parse_answer(SIPP_BASIC, resume).direction is Direction.SENDRECV


def test_prefs_validation() -> None:
    with pytest.raises(ValueError):
        SdpPrefs(ptime=10)
    with pytest.raises(ValueError):
        SdpPrefs(telephone_event_pt=13)
    with pytest.raises(ValueError):
        SdpPrefs(codecs=())
