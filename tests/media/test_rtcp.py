"""RTCP statistics and compound packets (RFC 3550 section 6 and appendix A)."""

from __future__ import annotations

from aiortp.packet import (
    RtcpByePacket,
    RtcpPacket,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
)

from afterbeep.telephony.media.rtcp import (
    ReceptionStats,
    build_compound,
    ntp_timestamp,
    parse_sender_reports,
)
from afterbeep.telephony.media.rtp import is_rtcp


def test_loss_and_extended_sequence_across_wrap() -> None:
    stats = ReceptionStats()
    seqs = [65530 + i for i in range(20) if i not in (3, 12)]
    for i, s in enumerate(seqs):
        stats.packet(77, s % 65536, s * 160, i * 0.02, audio=True)
    block = stats.report_block(1.0)
    assert block is not None
    assert block.ssrc == 77 and block.packets_lost == 2
    assert block.highest_sequence == 65530 + 19
    assert block.fraction_lost == (2 << 8) // 20
    again = stats.report_block(2.0)
    assert again is not None and again.fraction_lost == 0  # nothing new was lost


def test_jitter_is_zero_for_a_perfect_stream_and_grows_with_variation() -> None:
    stats = ReceptionStats()
    for i in range(50):
        stats.packet(1, i, i * 160, i * 0.02, audio=True)
    assert stats.jitter_seconds < 1e-6
    for i in range(50, 100):
        stats.packet(1, i, i * 160, i * 0.02 + (0.01 if i % 2 else 0.0), audio=True)
    assert stats.jitter_seconds > 0.005


def test_compound_reports_parse_back() -> None:
    stats = ReceptionStats()
    stats.packet(5, 1, 0, 0.0, audio=True)
    ntp = ntp_timestamp(1_700_000_000.25)
    assert ntp & 0xFFFFFFFF == 1 << 30
    stats.sender_report(5, ntp, 0.5)
    block = stats.report_block(1.5)
    assert block is not None and block.lsr == (ntp >> 16) & 0xFFFFFFFF and block.dlsr == 65536
    sr = build_compound(9, b"x@afterbeep", block, RtcpSenderInfo(ntp, 1234, 10, 1600), bye=True)
    assert is_rtcp(sr)
    parsed = RtcpPacket.parse(sr)
    assert [type(p) for p in parsed] == [RtcpSrPacket, RtcpSdesPacket, RtcpByePacket]
    assert parse_sender_reports(sr) == [(9, ntp)]
    rr = build_compound(9, b"x@afterbeep", None, None)
    assert [type(p) for p in RtcpPacket.parse(rr)] == [RtcpRrPacket, RtcpSdesPacket]
