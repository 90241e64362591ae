"""RTP sessions on asyncio: the thin I/O shell around the pure receive and send cores.

One :class:`MediaEngine` per process owns the configuration, the RTP port range and
the shared :class:`Pacer`; it opens one :class:`MediaSession` per call. A session is
bound (RTP on an even port, RTCP on the next) *before* the SDP answer is built, so
the 200 OK never advertises a port that is not listening yet:

    session = await engine.open_session(on_audio=..., on_dtmf=..., on_inactivity=...)
    answer_sdp = session.answer(offer_sdp)          # NoCommonMediaError -> 488
    ... send 200 OK with answer_sdp ...
    result = await session.play(pcm, interrupt=event)
    await session.close()                           # flushes the recording tail

Owned resources: two datagram transports and at most three timer handles (RTCP
report, RTP inactivity, recorder expiry: a reorder gap or a partial audio block), all
released by :meth:`MediaSession.close`; no task per session (playout runs on the
engine's pacer).

With ``MediaConfig.native_receive`` (and the extension built) the RTP socket is not a loop
transport: the engine's `native.NativeReceiver` thread reads it, takes the plain next audio
packets of a recording while the session has it armed, and hands every other datagram back to
`_rtp_in` in order (see `native.py`).

Written here instead of using aiortp's ``RTPSession`` (0.8.0): it decodes every
payload type as audio (telephone-event on PT 96 ends up in the recording), accepts
RTP from any source, loses the tail of every recording and runs a sender task per
call even when idle. Its packet classes are used where sound (RTCP, RFC 4733 payload).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import random
import secrets
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from aiortp.packet import RtcpSenderInfo

from afterbeep.domain.netpolicy import NetworkPolicy, literal_address
from afterbeep.telephony.media import native, sdp
from afterbeep.telephony.media.errors import (
    MediaAddressNotAllowed,
    MediaSessionStateError,
    PortsExhaustedError,
    SdpError,
)
from afterbeep.telephony.media.latch import SourceFilter
from afterbeep.telephony.media.pacer import NativeEnd, NativeJob, NativePacer, PacedJob, Pacer
from afterbeep.telephony.media.ports import PortAllocator
from afterbeep.telephony.media.recorder import AudioSink, DigitSink, Recorder
from afterbeep.telephony.media.rtcp import (
    RTCP_INTERVAL,
    ReceptionStats,
    build_compound,
    ntp_timestamp,
    parse_sender_reports,
)
from afterbeep.telephony.media.rtp import (
    RTCP_MUX_PT_RANGE,
    RTP_HEADER_SIZE,
    RTP_VERSION,
    MalformedPacketError,
    parse_rtp,
)
from afterbeep.telephony.media.sdp import CLOCK_RATE, Codec, Direction, Negotiated, SdpPrefs
from afterbeep.telephony.media.sender import (
    FOLLOW_WINDOW,
    SILENCE_OCTET,
    Anchored,
    AudioJob,
    DtmfJob,
    PlayResult,
    Prompt,
    PromptCache,
    RtpSendStream,
    anchor,
)

if TYPE_CHECKING:
    from afterbeep.telephony.media._recv import State as NativeState

__all__ = [
    "InactivityHandler",
    "MediaConfig",
    "MediaEngine",
    "MediaSession",
    "MediaStats",
    "PromptLateness",
    "SessionState",
]

log = logging.getLogger(__name__)

InactivityHandler = Callable[[], None]
PromptLateness = Callable[[float], None]  # seconds a prompt's first frame left after it was due
RtpTap = Callable[[bytes], None]  # a relay's hook on the receive path: raw RTP, accepted source
_INACTIVITY_SLACK = 0.001
_BLOCK_SAMPLES = 1600  # the native receiver's blocks: Recorder's defaults
_FLUSH_AFTER = 0.4
_PLAIN_RTP = RTP_VERSION << 6  # first octet: no padding, extension or CSRCs
_AFTER_FIRST_OCTET = struct.Struct("!BHII")  # marker and payload type, sequence, timestamp, SSRC


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """Media settings of a process.

    ``advertised_ip`` goes into our SDP ``c=``/``o=`` lines (never 0.0.0.0);
    ``bind_host`` is where the RTP sockets listen. ``inactivity_timeout`` (s, 0 = off)
    reports a call whose peer stopped sending RTP while it should be sending.
    ``allow_nat_latching`` accepts the first RTP from any address (peer behind NAT).
    ``prebound`` port pairs are bound before they are needed (see `MediaEngine.session_now`).
    """

    advertised_ip: str
    bind_host: str = "0.0.0.0"
    port_min: int = 20000
    port_max: int = 30000
    inactivity_timeout: float = 30.0
    allow_nat_latching: bool = False
    rtcp_interval: float = RTCP_INTERVAL
    reorder_window: int = 5
    reorder_max_wait: float = 0.1
    pacer_granularity: float = 0.01
    sdp: SdpPrefs = field(default_factory=SdpPrefs)
    prebound: int = 0  # RTP/RTCP pairs kept bound ahead of time, so answering never waits
    # RTP read by the native receive thread (`native.py`) when the extension is built;
    # False: every packet on the event loop (AFTERBEEP_MEDIA_RECEIVE=python)
    native_receive: bool = True
    # "native": prompts paced by the C thread of `_pace` when it is built; "python": `Pacer`
    pacer: str = "native"


@dataclass(frozen=True, slots=True)
class MediaStats:
    packets_received: int
    bytes_received: int
    packets_sent: int
    bytes_sent: int
    lost: int
    late: int
    duplicates: int
    dropped_payload_type: int
    dropped_source: int
    malformed: int
    dtmf_digits: int
    rtcp_sent: int
    rtcp_received: int
    samples_recorded: int
    jitter_ms: float
    frames_withheld: int
    schedule_slips: int


class SessionState(enum.Enum):
    OPEN = "open"  # bound, not negotiated yet
    STARTED = "started"
    CLOSED = "closed"


class _Endpoint(asyncio.DatagramProtocol):
    """Feeds datagrams of one socket to its session; knows nothing else."""

    def __init__(self, rtcp: bool) -> None:
        self._rtcp = rtcp
        self.session: MediaSession | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.DatagramTransport) -> None:  # type: ignore[override]
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        session = self.session
        if session is None:
            return
        if self._rtcp:
            session._rtcp_in(data, addr)
        else:
            session._rtp_in(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like, for a previous sendto: the peer may be gone;
        # the inactivity timer decides, not a single ICMP message.
        if self.session is not None:
            self.session._socket_errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _SocketTransport(asyncio.DatagramTransport):
    """The RTP socket of a session whose packets the native receiver reads: the loop never
    reads it (uvloop's UDP transport cannot stop reading), this sends and closes it."""

    def __init__(self, sock: socket.socket, endpoint: _Endpoint) -> None:
        super().__init__({"socket": sock, "sockname": sock.getsockname()})
        self.sock = sock
        self._endpoint = endpoint
        self._closing = False
        endpoint.connection_made(self)

    def sendto(self, data: Any, addr: Any = None) -> None:
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            pass  # a full send buffer drops a datagram, as a full network would
        except OSError as exc:
            self._endpoint.error_received(exc)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self.sock.close()
            self._endpoint.connection_lost(None)

    def abort(self) -> None:
        self.close()


@dataclass(slots=True)
class _BoundPair:
    """An RTP socket on an even port and RTCP on the next, with their transports."""

    port: int
    rtp: tuple[asyncio.DatagramTransport, _Endpoint]
    rtcp: tuple[asyncio.DatagramTransport, _Endpoint]

    async def close(self) -> None:
        self.rtp[0].close()
        self.rtcp[0].close()
        await asyncio.gather(self.rtp[1].closed, self.rtcp[1].closed)


class MediaEngine:
    """Process-wide media: configuration, RTP ports, the shared pacer, open sessions.

    With ``config.prebound`` > 0 the engine keeps that many port pairs bound in a pool (filled
    by `prebind()`, topped up by a task the engine owns after each one is taken), so that
    `session_now()` opens a session without waiting: an INVITE can be answered in the callback
    that received it. A session's pair is closed with the session (never put back: stray
    packets of the old call would reach the next one), and the pool is closed by `close()`.
    """

    def __init__(self, config: MediaConfig) -> None:
        sdp.check_local_address(config.advertised_ip, config.port_min)
        self.config = config
        self.ports = PortAllocator(config.port_min, config.port_max)
        self.pacer = Pacer(config.pacer_granularity, self._first_frame)
        self.on_prompt_late: PromptLateness | None = None
        self.prompts = PromptCache()
        self.native_pacer = (
            NativePacer() if config.pacer == "native" and NativePacer.available() else None
        )
        if config.pacer == "native" and self.native_pacer is None:
            log.warning("the native pacer (_pace) is not built: prompts are paced in Python")
        self._sessions: set[MediaSession] = set()
        self._pool: deque[_BoundPair] = deque()
        self._refill: asyncio.Task[None] | None = None
        self.prebound_misses = 0  # sessions asked for while the pool was empty
        self._closed = False
        self._native_wanted = config.native_receive and native.available()
        if config.native_receive and not native.available():
            log.warning("the native RTP receiver is not built: RTP is read on the event loop")
        self.native: native.NativeReceiver | None = None  # started with the first socket

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    def _first_frame(self, job: PacedJob, now: float) -> None:
        observe = self.on_prompt_late
        if observe is not None and isinstance(job, AudioJob) and job.is_prompt:
            observe(max(0.0, now - job.intended))

    @property
    def pooled(self) -> int:
        """Port pairs bound and waiting for a session."""
        return len(self._pool)

    async def prebind(self) -> None:
        """Fill the pool of pre-bound pairs now (up to ``config.prebound``, fewer if the port
        range has no more)."""
        if self._refill is not None and not self._refill.done():
            await asyncio.shield(self._refill)
        await self._fill()

    def session_now(
        self,
        *,
        on_audio: AudioSink | None = None,
        on_dtmf: DigitSink | None = None,
        on_inactivity: InactivityHandler | None = None,
    ) -> MediaSession | None:
        """A session on a pre-bound pair, without waiting; None when the pool is empty."""
        if self._closed:
            raise MediaSessionStateError("media engine is closed")
        pair = self._pool.popleft() if self._pool else None
        self._top_up()
        if pair is None:
            if self.config.prebound:
                self.prebound_misses += 1
            return None
        return self._session(pair, on_audio, on_dtmf, on_inactivity)

    async def open_session(
        self,
        *,
        on_audio: AudioSink | None = None,
        on_dtmf: DigitSink | None = None,
        on_inactivity: InactivityHandler | None = None,
    ) -> MediaSession:
        """A pre-bound pair if there is one, else bind one; raises PortsExhaustedError (answer
        503) when none is free."""
        session = self.session_now(on_audio=on_audio, on_dtmf=on_dtmf, on_inactivity=on_inactivity)
        if session is not None:
            return session
        pair = await self._bind_pair()
        if pair is None:
            raise PortsExhaustedError(
                f"no free RTP port pair in {self.config.port_min}-{self.config.port_max}"
            )
        if self._closed:
            await self._discard(pair)
            raise MediaSessionStateError("media engine is closed")
        return self._session(pair, on_audio, on_dtmf, on_inactivity)

    def _session(
        self,
        pair: _BoundPair,
        on_audio: AudioSink | None,
        on_dtmf: DigitSink | None,
        on_inactivity: InactivityHandler | None,
    ) -> MediaSession:
        session = MediaSession(self, pair.port, pair.rtp, pair.rtcp)
        session.on_audio = on_audio
        session.on_dtmf = on_dtmf
        session.on_inactivity = on_inactivity
        self._sessions.add(session)
        return session

    async def _bind_pair(self) -> _BoundPair | None:
        """Bind the next free pair (both sockets synchronously, so no concurrent binder can take
        the port meanwhile); None when the range has none."""
        loop = asyncio.get_running_loop()
        host = self.config.bind_host
        for port in self.ports.candidates():
            try:
                rtp_sock = _bound_udp_socket(host, port)
            except OSError:
                continue
            try:
                rtcp_sock = _bound_udp_socket(host, port + 1)
            except OSError:
                rtp_sock.close()
                continue
            self.ports.reserve(port)
            rtp: tuple[asyncio.DatagramTransport, _Endpoint] | None = None
            try:
                if self._native_wanted:
                    endpoint = _Endpoint(rtcp=False)
                    rtp = (_SocketTransport(rtp_sock, endpoint), endpoint)
                else:
                    rtp = await loop.create_datagram_endpoint(
                        lambda: _Endpoint(rtcp=False), sock=rtp_sock
                    )
                rtcp = await loop.create_datagram_endpoint(
                    lambda: _Endpoint(rtcp=True), sock=rtcp_sock
                )
            except BaseException as exc:
                if rtp is not None:
                    rtp[0].close()
                rtp_sock.close()
                rtcp_sock.close()
                self.ports.release(port)
                if isinstance(exc, OSError):
                    continue
                raise
            return _BoundPair(port, rtp, rtcp)
        return None

    def _top_up(self) -> None:
        if self._closed or len(self._pool) >= self.config.prebound:
            return
        if self._refill is None or self._refill.done():
            self._refill = asyncio.get_running_loop().create_task(
                self._fill(), name="media-prebind"
            )
            self._refill.add_done_callback(_log_refill_failure)

    async def _fill(self) -> None:
        while not self._closed and len(self._pool) < self.config.prebound:
            missing = self.config.prebound - len(self._pool)
            pairs = await asyncio.gather(*(self._bind_pair() for _ in range(missing)))
            bound = [pair for pair in pairs if pair is not None]
            for pair in bound:
                if self._closed or len(self._pool) >= self.config.prebound:
                    await self._discard(pair)  # closed meanwhile, or filled by a second filler
                else:
                    self._pool.append(pair)
            if len(bound) < missing:
                return  # the range is full: the next session taken tries again

    async def _discard(self, pair: _BoundPair) -> None:
        await pair.close()
        self.ports.release(pair.port)

    async def close(self) -> None:
        """Close every session (each flushes its recording) and the pool, then stop the pacer."""
        self._closed = True
        if self._refill is not None:  # not cancelled: it discards what it binds from now on
            await asyncio.gather(self._refill, return_exceptions=True)
        while self._pool:
            await self._discard(self._pool.popleft())
        for session in list(self._sessions):
            await session.close()
        if self.native is not None:
            self.native.close()
            self.native = None
        await self.pacer.close()
        if self.native_pacer is not None:
            self.native_pacer.close()

    def _native_for(self, transport: asyncio.DatagramTransport) -> native.NativeReceiver | None:
        if not isinstance(transport, _SocketTransport):
            return None
        if self.native is None:
            self.native = native.NativeReceiver(
                asyncio.get_running_loop(), _BLOCK_SAMPLES, _FLUSH_AFTER
            )
        return self.native

    def _forget(self, session: MediaSession) -> None:
        self._sessions.discard(session)
        self.ports.release(session.local_port)


def _log_refill_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("binding RTP port pairs ahead failed", exc_info=task.exception())


def _joined(first: PlayResult, second: PlayResult) -> PlayResult:
    return PlayResult(
        first.frames + second.frames,
        first.samples + second.samples,
        second.interrupted,
        first.skipped + second.skipped,
    )


class _SendFilter(SourceFilter):
    """A SourceFilter that says when the address media goes to changes (latching, re-INVITE)."""

    moved: Callable[[tuple[str, int] | None], None] | None = None
    _send_to: tuple[str, int] | None = None

    @property
    def send_to(self) -> tuple[str, int] | None:
        return self._send_to

    @send_to.setter
    def send_to(self, destination: tuple[str, int] | None) -> None:
        changed = destination != self._send_to
        self._send_to = destination
        if changed and self.moved is not None:
            self.moved(destination)


def _settle(future: asyncio.Future[PlayResult], outcome: PlayResult | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class MediaSession:
    """One call's RTP/RTCP. Create with :meth:`MediaEngine.open_session`.

    Callbacks (plain attributes, may be changed at any time, run on the event loop):
    ``on_audio(pcm: NDArray[int16], offset: int)`` gets the recording, 8 kHz,
    gaps already filled with zeros, ``offset`` = samples since the first audio packet;
    ``on_dtmf(digit: str)`` once per RFC 4733 event; ``on_inactivity()`` once when no
    RTP arrived for ``inactivity_timeout`` seconds while the peer should be sending.
    An inbound call's peer is not confirmed at first: see `expect_confirmation`.
    ``destination_policy`` (set on an outbound call's session) bounds where RTP and RTCP may
    go: a negotiation naming another address raises MediaAddressNotAllowed and is not applied.
    """

    def __init__(
        self,
        engine: MediaEngine,
        port: int,
        rtp: tuple[asyncio.DatagramTransport, _Endpoint],
        rtcp: tuple[asyncio.DatagramTransport, _Endpoint],
    ) -> None:
        self._engine = engine
        self._config = engine.config
        self._loop = asyncio.get_running_loop()
        self.local_port = port
        self.local_ip = self._config.advertised_ip
        self._rtp_transport, self._rtp_endpoint = rtp
        self._rtcp_transport, self._rtcp_endpoint = rtcp
        self.state = SessionState.OPEN
        self._receiving = False  # state is STARTED (a bool: enum access is slow per packet)
        self.negotiated: Negotiated | None = None
        self.destination_policy: NetworkPolicy | None = None
        self.on_inactivity: InactivityHandler | None = None
        # Set (by a relay), every RTP packet from the accepted source goes here as it arrives,
        # unparsed, instead of to the recorder: no reordering, decoding or DTMF detection.
        self._on_rtp: RtpTap | None = None
        self.confirmed = True  # see expect_confirmation()
        self._on_confirmed: Callable[[], None] | None = None
        self._recorder = Recorder(
            window=self._config.reorder_window, max_wait=self._config.reorder_max_wait
        )
        self._reception = ReceptionStats()
        self._filter = _SendFilter(None, self._config.allow_nat_latching)
        self._filter.moved = self._retarget_native
        self._stream = RtpSendStream(
            secrets.randbits(32), secrets.randbits(16), secrets.randbits(32)
        )
        self._cname = f"{secrets.token_hex(8)}@afterbeep".encode()
        self._send_lock = asyncio.Lock()
        self._jobs: set[AudioJob | DtmfJob] = set()
        self._paced: list[NativeJob] = []  # prompts on the native pacer, not ended yet
        self._paced_codec = (Codec.PCMU, 20)  # what they were started with
        sock = self._rtp_transport.get_extra_info("socket")
        self._rtp_fd: int = sock.fileno() if sock is not None else -1
        self._pending_offer: bytes | None = None
        self._last_rtp = 0.0
        self._inactivity_reported = False
        self._inactivity_timer: asyncio.TimerHandle | None = None
        self._rtcp_timer: asyncio.TimerHandle | None = None
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._rtcp_source: tuple[str, int] | None = None
        self._reported_packets = 0
        self._audio_pts: frozenset[int] = frozenset()
        self.codec = Codec.PCMU
        self.payload_type = 0
        self.event_payload_type: int | None = None
        self.ptime = 20
        self.sending = False
        self._packets_received = 0
        self._bytes_received = 0
        self._bytes_sent = 0
        self._dropped_source = 0
        self._malformed = 0
        self._rtcp_sent = 0
        self._rtcp_received = 0
        self._socket_errors = 0
        self._rtp_endpoint.session = self
        self._rtcp_endpoint.session = self
        self._native = engine._native_for(self._rtp_transport)
        self._native_sid = 0
        self._native_armed = False
        if self._native is not None:
            assert isinstance(self._rtp_transport, _SocketTransport)
            self._native_sid = self._native.add(self._rtp_transport.sock, self)

    # --- callbacks ------------------------------------------------------------------------

    @property
    def on_audio(self) -> AudioSink | None:
        return self._recorder.on_audio

    @on_audio.setter
    def on_audio(self, sink: AudioSink | None) -> None:
        self._native_release()
        self._recorder.on_audio = sink

    @property
    def block_arrival(self) -> float:
        """While ``on_audio`` runs: when its block's first sample arrived (`Recorder`)."""
        return self._recorder.block_arrival

    @property
    def event_arrival(self) -> float:
        """While ``on_dtmf`` runs: when its telephone-event packet arrived (`Recorder`)."""
        return self._recorder.event_arrival

    @property
    def on_rtp(self) -> RtpTap | None:
        return self._on_rtp

    @on_rtp.setter
    def on_rtp(self, tap: RtpTap | None) -> None:
        self._native_release()
        self._on_rtp = tap

    @property
    def on_dtmf(self) -> DigitSink | None:
        return self._recorder.on_dtmf

    @on_dtmf.setter
    def on_dtmf(self, sink: DigitSink | None) -> None:
        self._recorder.on_dtmf = sink

    @property
    def send_stream(self) -> RtpSendStream:
        """The numbering (SSRC, sequence, timestamp) of what this session sends: a relay that
        sends on the session continues it."""
        return self._stream

    # --- negotiation ----------------------------------------------------------------------

    def answer(self, offer: bytes, *, direction: Direction = Direction.SENDRECV) -> bytes:
        """Answer an offer (INVITE or re-INVITE) and start or update the session with it.

        Raises NoCommonMediaError / SdpError (answer 488) and leaves the session as it was.
        """
        body, negotiated = sdp.answer(
            offer,
            self.local_ip,
            self.local_port,
            self._config.sdp,
            direction=direction,
            previous=self.negotiated,
        )
        self._apply(negotiated)
        return body

    def handle_reinvite(self, offer: bytes) -> bytes | None:
        """For the SIP layer's ``Dialog.on_reinvite``: the answer to put in the 200, or None
        (answer 488) when the offer is unusable; the session keeps its current media then.

        An offerless re-INVITE gets our offer; its answer comes in the ACK and goes to
        :meth:`accept_answer`.
        """
        if not offer.strip():
            return self.offer()
        try:
            return self.answer(offer)
        except SdpError as exc:
            log.info("re-INVITE offer refused: %s", exc)
            return None

    def offer(self, *, direction: Direction = Direction.SENDRECV) -> bytes:
        """Our offer (outbound INVITE, late-offer 200, or a hold/resume re-INVITE)."""
        self._require_open()
        body = sdp.offer(
            self.local_ip,
            self.local_port,
            self._config.sdp,
            direction=direction,
            previous=self.negotiated,
        )
        self._pending_offer = body
        return body

    def accept_answer(self, answer: bytes, offer: bytes | None = None) -> Negotiated:
        """Apply the answer to our last :meth:`offer` (from a 18x/200, or the ACK of a late offer)."""
        ours = offer if offer is not None else self._pending_offer
        if ours is None:
            raise MediaSessionStateError("no offer of ours is pending")
        negotiated = sdp.parse_answer(answer, ours)
        self._apply(negotiated)
        return negotiated

    def _apply(self, negotiated: Negotiated) -> None:
        if self.destination_policy is not None:
            self._check_destination(negotiated, self.destination_policy)
        if self.state is SessionState.OPEN:
            self.start(negotiated)
        else:
            self.update(negotiated)

    def start(self, negotiated: Negotiated) -> None:
        """Begin receiving and reporting with the first negotiation."""
        if self.state is not SessionState.OPEN:
            raise MediaSessionStateError(f"cannot start a session that is {self.state.value}")
        self._check_port(negotiated)
        self.state = SessionState.STARTED
        self._receiving = True
        self._last_rtp = self._loop.time()
        self._set_negotiated(negotiated)
        self._schedule_rtcp()

    def update(self, negotiated: Negotiated) -> None:
        """A new negotiation inside the dialog (hold, resume, new address or codec)."""
        self._require_started()
        self._check_port(negotiated)
        previous = self.negotiated
        if previous is not None and not previous.expects_rtp and negotiated.expects_rtp:
            self._last_rtp = self._loop.time()  # resumed: the peer gets a full timeout again
        self._set_negotiated(negotiated)

    @staticmethod
    def _check_destination(negotiated: Negotiated, policy: NetworkPolicy) -> None:
        """Once per negotiation, never per packet: every address we would send to (RTP,
        RTCP) must be permitted. A hold address (c=0.0.0.0, port 0) sends nothing."""
        if not negotiated.remote_reachable:
            return
        rtcp = negotiated.remote_rtcp_address
        for host in (negotiated.remote_ip, rtcp[0] if rtcp is not None else None):
            if host is None:
                continue
            ip = literal_address(host)
            if ip is None or not policy.permits(ip):
                raise MediaAddressNotAllowed()

    def _check_port(self, negotiated: Negotiated) -> None:
        if negotiated.local_port != self.local_port:
            raise ValueError("negotiation is for another RTP port")

    def _set_negotiated(self, negotiated: Negotiated) -> None:
        self._native_release()
        self.negotiated = negotiated
        if negotiated.remote_reachable:  # a c=0.0.0.0 hold keeps the source we know
            self._filter.reset(negotiated.remote_address)
        self._recorder.configure(negotiated.receive_payload_types, negotiated.receive_event_pts)
        self._audio_pts = frozenset(negotiated.receive_payload_types)
        self.codec = negotiated.codec
        self.payload_type = negotiated.payload_type
        self.event_payload_type = negotiated.telephone_event_pt
        self.ptime = negotiated.ptime
        self.sending = negotiated.sends
        self._inactivity_reported = False
        self._arm_inactivity()
        if self._paced:
            self._retarget_native(self._filter.send_to)

    # --- confirmation of the peer ---------------------------------------------------------

    def expect_confirmation(self, on_confirmed: Callable[[], None]) -> None:
        """Until `confirm()` (the ACK) or the first RTP from the SDP's IP address (which calls
        ``on_confirmed``), the SDP address is only the INVITE's word: no RTCP goes there."""
        self.confirmed = False
        self._on_confirmed = on_confirmed

    def confirm(self) -> None:
        self.confirmed = True
        self._on_confirmed = None

    # --- SendTarget (read by paced jobs at every frame) -----------------------------------
    # codec, payload_type, event_payload_type, ptime and sending are plain attributes,
    # refreshed by _set_negotiated and close: the pacer reads them 30 000 times a second.

    def transmit(self, packet: bytes) -> None:
        destination = self._filter.send_to
        if destination is not None:
            self._rtp_transport.sendto(packet, destination)
            self._bytes_sent += len(packet)

    # --- playout --------------------------------------------------------------------------

    async def play(
        self,
        audio: Prompt | npt.NDArray[np.int16] | tuple[Prompt | npt.NDArray[np.int16], ...],
        interrupt: asyncio.Event | None = None,
        every: int = 1,
        then: Prompt | npt.NDArray[np.int16] | None = None,
        start_at: float | None = None,
    ) -> PlayResult:
        """Send 8 kHz int16 PCM (or a shared :class:`Prompt`) in ptime frames on an
        absolute schedule.

        Returns when every frame was sent, or early (``interrupted=True``) when
        ``interrupt`` is set or the session closes. Successive plays are serialised
        and continue sequence numbers and timestamps. While the stream is on hold the
        frames still take their time but are not sent. With ``every`` > 1 only one frame
        in ``every`` is sent (a keep-alive of silence).

        A tuple plays its prompts back to back, and an interrupt skips what is left of them;
        ``then`` is played right after them (after an interrupt too), uninterrupted, and the
        result is that of ``audio``. On the native pacer the whole sequence is handed to the
        thread at once, so each part starts on time however late the event loop is.

        ``start_at`` (``time.monotonic()``, the 200 OK's time, say) anchors the stream's first
        audio: what of the prompts (not ``then``) fell due before the play began is skipped, so
        that the rest, and ``then``, leave at their time on that schedule (`sender.anchor`);
        ``skipped`` in the result says how much.
        """
        self._require_started()
        parts = [p for p in (audio if isinstance(audio, tuple) else (audio,)) if len(p)]
        if not parts and (then is None or len(then) == 0):
            return PlayResult(0, 0, False)
        async with self._send_lock:
            self._require_started()
            prompts = self._engine.prompts
            result = PlayResult(0, 0, False)
            if interrupt is not None and interrupt.is_set():
                parts, result = [], PlayResult(0, 0, True)
            queue = [prompts.get(part) for part in parts]
            tail = prompts.get(then) if then is not None and len(then) else None
            anchored: Anchored | None = None
            if start_at is not None and every == 1 and not self._stream.begun:
                anchored = anchor(
                    [len(prompt) for prompt in queue],
                    CLOCK_RATE * self.ptime // 1000,
                    self.ptime / 1000,
                    start_at,
                    time.monotonic(),
                )
                queue = queue[anchored.dropped :]
                if anchored.offset:
                    queue[0] = queue[0].after(anchored.offset)
            skipped = PlayResult(0, 0, False, anchored.skipped if anchored is not None else 0)
            native = self._engine.native_pacer
            if native is not None and (every == 1 or tail is None):
                resume = await self._play_native(native, queue, interrupt, tail, anchored, every)
                if isinstance(resume, PlayResult):
                    return _joined(skipped, resume if queue else result)
                before, queue, tail = resume  # not for the thread: (the rest) in Python
                result = PlayResult(
                    result.frames + before.frames, result.samples + before.samples, False
                )
            for prompt in queue:
                played = await self._play_python(prompt, interrupt, every, anchored)
                anchored = None
                result = _joined(result, played)
                if played.interrupted:
                    break
            if tail is not None and self.state is SessionState.STARTED:
                await self._play_python(tail, None, 1, anchored)
            return _joined(skipped, result)

    async def _play_python(
        self,
        prompt: Prompt,
        interrupt: asyncio.Event | None,
        every: int,
        anchored: Anchored | None = None,
    ) -> PlayResult:
        future: asyncio.Future[PlayResult] = self._loop.create_future()
        job = AudioJob(
            self._stream,
            self,
            prompt,
            lambda outcome: _settle(future, outcome),
            interrupt.is_set if interrupt is not None else None,
            every,
        )
        if every > 1 and interrupt is not None:  # the pacer ticks it only when it sends
            waiter = self._loop.create_task(interrupt.wait())
            waiter.add_done_callback(lambda _: job.finish(interrupted=True))
            try:
                return await self._run_job(job, future)
            finally:
                waiter.cancel()
        if anchored is None:
            return await self._run_job(job, future)
        shift = self._loop.time() - time.monotonic()  # the loop's clock (uvloop's: in ms)
        return await self._run_job(job, future, (anchored.due + shift, anchored.intended + shift))

    async def _play_native(
        self,
        native: NativePacer,
        queue: list[Prompt],
        interrupt: asyncio.Event | None,
        tail: Prompt | None,
        anchored: Anchored | None = None,
        every: int = 1,
    ) -> PlayResult | tuple[PlayResult, list[Prompt], Prompt | None]:
        """The prompts, then ``tail``, as one chain on the native thread. A PlayResult, or,
        when a re-INVITE changed the codec or ptime mid-play (the thread's frames are cut for
        the old ones), what was played and the prompts still to play. ``every`` > 1: a
        keep-alive (one frame in ``every`` sent; its first frame is not a prompt's, so not
        measured for lateness)."""
        destination = self._filter.send_to
        if destination is None or self._rtp_fd < 0 or not self.sending:
            return PlayResult(0, 0, False), queue, tail
        prompts = [*queue, tail] if tail is not None else list(queue)
        ends: list[asyncio.Future[NativeEnd]] = []
        jobs: list[NativeJob] = []
        self._paced_codec = (self.codec, self.ptime)
        try:
            for index, prompt in enumerate(prompts):
                end: asyncio.Future[NativeEnd] = self._loop.create_future()
                job = NativeJob()
                if every == 1:
                    job.first = functools.partial(self._native_first, job, index == 0)
                job.done = self._native_done(end)
                after = jobs[-1] if jobs else None
                if not self._start_native(native, job, prompt, after, anchored, every):
                    return PlayResult(0, 0, False), queue, tail  # not a literal address
                jobs.append(job)
                ends.append(end)
                self._paced.append(job)
            if queue:
                last = ends[len(queue) - 1]
                if interrupt is not None:
                    waiter = self._loop.create_task(interrupt.wait())
                    try:
                        await asyncio.wait((last, waiter), return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiter.cancel()
                    if not last.done():
                        native.cancel(*jobs[: len(queue)])  # the tail follows at once
            outcome = [await end for end in ends]
        finally:
            native.cancel(*jobs)  # a cancelled play: nothing of it is sent any more
            self._paced = [job for job in self._paced if not job.ended]
        result = PlayResult(0, 0, False)
        for index, ended in enumerate(outcome[: len(queue)]):
            result = _joined(result, PlayResult(ended.frames, ended.samples, ended.interrupted))
            if ended.interrupted and (self._paced_codec != (self.codec, self.ptime)):
                if self.state is not SessionState.STARTED:
                    return result
                rest = [Prompt(queue[index].pcm[ended.samples :]), *queue[index + 1 :]]
                return PlayResult(result.frames, result.samples, False), rest, tail
            if ended.interrupted:
                break
        return result

    def _start_native(
        self,
        native: NativePacer,
        job: NativeJob,
        prompt: Prompt,
        after: NativeJob | None,
        anchored: Anchored | None = None,
        every: int = 1,
    ) -> bool:
        stream = self._stream
        ptime = self.ptime
        samples = CLOCK_RATE * ptime // 1000
        destination = self._filter.send_to
        if destination is None:
            return False
        for following in (after, None) if after is not None else (None,):
            if following is None and anchored is not None and not stream.begun:
                job.intended = anchored.intended
                stream.begin(anchored.due, ptime / 1000, samples)
            elif following is None:
                now = time.monotonic()  # the thread's clock (uvloop's loop.time() is in ms)
                job.intended = (
                    stream.due if stream.begun and now - stream.due < FOLLOW_WINDOW else now
                )
                stream.begin(now, ptime / 1000, samples)
            try:
                started = native.start(
                    job,
                    following,
                    fd=self._rtp_fd,
                    host=destination[0],
                    port=destination[1],
                    payload=prompt.encoded(self.codec),
                    frame_bytes=samples,
                    ptime=ptime / 1000,
                    pt=self.payload_type,
                    silence=SILENCE_OCTET[self.codec],
                    ssrc=stream.ssrc,
                    seq=stream.sequence,
                    ts=stream.timestamp,
                    marker=stream.marker,
                    due=stream.due,
                    sending=self.sending,
                    **({"every": every} if every != 1 else {}),  # prompts: as before `every`
                )
            except ValueError:  # a host name, not an address: the Python pacer resolves it
                return False
            if started:
                return True
        return False

    def _native_first(self, job: NativeJob, head: bool, sent: float, due: float) -> None:
        observe = self._engine.on_prompt_late
        if observe is not None:
            observe(max(0.0, sent - (job.intended if head else due)))

    def _native_done(self, end: asyncio.Future[NativeEnd]) -> Callable[[NativeEnd], None]:
        def done(outcome: NativeEnd) -> None:
            if outcome.state is not None:
                self._stream.resume(
                    outcome.state, outcome.packets, outcome.octets, outcome.withheld, outcome.slips
                )
                self._bytes_sent += outcome.octets + RTP_HEADER_SIZE * outcome.packets
            if not end.done():
                end.set_result(outcome)

        return done

    def _retarget_native(self, destination: tuple[str, int] | None) -> None:
        """The destination, payload type or hold changed while prompts play natively; a codec
        or ptime change ends them (`play` goes on in Python)."""
        native = self._engine.native_pacer
        jobs = self._paced = [job for job in self._paced if not job.ended]
        if native is None or not jobs:
            return
        if self._paced_codec != (self.codec, self.ptime):
            native.cancel(*jobs)
            return
        if destination is not None:
            for job in jobs:
                native.retarget(job, destination, self.payload_type, self.sending)

    async def send_dtmf(self, digit: str, duration_ms: int = 100) -> PlayResult:
        """Send one RFC 4733 event on the negotiated telephone-event payload type."""
        self._require_started()
        async with self._send_lock:
            self._require_started()
            if self.event_payload_type is None:
                raise MediaSessionStateError("telephone-event was not negotiated")
            future: asyncio.Future[PlayResult] = self._loop.create_future()
            job = DtmfJob(
                self._stream, self, digit, duration_ms, lambda outcome: _settle(future, outcome)
            )
            return await self._run_job(job, future)

    async def _run_job(
        self,
        job: AudioJob | DtmfJob,
        future: asyncio.Future[PlayResult],
        anchored: tuple[float, float] | None = None,
    ) -> PlayResult:
        job.start(self._loop.time(), anchored)
        self._jobs.add(job)
        self._engine.pacer.add(job)
        try:
            return await future
        finally:
            self._engine.pacer.discard(job)
            self._jobs.discard(job)
            job.finished = True

    # --- receive path ---------------------------------------------------------------------

    def _rtp_in(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self._on_rtp is not None:
            self._rtp_relayed(data, addr, self._on_rtp)
            return
        # The fast path (nearly every packet of a call): a plain 12-byte header from the
        # latched source, the next audio packet of the stream. Anything else, or anything the
        # recorder does not take as "next", goes the general way below.
        latched = self._filter.latched
        if (
            latched is not None
            and len(data) > RTP_HEADER_SIZE
            and data[0] == _PLAIN_RTP
            and addr[1] == latched[1]
            and addr[0] == latched[0]
            and self._receiving
        ):
            second, sequence, timestamp, ssrc = _AFTER_FIRST_OCTET.unpack_from(data, 1)
            now = self._loop.time()
            if second not in RTCP_MUX_PT_RANGE and self._recorder.receive_next(
                second & 0x7F, sequence, timestamp, ssrc, data[RTP_HEADER_SIZE:], now
            ):
                self._received(len(data), ssrc, sequence, timestamp, now, True)
                return
        self._rtp_in_general(data, addr)

    def _rtp_in_general(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if not self._receiving:
            self._dropped_source += 1
            return
        if len(data) > 1 and 192 <= data[1] <= 223:  # RTCP on a muxed port (RFC 5761 4)
            self._rtcp_in(data, addr)
            return
        now = self._loop.time()
        try:
            packet = parse_rtp(data, now)
        except MalformedPacketError:
            self._malformed += 1
            return
        latched = self._filter.latched
        if (
            latched is None or addr[0] != latched[0] or addr[1] != latched[1]
        ) and not self._filter.accept(addr):
            self._dropped_source += 1
            return
        if not self.confirmed:
            self._first_rtp(addr)
        self._recorder.receive(packet)
        self._received(
            len(data),
            packet.ssrc,
            packet.sequence,
            packet.timestamp,
            now,
            packet.payload_type in self._audio_pts,
        )

    def _rtp_relayed(self, data: bytes, addr: tuple[Any, ...], tap: RtpTap) -> None:
        """The receive path while a relay holds the session: source check and bookkeeping,
        then the packet as it came."""
        if not self._receiving:
            self._dropped_source += 1
            return
        if len(data) < RTP_HEADER_SIZE or data[0] >> 6 != RTP_VERSION:
            self._malformed += 1
            return
        if 192 <= data[1] <= 223:  # RTCP on a muxed port (RFC 5761 4)
            self._rtcp_in(data, addr)
            return
        latched = self._filter.latched
        if (
            latched is None or addr[0] != latched[0] or addr[1] != latched[1]
        ) and not self._filter.accept(addr):
            self._dropped_source += 1
            return
        if not self.confirmed:
            self._first_rtp(addr)
        now = self._loop.time()
        tap(data)
        second, sequence, timestamp, ssrc = _AFTER_FIRST_OCTET.unpack_from(data, 1)
        audio = (second & 0x7F) in self._audio_pts
        self._received(len(data), ssrc, sequence, timestamp, now, audio)

    def _first_rtp(self, addr: tuple[Any, ...]) -> None:
        """RTP from the IP address the SDP named confirms the peer (the first accepted packet
        always comes this way: the fast path needs a latched source)."""
        n = self.negotiated
        if n is not None and addr[0] == n.remote_ip:
            callback = self._on_confirmed
            self.confirm()
            if callback is not None:
                callback()

    def _received(
        self, size: int, ssrc: int, sequence: int, timestamp: int, now: float, audio: bool
    ) -> None:
        """Bookkeeping after a packet from the accepted source went to the recorder."""
        self._last_rtp = now
        self._packets_received += 1
        self._bytes_received += size
        self._reception.packet(ssrc, sequence, timestamp, now, audio)
        if self._expiry_timer is None and self._recorder.holding:
            self._arm_expiry()
        if self._inactivity_reported:
            self._inactivity_reported = False
            self._arm_inactivity()

    # --- the native receiver (native.py): it takes the stream's next packets while armed ---

    def _native_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        """A datagram the thread did not take: ours to handle, after what it took before."""
        if self._native_armed:
            self._native_release()
        self._rtp_in(data, addr)

    def _native_ready(self) -> None:
        if self._native_armed:
            self._native_sync(disarm=False)

    def _native_rearm(self) -> None:
        """Arm the thread with our state, if the next packet may take the fast path."""
        receiver = self._native
        latched = self._filter.latched
        if (
            receiver is None
            or self._native_armed
            or not self._receiving
            or self._on_rtp is not None
            or self._inactivity_reported
            or latched is None
        ):
            return
        start = self._recorder.native_state()
        if start is None or self._reception.ssrc != start.ssrc:
            return
        max_ext, jitter, last_ts, last_arrival = self._reception.snapshot()
        if "%" in latched[0]:  # an IPv6 scope the thread does not compare: stay in Python
            return
        if receiver.rx.arm(
            self._native_sid,
            latched[0],
            latched[1],
            start.pt,
            start.alaw,
            start.ssrc,
            start.seq,
            start.ts,
            start.position,
            max_ext,
            jitter,
            last_ts,
            last_arrival,
            start.pending,
            start.pending_offset,
            start.pending_since,
        ):
            self._recorder.native_armed()
            self._native_armed = True

    def _native_release(self) -> None:
        """Take the stream back from the thread: its blocks, counters and partial block."""
        if self._native_armed:
            self._native_armed = False
            assert self._native is not None
            self._native_apply(self._native.sync(self._native_sid, True))

    def _native_sync(self, disarm: bool) -> None:
        assert self._native is not None
        self._native_apply(self._native.sync(self._native_sid, disarm))

    def _native_apply(self, state: NativeState) -> None:
        blocks, packets, octets, samples, _, next_ts, arrival, max_ext, jitter, last_ts, partial = (
            state
        )
        recorder = self._recorder
        if packets:
            recorder.native_advanced(packets, samples, next_ts, arrival)
            self._reception.advanced(packets, max_ext, jitter, last_ts, arrival)
            self._last_rtp = max(self._last_rtp, arrival)
            self._packets_received += packets
            self._bytes_received += octets
        for offset, pcm, since in blocks:
            recorder.native_block(np.frombuffer(pcm, dtype=np.int16), offset, since)
        if partial is not None:
            recorder.native_returned(*partial)
            if self._expiry_timer is None and recorder.holding:
                self._arm_expiry()

    def _rtcp_in(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self.state is not SessionState.STARTED or not self._filter.accept_control(addr):
            self._dropped_source += 1
            return
        try:
            reports = parse_sender_reports(data)
        except MalformedPacketError:
            self._malformed += 1
            return
        self._rtcp_received += 1
        self._rtcp_source = (addr[0], addr[1])
        now = self._loop.time()
        for ssrc, ntp in reports:
            self._reception.sender_report(ssrc, ntp, now)

    def _arm_expiry(self) -> None:
        deadline = self._recorder.deadline
        if deadline is not None:
            self._expiry_timer = self._loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._expiry_timer = None
        self._recorder.expire(self._loop.time())
        self._arm_expiry()

    # --- RTP inactivity -------------------------------------------------------------------

    def _arm_inactivity(self) -> None:
        if self._inactivity_timer is not None:
            self._inactivity_timer.cancel()
            self._inactivity_timer = None
        timeout = self._config.inactivity_timeout
        n = self.negotiated
        if timeout <= 0 or n is None or not n.expects_rtp or self.state is not SessionState.STARTED:
            return
        self._inactivity_timer = self._loop.call_at(
            self._last_rtp + timeout, self._check_inactivity
        )

    def _check_inactivity(self) -> None:
        self._inactivity_timer = None
        if self._native_armed:
            self._native_sync(disarm=False)
        n = self.negotiated
        if self.state is not SessionState.STARTED or n is None or not n.expects_rtp:
            return
        timeout = self._config.inactivity_timeout
        if self._loop.time() - self._last_rtp + _INACTIVITY_SLACK < timeout:
            self._inactivity_timer = self._loop.call_at(
                self._last_rtp + timeout, self._check_inactivity
            )
            return
        self._inactivity_reported = True
        self._native_release()  # the next packet comes through _received, which resets this
        log.info("no RTP for %.0f s on port %d", timeout, self.local_port)
        if self.on_inactivity is not None:
            self.on_inactivity()

    # --- RTCP -----------------------------------------------------------------------------

    def _schedule_rtcp(self) -> None:
        interval = self._config.rtcp_interval * random.uniform(0.5, 1.5)  # RFC 3550 6.3.1
        self._rtcp_timer = self._loop.call_later(interval, self._send_rtcp)

    def _send_rtcp(self) -> None:
        self._rtcp_timer = None
        if self.state is not SessionState.STARTED:
            return
        if self.confirmed:
            self._transmit_rtcp(self._rtcp_report())
        self._schedule_rtcp()

    def _rtcp_report(self, bye: bool = False) -> bytes:
        now = self._loop.time()
        stream = self._stream
        sender = None
        packets, octets = stream.packets_sent, stream.octets_sent
        native = self._engine.native_pacer
        if native is not None:  # prompts playing on the thread: what they sent so far
            for job in self._paced:
                more, more_octets = native.progress(job)
                packets, octets = packets + more, octets + more_octets
        if packets != self._reported_packets:
            self._reported_packets = packets
            sender = RtcpSenderInfo(
                ntp_timestamp=ntp_timestamp(time.time()),
                rtp_timestamp=stream.rtp_time(now),
                packet_count=packets & 0xFFFFFFFF,
                octet_count=octets & 0xFFFFFFFF,
            )
        block = self._reception.report_block(now)
        return build_compound(stream.ssrc, self._cname, block, sender, bye)

    def _transmit_rtcp(self, data: bytes) -> None:
        n = self.negotiated
        if n is None:
            return
        destination = self._rtcp_source
        if destination is None:
            destination = n.remote_rtcp_address
            latched = self._filter.latched
            if destination is not None and n.rtcp_mux and latched is not None:
                destination = latched
        if destination is None:
            return
        transport = self._rtp_transport if n.rtcp_mux else self._rtcp_transport
        transport.sendto(data, destination)
        self._rtcp_sent += 1

    # --- lifecycle ------------------------------------------------------------------------

    def stats(self) -> MediaStats:
        if self._native_armed:
            self._native_sync(disarm=False)
        recorder = self._recorder
        return MediaStats(
            packets_received=self._packets_received,
            bytes_received=self._bytes_received,
            packets_sent=self._stream.packets_sent,
            bytes_sent=self._bytes_sent,
            lost=recorder.lost,
            late=recorder.late,
            duplicates=recorder.duplicates,
            dropped_payload_type=recorder.dropped_payload_type,
            dropped_source=self._dropped_source,
            malformed=self._malformed + recorder.dtmf.malformed,
            dtmf_digits=recorder.dtmf.digits,
            rtcp_sent=self._rtcp_sent,
            rtcp_received=self._rtcp_received,
            samples_recorded=recorder.samples,
            jitter_ms=self._reception.jitter_seconds * 1000,
            frames_withheld=self._stream.frames_withheld,
            schedule_slips=self._stream.slips,
        )

    async def close(self) -> None:
        """Stop playout, deliver the recording's tail, send RTCP BYE, close the sockets."""
        if self.state is SessionState.CLOSED:
            return
        was_started = self.state is SessionState.STARTED
        self.state = SessionState.CLOSED
        self._receiving = False
        self.sending = False
        for timer in (self._inactivity_timer, self._rtcp_timer, self._expiry_timer):
            if timer is not None:
                timer.cancel()
        self._inactivity_timer = self._rtcp_timer = self._expiry_timer = None
        for job in list(self._jobs):
            self._engine.pacer.discard(job)
            job.finish(interrupted=True)
        if self._paced and self._engine.native_pacer is not None:
            self._engine.native_pacer.cancel(*self._paced)  # the thread drops our socket now
            self._paced = []
        try:
            if self._native is not None:  # the thread lets go of the socket before it closes
                armed, self._native_armed = self._native_armed, False
                state = self._native.remove(self._native_sid)
                if armed:
                    self._native_apply(state)
            self._recorder.flush()
            if was_started and self.confirmed:
                with contextlib.suppress(OSError):
                    self._transmit_rtcp(self._rtcp_report(bye=True))
        finally:
            self._rtp_endpoint.session = None
            self._rtcp_endpoint.session = None
            self._rtp_transport.close()
            self._rtcp_transport.close()
            await asyncio.gather(self._rtp_endpoint.closed, self._rtcp_endpoint.closed)
            self._engine._forget(self)

    def _require_started(self) -> None:
        if self.state is not SessionState.STARTED:
            raise MediaSessionStateError(f"media session is {self.state.value}, not started")

    def _require_open(self) -> None:
        if self.state is SessionState.CLOSED:
            raise MediaSessionStateError("media session is closed")


def _bound_udp_socket(host: str, port: int) -> socket.socket:
    """A bound non-blocking UDP socket. Binding it here, rather than giving the loop a
    `local_addr`, spares every call set-up two getaddrinfo round trips through a thread pool,
    which queue up under load."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
