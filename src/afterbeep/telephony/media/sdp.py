"""SDP offer/answer (RFC 3264) for one G.711 audio stream with RFC 4733 telephone-event.

Parsing and serialising the SDP text is aiosipua's (``aiosipua.sdp``, sound); the
negotiation is ours. aiosipua 0.7.1's ``negotiate_sdp`` answers with *its own*
telephone-event payload type instead of the one the offer numbered, so a caller
offering PT 96 sends digits that we then decode as audio; it also ignores
``c=0.0.0.0`` hold, session-level direction attributes and rtcp-mux.

The result of every negotiation is a :class:`Negotiated`: what the RTP session
needs to send and receive. Hold and resume are new offers/answers inside the dialog
and produce a new :class:`Negotiated` (pass the previous one so the ``o=`` version
is handled per RFC 3264 section 8).
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum

from aiosipua.sdp import (
    ConnectionData,
    MediaDescription,
    Origin,
    SdpMessage,
    TimingField,
    parse_sdp,
    serialize_sdp,
)

from afterbeep.telephony.media.errors import NoCommonMediaError, SdpError

__all__ = [
    "CLOCK_RATE",
    "SUPPORTED_PTIMES",
    "Codec",
    "Direction",
    "Negotiated",
    "SdpPrefs",
    "answer",
    "check_local_address",
    "offer",
    "parse_answer",
]

CLOCK_RATE = 8000  # G.711 and telephone-event/8000 (RFC 3551, RFC 4733)
SUPPORTED_PTIMES = (20, 30)  # ms
TELEPHONE_EVENT = "telephone-event"
DEFAULT_EVENTS = "0-15"  # RFC 4733 section 7.1.1: the events implied when fmtp is absent
OFFERED_EVENTS = "0-16"  # DTMF digits 0-9 * # A-D and flash
AUDIO_PROFILES = ("RTP/AVP", "RTP/AVPF")  # RFC 3551, RFC 4585; no SRTP
ATTR_RTPMAP = "rtpmap"
ATTR_FMTP = "fmtp"
ATTR_PTIME = "ptime"
ATTR_MAXPTIME = "maxptime"
ATTR_RTCP = "rtcp"  # RFC 3605
ATTR_RTCP_MUX = "rtcp-mux"  # RFC 5761
DYNAMIC_PAYLOAD_TYPES = range(96, 128)  # RFC 3551 section 6
_UNSPECIFIED = frozenset({"0.0.0.0", "::"})  # as normalised by ipaddress (see _ip)


class Codec(Enum):
    """The audio codecs we speak; the value is the static payload type (RFC 3551)."""

    PCMU = 0
    PCMA = 8

    @property
    def static_payload_type(self) -> int:
        return self.value

    @property
    def encoding_name(self) -> str:
        return self.name


class Direction(StrEnum):
    """Media direction attributes (RFC 3264 section 5.1), from the describing party's side."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def of(cls, *, sends: bool, receives: bool) -> Direction:
        if sends and receives:
            return cls.SENDRECV
        if sends:
            return cls.SENDONLY
        if receives:
            return cls.RECVONLY
        return cls.INACTIVE

    def reverse(self) -> Direction:
        """The same stream seen from the other party (sendonly <-> recvonly)."""
        return Direction.of(sends=self.receives, receives=self.sends)

    def restrict(self, other: Direction) -> Direction:
        """What both allow: a direction no wider than either."""
        return Direction.of(
            sends=self.sends and other.sends, receives=self.receives and other.receives
        )


