"""Our RTP header parser and builder, checked against aiortp's (the reference)."""

from __future__ import annotations

import pytest
from aiortp.packet import HeaderExtensionsMap, RtpPacket

from afterbeep.telephony.media.rtp import (
    MalformedPacketError,
    build_rtp,
    is_rtcp,
    parse_rtp,
    seq_diff,
    ts_diff,
)


def reference(
    csrc: int = 0, extension: bool = False, padding: int = 0, marker: bool = True
) -> bytes:
    packet = RtpPacket(
        payload_type=8,
        marker=int(marker),
        sequence_number=65535,
        timestamp=2**32 - 1,
        ssrc=0xDEADBEEF,
        payload=bytes(range(160)),
    )
    packet.csrc = list(range(1, csrc + 1))
    packet.padding_size = padding
    ext_map = HeaderExtensionsMap()
    if extension:
        ext_map.configure([(1, "urn:ietf:params:rtp-hdrext:ssrc-audio-level")])
        packet.extensions.audio_level = (True, 42)
    return packet.serialize(ext_map)


@pytest.mark.parametrize(
    ("csrc", "extension", "padding"),
    [(0, False, 0), (2, False, 0), (0, True, 0), (0, False, 4), (3, True, 7)],
)
def test_parse_matches_aiortp(csrc: int, extension: bool, padding: int) -> None:
    data = reference(csrc, extension, padding)
    ours = parse_rtp(data, 1.5)
    theirs = RtpPacket.parse(data)
    assert (ours.payload_type, ours.marker, ours.sequence, ours.timestamp, ours.ssrc) == (
        theirs.payload_type,
        bool(theirs.marker),
        theirs.sequence_number,
        theirs.timestamp,
        theirs.ssrc,
    )
    assert ours.payload == theirs.payload == bytes(range(160))
    assert ours.arrival == 1.5


def test_build_matches_aiortp() -> None:
    data = reference(marker=True)
    assert build_rtp(8, True, 65535, 2**32 - 1, 0xDEADBEEF, bytes(range(160))) == data


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x00",  # shorter than the header
        b"\x40" + bytes(11),  # version 1
        b"\x82" + bytes(11) + bytes(4),  # two CSRCs announced, one present
        b"\x90" + bytes(11) + b"\x00\x00",  # extension header cut
        b"\x90" + bytes(11) + b"\xbe\xde\x00\x05" + bytes(4),  # extension longer than the packet
        b"\xa0" + bytes(11) + b"\x00\x00\x00\x00",  # padding count 0
        b"\xa0" + bytes(11) + b"\x00\x09",  # padding longer than the payload
    ],
)
def test_malformed_packets_are_rejected(data: bytes) -> None:
    with pytest.raises(MalformedPacketError):
        parse_rtp(data)
    with pytest.raises(ValueError):
        RtpPacket.parse(data)


def test_modular_differences_and_rtcp_demux() -> None:
    assert seq_diff(2, 65534) == 4 and seq_diff(65534, 2) == -4
    assert ts_diff(100, 2**32 - 60) == 160 and ts_diff(2**32 - 60, 100) == -160
    assert is_rtcp(b"\x81\xc8\x00\x06") and not is_rtcp(build_rtp(0, True, 1, 1, 1, b""))
