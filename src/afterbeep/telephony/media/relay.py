"""The media relay of a back-to-back bridge: RTP received on one call's session goes out on the
other's as it arrives (no jitter buffer, no decoding when both sides speak the same codec).

`RelayStream` is the pure core of one direction (no I/O, no clock): it turns a packet received
from one side into the packet the other side is sent. The SSRC is the sending session's own
and sequence numbers and timestamps continue its stream, moved by a fixed offset per source
stream, so the far end's jitter buffer still sees losses and reordering as they happened and an
RFC 4733 event keeps one timestamp across its packets. The payload type is the one the other
side negotiated; G.711 audio is transcoded A-law <-> µ-law by one 256-byte table when the two
sides differ (`bytes.translate`, no PCM in between), passed through untouched otherwise;
telephone-events are renumbered to the other side's payload type, dropped when it has none.

`MediaRelay` joins two `MediaSession`s through their receive-path hook (`on_rtp`): each packet
is rewritten and sent in the datagram callback that received it. A side whose negotiation says
we must not send to it (hold: it sent `sendonly` or `inactive`, or a 0.0.0.0 address) gets
nothing; what would have gone there is counted as withheld.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from afterbeep.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from afterbeep.telephony.media.rtp import (
    RTP_HEADER_SIZE,
    RTP_VERSION,
    MalformedPacketError,
    parse_rtp,
    seq_diff,
)
from afterbeep.telephony.media.sdp import Codec, Negotiated
from afterbeep.telephony.media.sender import RtpSendStream
from afterbeep.telephony.media.session import MediaSession

__all__ = [
    "ALAW_TO_ULAW",
    "ULAW_TO_ALAW",
    "MediaRelay",
    "RelayRoute",
    "RelayStats",
    "RelayStream",
]

_ALL_CODES = bytes(range(256))
ALAW_TO_ULAW = ulaw_encode(alaw_decode(_ALL_CODES))
ULAW_TO_ALAW = alaw_encode(ulaw_decode(_ALL_CODES))
_TABLES: dict[tuple[Codec, Codec], bytes] = {
    (Codec.PCMA, Codec.PCMU): ALAW_TO_ULAW,
    (Codec.PCMU, Codec.PCMA): ULAW_TO_ALAW,
}
_PLAIN = RTP_VERSION << 6  # first octet without padding, extension or CSRCs
_MARKER = 0x80
_HEADER = struct.Struct("!BBHII")
_AFTER_FIRST = struct.Struct("!BHII")


@dataclass(frozen=True, slots=True)
class RelayRoute:
    """One direction as the two negotiations define it: what the source may send us, what the
    destination expects from us."""

    audio_in: Mapping[int, Codec] = field(hash=False)
    events_in: frozenset[int]
    codec_out: Codec
    payload_type_out: int
    event_payload_type_out: int | None

    @classmethod
    def between(cls, source: Negotiated, destination: Negotiated) -> RelayRoute:
        return cls(
            audio_in=source.receive_payload_types,
            events_in=source.receive_event_pts,
            codec_out=destination.codec,
            payload_type_out=destination.payload_type,
            event_payload_type_out=destination.telephone_event_pt,
        )


@dataclass(slots=True)
class RelayStats:
    relayed: int = 0
    transcoded: int = 0
    events: int = 0
    dropped: int = 0  # a payload type the source did not negotiate, or an event nobody takes
    malformed: int = 0
    withheld: int = 0  # the destination is on hold


class RelayStream:
    """One direction of a relay: received packet in, packet to send out (or None)."""

    def __init__(self, stream: RtpSendStream, route: RelayRoute) -> None:
        self.stream = stream
        self.stats = RelayStats()
        self._map: dict[int, tuple[int, bytes | None, bool]] = {}
        self._source: int | None = None  # the SSRC being relayed
        self._seq_offset = 0
        self._ts_offset = 0
        self.configure(route)

    def configure(self, route: RelayRoute) -> None:
        """A new negotiation on either side (codec, payload types)."""
        self.route = route
        mapping: dict[int, tuple[int, bytes | None, bool]] = {}
        for pt, codec in route.audio_in.items():
            mapping[pt] = (route.payload_type_out, _TABLES.get((codec, route.codec_out)), False)
        if route.event_payload_type_out is not None:
            for pt in route.events_in:
                mapping[pt] = (route.event_payload_type_out, None, True)
        self._map = mapping

    def rewrite(self, data: bytes) -> bytes | None:
        stats = self.stats
        if len(data) > RTP_HEADER_SIZE and data[0] == _PLAIN:
            second, sequence, timestamp, ssrc = _AFTER_FIRST.unpack_from(data, 1)
            payload = data[RTP_HEADER_SIZE:]
            pt, marker = second & 0x7F, second & _MARKER
        else:
            try:
                packet = parse_rtp(data)
            except MalformedPacketError:
                stats.malformed += 1
                return None
            pt, marker = packet.payload_type, _MARKER if packet.marker else 0
            sequence, timestamp, ssrc, payload = (
                packet.sequence,
                packet.timestamp,
                packet.ssrc,
                packet.payload,
            )
        mapped = self._map.get(pt)
        if mapped is None or not payload:
            stats.dropped += 1
            return None
        out_pt, table, event = mapped
        stream = self.stream
        if ssrc != self._source:
            # a new source stream continues ours where it is, as a new talkspurt
            self._source = ssrc
            self._seq_offset = stream.sequence - sequence
            self._ts_offset = stream.timestamp - timestamp
            marker = _MARKER
        out_seq = (sequence + self._seq_offset) & 0xFFFF
        out_ts = (timestamp + self._ts_offset) & 0xFFFFFFFF
        if table is not None:
            payload = payload.translate(table)
            stats.transcoded += 1
        if seq_diff(out_seq, stream.sequence) >= 0:
            stream.sequence = (out_seq + 1) & 0xFFFF
            if not event:
                stream.timestamp = (out_ts + len(payload)) & 0xFFFFFFFF  # G.711: byte = sample
        stream.packets_sent += 1
        stream.octets_sent += len(payload)
        if event:
            stats.events += 1
        stats.relayed += 1
        return _HEADER.pack(_PLAIN, out_pt | marker, out_seq, out_ts, stream.ssrc) + payload


class _Direction:
    __slots__ = ("core", "destination", "negotiations", "source")

    def __init__(self, source: MediaSession, destination: MediaSession) -> None:
        self.source = source
        self.destination = destination
        self.negotiations: tuple[Negotiated | None, Negotiated | None] = (None, None)
        self.core: RelayStream | None = None

    def forward(self, data: bytes) -> None:
        source, destination = self.source, self.destination
        core = self.core
        if (
            core is None
            or self.negotiations[0] is not source.negotiated
            or self.negotiations[1] is not destination.negotiated
        ):
            core = self._configure()
            if core is None:
                return
        if not destination.sending:
            core.stats.withheld += 1
            return
        packet = core.rewrite(data)
        if packet is not None:
            destination.transmit(packet)

    def _configure(self) -> RelayStream | None:
        src, dst = self.source.negotiated, self.destination.negotiated
        self.negotiations = (src, dst)
        if src is None or dst is None:
            return None
        route = RelayRoute.between(src, dst)
        if self.core is None:
            self.core = RelayStream(self.destination.send_stream, route)
        else:
            self.core.configure(route)
        return self.core


class MediaRelay:
    """Relays RTP between two started sessions from `start()` to `stop()`. While it runs the
    sessions deliver no audio or digits of their own, and nothing else may send on them."""

    def __init__(self, a: MediaSession, b: MediaSession) -> None:
        self.a = a
        self.b = b
        self._a_to_b = _Direction(a, b)
        self._b_to_a = _Direction(b, a)
        self.running = False

    def start(self) -> None:
        self.a.on_rtp = self._a_to_b.forward
        self.b.on_rtp = self._b_to_a.forward
        self.running = True

    def stop(self) -> None:
        if self.a.on_rtp == self._a_to_b.forward:
            self.a.on_rtp = None
        if self.b.on_rtp == self._b_to_a.forward:
            self.b.on_rtp = None
        self.running = False

    @property
    def a_to_b(self) -> RelayStats:
        core = self._a_to_b.core
        return core.stats if core is not None else RelayStats()

    @property
    def b_to_a(self) -> RelayStats:
        core = self._b_to_a.core
        return core.stats if core is not None else RelayStats()