@dataclass(frozen=True, slots=True)
class SdpPrefs:
    """What we offer and accept.

    ``codecs``: accepted codecs; in our offers, in this order. In answers the
    offer's order wins (RFC 3264 section 6.1: the offerer lists its preference).
    ``ptime``: used in our offers and when the offer's a=ptime is not 20 or 30.
    ``telephone_event_pt``: the payload type *we* number telephone-event with in
    our offers; in answers the offer's number is echoed. ``None`` disables RFC 4733.
    """

    codecs: tuple[Codec, ...] = (Codec.PCMU, Codec.PCMA)
    ptime: int = 20
    telephone_event_pt: int | None = 101
    rtcp_mux: bool = True
    session_name: str = "afterbeep"

    def __post_init__(self) -> None:
        if not self.codecs:
            raise ValueError("SdpPrefs.codecs must not be empty")
        if self.ptime not in SUPPORTED_PTIMES:
            raise ValueError(f"ptime must be one of {SUPPORTED_PTIMES}, not {self.ptime}")
        if (
            self.telephone_event_pt is not None
            and self.telephone_event_pt not in DYNAMIC_PAYLOAD_TYPES
        ):
            raise ValueError("telephone_event_pt must be a dynamic payload type (96-127)")


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The outcome of one offer/answer exchange: everything the RTP session needs.

    ``direction`` is ours (what we may do); ``remote_direction`` is the peer's,
    already narrowed by a ``c=0.0.0.0`` hold (such a peer receives nothing).
    ``payload_type``/``codec`` is what we send; ``receive_payload_types`` is every
    audio payload type the peer may send us; ``telephone_event_pt`` is the RFC 4733
    payload type we send with, ``receive_event_pts`` those we accept.
    """

    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    remote_rtcp_ip: str
    remote_rtcp_port: int | None
    rtcp_mux: bool
    codec: Codec
    payload_type: int
    ptime: int
    telephone_event_pt: int | None
    receive_payload_types: Mapping[int, Codec] = field(hash=False)
    receive_event_pts: frozenset[int]
    direction: Direction
    remote_direction: Direction
    sdp_session_id: int
    sdp_version: int
    local_sdp: bytes = field(repr=False)

    @property
    def samples_per_packet(self) -> int:
        return CLOCK_RATE * self.ptime // 1000

    @property
    def remote_address(self) -> tuple[str, int]:
        return (self.remote_ip, self.remote_port)

    @property
    def remote_rtcp_address(self) -> tuple[str, int] | None:
        if self.rtcp_mux:
            return self.remote_address if self.remote_reachable else None
        if self.remote_rtcp_port is None or not self.remote_reachable:
            return None
        return (self.remote_rtcp_ip, self.remote_rtcp_port)

    @property
    def remote_reachable(self) -> bool:
        """False for the RFC 2543 hold address 0.0.0.0 (or ::) and port 0."""
        return self.remote_port != 0 and self.remote_ip not in _UNSPECIFIED

    @property
    def sends(self) -> bool:
        """We send RTP: our direction allows it and the peer has an address to send to."""
        return self.direction.sends and self.remote_reachable

    @property
    def receives(self) -> bool:
        return self.direction.receives

    @property
    def expects_rtp(self) -> bool:
        """The peer is meant to be sending to us (the RTP inactivity timer applies)."""
        return self.direction.receives and self.remote_direction.sends

    @property
    def on_hold(self) -> bool:
        """Either party has put the stream on hold (anything but sendrecv)."""
        return self.direction is not Direction.SENDRECV


# --- parsing helpers ---------------------------------------------------------------------


def _parse(body: bytes, what: str) -> SdpMessage:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError(f"{what} SDP is not UTF-8") from exc
    if not text.lstrip().startswith("v="):
        raise SdpError(f"{what} SDP does not start with v=")
    try:
        return parse_sdp(text)
    except (ValueError, IndexError) as exc:
        raise SdpError(f"malformed {what} SDP: {exc}") from exc


def _ip(address: str, what: str) -> str:
    host = address.split("/", 1)[0]  # multicast c= may carry /ttl
    try:
        return str(ipaddress.ip_address(host))
    except ValueError as exc:
        raise SdpError(f"{what} connection address is not an IP literal") from exc


def _connection_ip(msg: SdpMessage, media: MediaDescription, what: str) -> str:
    conn = media.connection or msg.connection
    if conn is None:
        raise SdpError(f"{what} SDP has no c= line for its audio stream")
    if conn.net_type != "IN" or conn.addr_type not in ("IP4", "IP6"):
        raise SdpError(f"{what} SDP has an unsupported c= address type")
    return _ip(conn.address, what)


def _direction(msg: SdpMessage, media: MediaDescription) -> Direction:
    for attrs in (media.attributes, msg.attributes):  # media level overrides session level
        for d in Direction:
            if d.value in attrs:
                return d
    return Direction.SENDRECV


def _int_attr(msg: SdpMessage, media: MediaDescription, name: str) -> int | None:
    values = media.attributes.get(name) or msg.attributes.get(name) or []
    for value in values:
        try:
            return int(float(value.strip()))
        except ValueError:
            continue
    return None


def _choose_ptime(msg: SdpMessage, media: MediaDescription, default: int) -> int:
    ptime = _int_attr(msg, media, ATTR_PTIME)
    chosen = ptime if ptime in SUPPORTED_PTIMES else default
    maxptime = _int_attr(msg, media, ATTR_MAXPTIME)
    if maxptime is not None and chosen > maxptime:
        fitting = [p for p in SUPPORTED_PTIMES if p <= maxptime]
        if fitting:
            chosen = max(fitting)
    return chosen


def _codec_of(name: str, clock_rate: int, channels: int | None) -> Codec | None:
    if clock_rate != CLOCK_RATE or channels not in (None, 1):
        return None
    try:
        return Codec[name.upper()]
    except KeyError:
        return None


def _audio_codecs(media: MediaDescription) -> list[tuple[int, Codec]]:
    """(payload type, codec) for each supported codec, in the m= line's order."""
    found: list[tuple[int, Codec]] = []
    for c in media.codecs:
        codec = _codec_of(c.encoding_name, c.clock_rate, c.channels)
        if codec is not None:
            found.append((c.payload_type, codec))
    return found


