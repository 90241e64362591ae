"""RTCP for one audio session (RFC 3550 section 6): reception statistics and reports, no I/O.

The packets (SR, RR, SDES, BYE) and their parser are aiortp's (``aiortp.packet``,
sound). The statistics are ours, after RFC 3550 appendix A.1 (extended highest
sequence number), A.3 (cumulative and fractional loss) and A.8 (interarrival jitter).
"""

from __future__ import annotations

from aiortp.packet import (
    RtcpByePacket,
    RtcpPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    clamp_packets_lost,
)

from afterbeep.telephony.media.rtp import MalformedPacketError

__all__ = [
    "NTP_EPOCH_OFFSET",
    "RTCP_INTERVAL",
    "ReceptionStats",
    "build_compound",
    "ntp_timestamp",
    "parse_sender_reports",
]

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
RTCP_INTERVAL = 5.0  # RFC 3550 section 6.2: the minimum reporting interval
SDES_CNAME = 1  # RFC 3550 section 6.5.1
_MAX_DROPOUT = 3000


def ntp_timestamp(wall: float) -> int:
    """64-bit NTP timestamp of a Unix time."""
    seconds = wall + NTP_EPOCH_OFFSET
    whole = int(seconds)
    return (whole << 32) | int((seconds - whole) * (1 << 32))


class ReceptionStats:
    """What we know about the one source we receive from, for report blocks."""

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self._reset(None, 0)

    def _reset(self, ssrc: int | None, seq: int) -> None:
        self.ssrc = ssrc
        self.received = 0
        self._base = seq
        self._max = seq  # extended highest sequence number
        self._expected_prior = 0
        self._received_prior = 0
        self._jitter = 0.0
        self._last_ts: int | None = None
        self._last_arrival = 0.0
        self._lsr = 0
        self._lsr_arrival: float | None = None

    @property
    def jitter_seconds(self) -> float:
        return self._jitter / self.clock_rate

    @property
    def expected(self) -> int:
        return self._max - self._base + 1 if self.ssrc is not None else 0

    @property
    def cumulative_lost(self) -> int:
        return self.expected - self.received

    def packet(self, ssrc: int, seq: int, ts: int, arrival: float, audio: bool) -> None:
        if ssrc != self.ssrc:
            self._reset(ssrc, seq)
        else:
            delta = (seq - self._max + 0x8000) % 65536 - 0x8000
            if 0 < delta < _MAX_DROPOUT:
                self._max += delta
        self.received += 1
        if not audio:
            return
        last_ts = self._last_ts
        if last_ts is not None:
            transit_change = (arrival - self._last_arrival) * self.clock_rate - (
                (ts - last_ts + 0x80000000) % 0x100000000 - 0x80000000
            )
            self._jitter += (abs(transit_change) - self._jitter) / 16
        self._last_ts = ts
        self._last_arrival = arrival

    def snapshot(self) -> tuple[int, float, int | None, float]:
        """(extended highest sequence, jitter, last timestamp, last arrival): what the native
        receiver continues `packet` from."""
        return self._max, self._jitter, self._last_ts, self._last_arrival

    def advanced(
        self, packets: int, max_ext: int, jitter: float, last_ts: int | None, last_arrival: float
    ) -> None:
        """The native receiver took ``packets`` audio packets of this SSRC; its state now."""
        self.received += packets
        self._max = max_ext
        self._jitter = jitter
        self._last_ts = last_ts
        self._last_arrival = last_arrival

    def sender_report(self, ssrc: int, ntp: int, arrival: float) -> None:
        if ssrc == self.ssrc:
            self._lsr = (ntp >> 16) & 0xFFFFFFFF
            self._lsr_arrival = arrival

    def report_block(self, now: float) -> RtcpReceiverInfo | None:
        if self.ssrc is None:
            return None
        expected = self.expected
        expected_interval = expected - self._expected_prior
        lost_interval = expected_interval - (self.received - self._received_prior)
        self._expected_prior = expected
        self._received_prior = self.received
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        dlsr = 0
        if self._lsr_arrival is not None:
            dlsr = int((now - self._lsr_arrival) * 65536) & 0xFFFFFFFF
        return RtcpReceiverInfo(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            packets_lost=clamp_packets_lost(self.cumulative_lost),
            highest_sequence=self._max & 0xFFFFFFFF,
            jitter=int(self._jitter),
            lsr=self._lsr,
            dlsr=dlsr,
        )


def build_compound(
    ssrc: int,
    cname: bytes,
    block: RtcpReceiverInfo | None,
    sender: RtcpSenderInfo | None,
    bye: bool = False,
) -> bytes:
    """SR (when we sent since the last report) or RR, then SDES CNAME, then BYE if leaving."""
    reports = [block] if block is not None else []
    first: RtcpSrPacket | RtcpRrPacket
    if sender is not None:
        first = RtcpSrPacket(ssrc=ssrc, sender_info=sender, reports=reports)
    else:
        first = RtcpRrPacket(ssrc=ssrc, reports=reports)
    sdes = RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=ssrc, items=[(SDES_CNAME, cname)])])
    data = bytes(first) + bytes(sdes)
    if bye:
        data += bytes(RtcpByePacket(sources=[ssrc]))
    return data


def parse_sender_reports(data: bytes) -> list[tuple[int, int]]:
    """(SSRC, NTP timestamp) of each SR in a compound packet."""
    try:
        packets = RtcpPacket.parse(data)
    except (ValueError, IndexError) as exc:
        raise MalformedPacketError(f"bad RTCP: {exc}") from exc
    return [(p.ssrc, p.sender_info.ntp_timestamp) for p in packets if isinstance(p, RtcpSrPacket)]