def _telephone_event(media: MediaDescription) -> tuple[int, str] | None:
    """(payload type, events) of the first telephone-event/8000 format."""
    for c in media.codecs:
        if c.encoding_name.lower() == TELEPHONE_EVENT and c.clock_rate == CLOCK_RATE:
            return c.payload_type, (c.fmtp or DEFAULT_EVENTS).strip()
    return None


def _rtcp(media: MediaDescription, ip: str, port: int) -> tuple[bool, str, int | None]:
    """(rtcp-mux, RTCP address, RTCP port) of a media description."""
    mux = ATTR_RTCP_MUX in media.attributes
    for value in media.attributes.get(ATTR_RTCP, []):
        parts = value.split()
        try:
            rtcp_port = int(parts[0])
        except (ValueError, IndexError) as exc:
            raise SdpError("malformed a=rtcp attribute") from exc
        rtcp_ip = _ip(parts[3], "a=rtcp") if len(parts) >= 4 else ip
        return mux, rtcp_ip, rtcp_port
    return mux, ip, (port + 1 if port else None)


def check_local_address(local_ip: str, local_port: int) -> str:
    """The advertised address, normalised; ValueError for 0.0.0.0, ::, a name or a bad port."""
    try:
        addr = ipaddress.ip_address(local_ip)
    except ValueError as exc:
        raise ValueError(f"advertised media address must be an IP literal: {local_ip!r}") from exc
    if addr.is_unspecified:
        raise ValueError("advertised media address must not be 0.0.0.0 or ::")
    if not 0 < local_port < 65536:
        raise ValueError(f"invalid local RTP port {local_port}")
    return str(addr)


def _session_id(msg: SdpMessage) -> tuple[int, int]:
    try:
        return int(msg.origin.session_id), int(msg.origin.session_version)
    except ValueError as exc:
        raise SdpError("o= session id and version must be numbers") from exc


# --- building ----------------------------------------------------------------------------


def _envelope(
    local_ip: str, session_id: int, version: int, name: str, media: list[MediaDescription]
) -> SdpMessage:
    addr_type = "IP6" if ":" in local_ip else "IP4"
    return SdpMessage(
        version=0,
        origin=Origin("-", str(session_id), str(version), "IN", addr_type, local_ip),
        session_name=name,
        connection=ConnectionData("IN", addr_type, local_ip),
        timing=TimingField(0, 0),
        media=media,
    )


def _audio_media(
    port: int,
    proto: str,
    codecs: list[tuple[int, Codec]],
    event: tuple[int, str] | None,
    ptime: int,
    rtcp_mux: bool,
    direction: Direction,
) -> MediaDescription:
    formats = [str(pt) for pt, _ in codecs]
    attrs: dict[str, list[str]] = {
        ATTR_RTPMAP: [f"{pt} {codec.encoding_name}/{CLOCK_RATE}" for pt, codec in codecs]
    }
    if event is not None:
        formats.append(str(event[0]))
        attrs[ATTR_RTPMAP].append(f"{event[0]} {TELEPHONE_EVENT}/{CLOCK_RATE}")
        attrs[ATTR_FMTP] = [f"{event[0]} {event[1]}"]
    attrs[ATTR_PTIME] = [str(ptime)]
    if rtcp_mux:
        attrs[ATTR_RTCP_MUX] = []
    attrs[direction.value] = []
    return MediaDescription(
        media="audio", port=port, proto=proto, formats=formats, attributes=attrs
    )


def _versioned(
    render: Callable[[int, int], bytes], previous: Negotiated | None
) -> tuple[bytes, int, int]:
    """Render with the previous o= session id and version; bump the version if the body changed."""
    if previous is None:
        session_id = secrets.randbelow(1 << 62) + 1
        return render(session_id, 1), session_id, 1
    same = render(previous.sdp_session_id, previous.sdp_version)
    if same == previous.local_sdp:
        return same, previous.sdp_session_id, previous.sdp_version
    version = previous.sdp_version + 1
    return render(previous.sdp_session_id, version), previous.sdp_session_id, version


def _rejected(media: MediaDescription) -> MediaDescription:
    """An offered m= line we decline: mirrored with port 0 (RFC 3264 section 6)."""
    return MediaDescription(
        media=media.media, port=0, proto=media.proto, formats=list(media.formats) or ["0"]
    )


def _held(ip: str, direction: Direction) -> Direction:
    """RFC 2543 hold: a peer whose address is 0.0.0.0 receives nothing (RFC 3264 section 8.4)."""
    if ip in _UNSPECIFIED:
        return direction.restrict(Direction.SENDONLY)
    return direction


def _offered_summary(msg: SdpMessage) -> str:
    names = [
        f"{m.media}/{m.port}/" + ",".join(c.encoding_name or str(c.payload_type) for c in m.codecs)
        for m in msg.media
    ]
    return "; ".join(names) or "no m= lines"


# --- offer/answer ------------------------------------------------------------------------


def answer(
    offer: bytes,
    local_ip: str,
    local_port: int,
    prefs: SdpPrefs = SdpPrefs(),
    *,
    direction: Direction = Direction.SENDRECV,
    previous: Negotiated | None = None,
) -> tuple[bytes, Negotiated]:
    """Answer a remote offer (initial INVITE or re-INVITE) for our RTP port.

    ``local_ip`` is the advertised address (never 0.0.0.0). ``direction`` is what we
    are willing to do (``SENDONLY`` to put the peer on hold in our answer);
    ``previous`` is the current negotiation when this is a re-INVITE.

    Raises NoCommonMediaError (answer 488) when no active RTP/AVP audio stream has a
    codec in ``prefs.codecs``, SdpError when the offer cannot be used at all.
    """
    local_ip = check_local_address(local_ip, local_port)
    msg = _parse(offer, "offer")
    chosen: tuple[int, MediaDescription, int, Codec] | None = None
    for index, media in enumerate(msg.media):
        if media.media != "audio" or media.port == 0 or media.proto not in AUDIO_PROFILES:
            continue
        common = [(pt, c) for pt, c in _audio_codecs(media) if c in prefs.codecs]
        if common:
            chosen = (index, media, *common[0])
            break
    if chosen is None:
        raise NoCommonMediaError(f"no acceptable audio stream in offer ({_offered_summary(msg)})")
    index, media, pt, codec = chosen

    remote_ip = _connection_ip(msg, media, "offer")
    remote_direction = _held(remote_ip, _direction(msg, media))
    ours = direction.restrict(remote_direction.reverse())
    ptime = _choose_ptime(msg, media, prefs.ptime)
    event = _telephone_event(media) if prefs.telephone_event_pt is not None else None
    mux_offered, rtcp_ip, rtcp_port = _rtcp(media, remote_ip, media.port)
    mux = mux_offered and prefs.rtcp_mux
    ours_media = _audio_media(local_port, media.proto, [(pt, codec)], event, ptime, mux, ours)

    def render(session_id: int, version: int) -> bytes:
        lines = [ours_media if i == index else _rejected(m) for i, m in enumerate(msg.media)]
        sdp = _envelope(local_ip, session_id, version, prefs.session_name, lines)
        return serialize_sdp(sdp).encode()

    body, session_id, version = _versioned(render, previous)
    negotiated = Negotiated(
        local_ip=local_ip,
        local_port=local_port,
        remote_ip=remote_ip,
        remote_port=media.port,
        remote_rtcp_ip=rtcp_ip,
        remote_rtcp_port=rtcp_port,
        rtcp_mux=mux,
        codec=codec,
        payload_type=pt,
        ptime=ptime,
        telephone_event_pt=event[0] if event else None,
        receive_payload_types={pt: codec},
        receive_event_pts=frozenset([event[0]]) if event else frozenset(),
        direction=ours,
        remote_direction=remote_direction,
        sdp_session_id=session_id,
        sdp_version=version,
        local_sdp=body,
    )
    return body, negotiated


def offer(
    local_ip: str,
    local_port: int,
    prefs: SdpPrefs = SdpPrefs(),
    *,
    direction: Direction = Direction.SENDRECV,
    previous: Negotiated | None = None,
) -> bytes:
    """Our offer: an outbound INVITE, or a re-INVITE (``direction=SENDONLY`` puts the peer on
    hold, ``SENDRECV`` resumes; pass ``previous`` so the o= line stays the same session)."""
    local_ip = check_local_address(local_ip, local_port)
    codecs = [(c.static_payload_type, c) for c in prefs.codecs]
    pt = prefs.telephone_event_pt
    event = (pt, OFFERED_EVENTS) if pt is not None else None
    media = _audio_media(
        local_port, "RTP/AVP", codecs, event, prefs.ptime, prefs.rtcp_mux, direction
    )

    def render(session_id: int, version: int) -> bytes:
        sdp = _envelope(local_ip, session_id, version, prefs.session_name, [media])
        return serialize_sdp(sdp).encode()

    body, _, _ = _versioned(render, previous)
    return body


def parse_answer(answer: bytes, offer: bytes) -> Negotiated:
    """The negotiation an answer to *our* offer (as sent, bytes) concludes.

    Raises NoCommonMediaError when the answer rejects the audio stream or picks a codec
    we did not offer (the caller ends the call: CANCEL/BYE), SdpError when malformed.
    """
    ours = _parse(offer, "our offer")
    theirs = _parse(answer, "answer")
    index = next((i for i, m in enumerate(ours.media) if m.media == "audio" and m.port != 0), None)
    if index is None:
        raise SdpError("our offer has no active audio stream")
    if index >= len(theirs.media):
        raise SdpError("answer has fewer m= lines than the offer")
    our_media, media = ours.media[index], theirs.media[index]
    if media.media != "audio" or media.port == 0:
        raise NoCommonMediaError("answer rejected the audio stream")
    offered = {codec for _, codec in _audio_codecs(our_media)}
    accepted = [(pt, c) for pt, c in _audio_codecs(media) if c in offered]
    if not accepted:
        raise NoCommonMediaError(f"answer has no codec we offered ({_offered_summary(theirs)})")
    pt, codec = accepted[0]

    our_event = _telephone_event(our_media)
    their_event = _telephone_event(media) if our_event is not None else None
    receive_events = (
        frozenset({our_event[0], their_event[0]})
        if our_event is not None and their_event is not None
        else frozenset()
    )
    our_ptime = _int_attr(ours, our_media, ATTR_PTIME)
    default_ptime = our_ptime if our_ptime in SUPPORTED_PTIMES else SUPPORTED_PTIMES[0]
    remote_ip = _connection_ip(theirs, media, "answer")
    remote_direction = _held(remote_ip, _direction(theirs, media))
    mux_answered, rtcp_ip, rtcp_port = _rtcp(media, remote_ip, media.port)
    session_id, version = _session_id(ours)
    return Negotiated(
        local_ip=_connection_ip(ours, our_media, "our offer"),
        local_port=our_media.port,
        remote_ip=remote_ip,
        remote_port=media.port,
        remote_rtcp_ip=rtcp_ip,
        remote_rtcp_port=rtcp_port,
        rtcp_mux=mux_answered and ATTR_RTCP_MUX in our_media.attributes,
        codec=codec,
        payload_type=pt,
        ptime=_choose_ptime(theirs, media, default_ptime),
        telephone_event_pt=their_event[0] if their_event else None,
        receive_payload_types=dict(accepted),
        receive_event_pts=receive_events,
        direction=_direction(ours, our_media).restrict(remote_direction.reverse()),
        remote_direction=remote_direction,
        sdp_session_id=session_id,
        sdp_version=version,
        local_sdp=offer,
    )
