"""The SIP user agent: transactions, dialogs and transports tied into a small typed API.

Ours rather than aiosipua's UAS/UAC, which create a second call for a retransmitted
INVITE, answer a retransmitted BYE with 481, send 200 after CANCEL and never retransmit
or ACK non-2xx finals (issue 3). Only its message model and codecs are used.

The layer above gets:
- server side: ``on_invite(IncomingInvite)``; the IncomingInvite answers (ringing, progress,
  accept, reject) and reports `Cancelled`; an accepted call is a `Dialog`;
- client side: ``await ua.invite(...) -> OutgoingInvite`` reporting `Provisional`,
  `Answered`, `Failed`;
- a `Dialog` reports `AckReceived`, `DtmfReceived`, `InfoReceived`, `HangUp`, answers
  re-INVITEs through ``on_reinvite(offer) -> answer | None`` and sends ``bye()``/``info()``.

Events go to ``listener`` when one is set, otherwise into a queue read by ``next_event()``.
Everything runs in the datagram/stream callbacks: no task per packet; timers are
``loop.call_later`` handles owned by their transaction and cancelled when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiosipua.headers import Via, parse_uri
from aiosipua.message import SipRequest, SipResponse

from afterbeep.domain.netpolicy import AddressBlocked, IPNetwork, NetworkPolicy, literal_address
from afterbeep.telephony.sip.auth import Credentials, DigestSession
from afterbeep.telephony.sip.dialog import (
    DialogId,
    DialogState,
    Hop,
    hop_of,
    request_dialog_id,
    response_dialog_id,
)
from afterbeep.telephony.sip.errors import (
    CallFailed,
    SipParseError,
    SipStateError,
    SipTransportError,
)
from afterbeep.telephony.sip.message import (
    build_cancel,
    build_response,
    header_tag,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
    set_top_via,
    top_via,
    uri_of,
)
from afterbeep.telephony.sip.proxied import client_host
from afterbeep.telephony.sip.transaction import (
    AckReceived,
    Action,
    InviteClientTransaction,
    InviteServerTransaction,
    NoAck,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    ResponseReceived,
    Send,
    StartTimer,
    StopTimer,
    Terminate,
    TimedOut,
    Timer,
    TimerConfig,
    ToTU,
    Transaction,
    TransportFailed,
    TUEvent,
    TxnKey,
    client_key,
    response_key,
    server_key,
)
from afterbeep.telephony.sip.transport import Flow, TransportLayer

logger = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER"
SDP = "application/sdp"
TRYING_AFTER = 0.2  # seconds: an INVITE not answered by then gets a 100 Trying (RFC 3261 §17.2.1)
DTMF_TYPES = ("application/dtmf-relay", "application/dtmf")
_DTMF_CODES = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}
_DTMF_DIGITS = frozenset("0123456789*#ABCD")


# --- configuration -------------------------------------------------------------------------


def parse_hostport(value: str, default_port: int = 5060) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` → (host without brackets, port)."""
    text = value.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, default_port


@dataclass(frozen=True, slots=True)
class UAConfig:
    """Where the UA listens and what it puts in Via/Contact.

    ``advertise`` is a host (or host:port) reachable by peers: never a wildcard address.
    Without a port the bound port of each transport is used.
    """

    advertise: str
    listen_udp: str | None = "0.0.0.0:5060"
    listen_tcp: str | None = None
    user_agent: str = "afterbeep"
    contact_user: str = "afterbeep"
    timers: TimerConfig = field(default_factory=TimerConfig)
    retry_after: int = 30
    ring_timeout: float = 180.0
    # Outbound INVITEs go only to addresses it permits (resolved once, checked, then used);
    # None: no restriction (calls placed by tests and tools).
    network_policy: NetworkPolicy | None = None
    # proxies in front of this node (Kamailio): `client_host` of what they relay is their client
    trusted_proxies: tuple[IPNetwork, ...] = ()

    def __post_init__(self) -> None:
        host, _ = parse_hostport(self.advertise)
        if not host:
            raise ValueError("advertise address is empty")
        try:
            wildcard = ipaddress.ip_address(host).is_unspecified
        except ValueError:
            wildcard = False  # a host name
        if wildcard:
            raise ValueError(f"advertise address {host} is a wildcard address")
        if self.listen_udp is None and self.listen_tcp is None:
            raise ValueError("no listen address")


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The caller cancelled the INVITE (or it was never answered); accept() is now a no-op."""

    reason: str = "CANCEL"


@dataclass(frozen=True, slots=True)
class Provisional:
    code: int
    reason: str
    sdp: bytes | None


@dataclass(frozen=True, slots=True)
class Answered:
    dialog: Dialog
    sdp: bytes


@dataclass(frozen=True, slots=True)
class Failed:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class DialogAck:
    """The ACK for our 2xx arrived (carries the answer when our 2xx carried an offer)."""

    body: bytes


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    digit: str
    duration_ms: int | None


@dataclass(frozen=True, slots=True)
class InfoReceived:
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class HangUp:
    """The dialog ended: ``remote`` (BYE), ``no-ack``, ``transport``, ``shutdown``."""

    reason: str


IncomingEvent = Cancelled
OutgoingEvent = Provisional | Answered | Failed
DialogEvent = DialogAck | DtmfReceived | InfoReceived | HangUp

E = TypeVar("E")


class _EventSource(Generic[E]):
    def __init__(self) -> None:
        self.listener: Callable[[E], None] | None = None
        self._queue: asyncio.Queue[E] = asyncio.Queue()

    def _emit(self, event: E) -> None:
        if self.listener is None:
            self._queue.put_nowait(event)
            return
        try:
            self.listener(event)
        except Exception:
            logger.exception("SIP event listener failed")

    async def next_event(self) -> E:
        return await self._queue.get()


# --- transactions bound to the loop --------------------------------------------------------


class _Entry:
    __slots__ = ("done", "firing", "flow", "handles", "machine", "tu")

    def __init__(self, machine: Transaction, flow: Flow, tu: Callable[[TUEvent], None] | None):
        self.machine = machine
        self.flow = flow
        self.tu = tu
        self.handles: dict[Timer, asyncio.TimerHandle] = {}
        self.firing: tuple[Timer, float] | None = None  # the timer being handled, when it was due
        self.done = False


# --- server side ---------------------------------------------------------------------------


class InviteState(enum.Enum):
    PENDING = "pending"
    EARLY = "early"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class IncomingInvite(_EventSource[IncomingEvent]):
    """A new INVITE waiting for the layer above to ring, answer or reject it."""

    def __init__(self, ua: UserAgent, request: SipRequest, entry: _Entry) -> None:
        super().__init__()
        self._ua = ua
        self.request = request
        self._entry = entry
        self.received_at = time.monotonic()
        self.to_tag = new_tag()
        self.state = InviteState.PENDING
        self.dialog: Dialog | None = None
        self._ring_timer: asyncio.TimerHandle | None = None

    @property
    def call_id(self) -> str:
        return self.request.headers.get_first("call-id") or ""

    @property
    def from_header(self) -> str:
        return self.request.headers.get_first("from") or ""

    @property
    def to_header(self) -> str:
        return self.request.headers.get_first("to") or ""

    @property
    def from_uri(self) -> str:
        return uri_of(self.from_header)

    @property
    def to_uri(self) -> str:
        return uri_of(self.to_header)

    @property
    def request_user(self) -> str | None:
        return parse_uri(self.request.uri).user

    @property
    def p_asserted_identity(self) -> str | None:
        value = self.request.headers.get_first("p-asserted-identity")
        return uri_of(value) if value else None

    @property
    def sdp(self) -> bytes:
        return self.request.body

    @property
    def source(self) -> tuple[str, int]:
        return self._entry.flow.peer

    @property
    def client_host(self) -> str:
        """The source's host, or behind a trusted proxy the host the proxy received this from."""
        return client_host(self.request, self.source[0], self._ua.config.trusted_proxies)

    @property
    def transport(self) -> str:
        return self._entry.flow.transport

    @property
    def answerable(self) -> bool:
        return self.state in (InviteState.PENDING, InviteState.EARLY)

    def ringing(self) -> None:
        self._provisional(180, None)

    def progress(self, sdp: bytes) -> None:
        self._provisional(183, sdp)

    def _provisional(self, code: int, sdp: bytes | None) -> None:
        if not self.answerable:
            return
        self.state = InviteState.EARLY
        resp = self._ua._response(
            self.request,
            code,
            to_tag=self.to_tag,
            contact=True,
            flow=self._entry.flow,
            body=sdp or b"",
            content_type=SDP if sdp else None,
            copy_record_route=True,
        )
        self._ua._respond(self._entry, resp)

    def accept(self, sdp_answer: bytes) -> Dialog | None:
        """Send 200 (retransmitted until ACK). None, and nothing sent, if the call is gone."""
        if not self.answerable:
            return None
        self.state = InviteState.ACCEPTED
        self._stop_ring_timer()
        state = DialogState.for_uas(self.request, self.to_tag)
        dialog = Dialog(self._ua, state, self._entry.flow)
        dialog._local_sdp = sdp_answer
        dialog._pending_ist = self._entry
        dialog._pending_cseq = state.remote_seq
        self.dialog = dialog
        self._ua._add_dialog(dialog)
        resp = self._ua._response(
            self.request,
            200,
            to_tag=self.to_tag,
            contact=True,
            flow=self._entry.flow,
            body=sdp_answer,
            content_type=SDP if sdp_answer else None,
            copy_record_route=True,
            extra=(("Allow", ALLOW),),
        )
        self._ua._respond(self._entry, resp)
        self._ua._invite_settled(self)
        return dialog

    def reject(
        self, code: int, reason: str | None = None, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        if not 300 <= code <= 699:
            raise SipStateError(f"reject needs a 3xx-6xx code, got {code}")
        if not self.answerable:
            return
        self.state = InviteState.REJECTED
        self._stop_ring_timer()
        resp = self._ua._response(self.request, code, reason, to_tag=self.to_tag, extra=headers)
        self._ua._respond(self._entry, resp)
        self._ua._invite_settled(self)

    def _cancel(self, reason: str, code: int = 487) -> None:
        if not self.answerable:
            return
        self.state = InviteState.CANCELLED
        self._stop_ring_timer()
        resp = self._ua._response(self.request, code, to_tag=self.to_tag)
        self._ua._respond(self._entry, resp)
        self._ua._invite_settled(self)
        self._emit(Cancelled(reason))

    def _stop_ring_timer(self) -> None:
        if self._ring_timer is not None:
            self._ring_timer.cancel()
            self._ring_timer = None

    def _on_txn_event(self, event: TUEvent) -> None:
        if self.dialog is not None:
            self.dialog._on_ist_event(event)
        elif isinstance(event, TransportFailed) and self.answerable:
            self.state = InviteState.CANCELLED
            self._stop_ring_timer()
            self._ua._invite_settled(self)
            self._emit(Cancelled("transport"))


# --- dialogs -------------------------------------------------------------------------------


class Dialog(_EventSource[DialogEvent]):
    """An established call leg (either side). Send BYE with ``await dialog.bye()``."""

    def __init__(self, ua: UserAgent, state: DialogState, flow: Flow | None) -> None:
        super().__init__()
        self._ua = ua
        self.state = state
        self._flow = flow
        self.terminated = False
        self.on_reinvite: Callable[[bytes], bytes | None] | None = None
        self.remote_sdp = b""
        self._local_sdp = b""
        self._pending_ist: _Entry | None = None
        self._pending_cseq: int | None = None
        self._ack_bytes: bytes | None = None
        self._ack_flow: Flow | None = None
        self._credentials: Credentials | None = None
        self._bye_sent = False
        self._reinvite_in_progress = False
        # A dialog we opened: its in-dialog requests follow the answerer's Contact, so they
        # are held to the network policy as the INVITE was.
        self.outbound = False
        # The policy its in-dialog requests are held to (None: the user agent's).
        self.network_policy: NetworkPolicy | None = None

    @property
    def id(self) -> DialogId:
        return self.state.id

    @property
    def call_id(self) -> str:
        return self.state.call_id

    @property
    def local_sdp(self) -> bytes:
        return self._local_sdp

    async def bye(self) -> None:
        """Hang up from our side; returns when the BYE is answered or timed out. Idempotent."""
        if self.terminated or self._bye_sent:
            return
        self._bye_sent = True
        self._stop_ist()
        self._terminate("local", emit=False)
        try:
            await self._request("BYE")
        except (CallFailed, SipTransportError) as exc:
            logger.info("BYE for %s not answered: %s", self.call_id, exc)

    async def info(self, body: bytes, content_type: str) -> int:
        """Send INFO; returns the final status code."""
        if self.terminated:
            raise SipStateError("dialog terminated")
        resp = await self._request("INFO", body=body, content_type=content_type)
        return resp.status_code

    async def reinvite(self, sdp_offer: bytes) -> bytes:
        """Send a re-INVITE (hold/resume); returns the remote answer. Raises CallFailed."""
        if self.terminated:
            raise SipStateError("dialog terminated")
        if self._reinvite_in_progress:
            raise SipStateError("re-INVITE already in progress")
        self._reinvite_in_progress = True
        try:
            resp = await self._request("INVITE", body=sdp_offer, content_type=SDP)
        finally:
            self._reinvite_in_progress = False
        if resp.status_code >= 300:
            raise CallFailed(resp.status_code, resp.reason_phrase)
        self._local_sdp = sdp_offer
        self.remote_sdp = resp.body
        return resp.body

    async def _get_flow(self) -> Flow:
        if self._flow is not None and self._flow.reliable and not self._flow.closed:
            return self._flow
        hop = hop_of(self.state.next_hop_uri())
        if self._flow is not None and self._flow.reliable:
            hop = Hop(hop.host, hop.port, "TCP")
        host = hop.host
        if self.outbound:
            try:
                host = await self._ua._permitted_host(hop, self.network_policy)
            except AddressBlocked as exc:
                raise SipTransportError("destination not allowed") from exc
        flow = await self._ua._transport.flow_to(host, hop.port, hop.transport)
        if flow.reliable:
            self._flow = flow
        return flow

    async def _request(
        self, method: str, *, body: bytes = b"", content_type: str | None = None
    ) -> SipResponse:
        flow = await self._get_flow()
        extra: tuple[tuple[str, str], ...] = (("User-Agent", self._ua.config.user_agent),)
        digest = DigestSession(self._credentials) if self._credentials else None
        for _ in range(3):
            req = self.state.create_request(
                method,
                via=self._ua._via(flow, new_branch()),
                contact=self._ua._contact(flow),
                body=body,
                content_type=content_type,
                headers=extra,
            )
            resp = await self._ua._send_and_wait(req, flow, self)
            if resp.status_code in (401, 407) and digest is not None:
                auth = digest.answer(resp, method, req.uri)
                if auth:
                    extra = (("User-Agent", self._ua.config.user_agent), *auth)
                    continue
            return resp
        return resp

    def _send_ack(self, flow: Flow) -> None:
        if self._ack_bytes is None:
            return
        self._ack_flow = flow
        try:
            flow.send(self._ack_bytes)
        except SipTransportError:
            logger.info("ACK for %s could not be sent", self.call_id)

    def _stop_ist(self) -> None:
        entry = self._pending_ist
        if entry is not None and isinstance(entry.machine, InviteServerTransaction):
            self._ua._apply(entry, entry.machine.stop_retransmitting())

    def _on_ist_event(self, event: TUEvent) -> None:
        if isinstance(event, AckReceived):
            self._pending_ist = None
            self._emit(DialogAck(event.request.body))
        elif isinstance(event, NoAck) and 200 <= event.status < 300 and not self.terminated:
            self._pending_ist = None
            self._emit(HangUp("no-ack"))
            self._bye_sent = True
            self._terminate("no-ack", emit=False)
            self._ua._spawn(self._request_quietly("BYE"))
        elif isinstance(event, TransportFailed) and not self.terminated:
            self._terminate("transport")

    async def _request_quietly(self, method: str) -> None:
        try:
            await self._request(method)
        except (CallFailed, SipTransportError) as exc:
            logger.info("%s for %s failed: %s", method, self.call_id, exc)

    def _terminate(self, reason: str, *, emit: bool = True) -> None:
        if self.terminated:
            return
        self.terminated = True
        self._ua._remove_dialog(self)
        if emit:
            self._emit(HangUp(reason))

    # requests from the peer

    def _on_request(self, req: SipRequest, entry: _Entry) -> None:
        ua = self._ua
        if not self.state.accept_remote_cseq(req):
            ua._respond(entry, ua._response(req, 500, "CSeq Out of Order"))
            return
        method = req.method
        if method == "BYE":
            ua._respond(entry, ua._response(req, 200))
            self._stop_ist()
            self._terminate("remote")
        elif method == "INFO":
            self._on_info(req, entry)
        elif method == "INVITE":
            self._on_reinvite(req, entry)
        elif method == "OPTIONS":
            ua._respond(entry, ua._options_response(req))
        else:
            ua._respond(entry, ua._response(req, 405, extra=(("Allow", ALLOW),)))

    def _on_info(self, req: SipRequest, entry: _Entry) -> None:
        ua = self._ua
        ctype = (req.content_type or "").split(";", 1)[0].strip().lower()
        if not req.body:
            ua._respond(entry, ua._response(req, 200))
            return
        if ctype not in DTMF_TYPES:
            accept = (("Accept", ", ".join(DTMF_TYPES)),)
            ua._respond(entry, ua._response(req, 415, extra=accept))
            return
        event = _parse_dtmf(ctype, req.body)
        ua._respond(entry, ua._response(req, 200 if event is not None else 400))
        if event is not None:
            self._emit(event)

    def _on_reinvite(self, req: SipRequest, entry: _Entry) -> None:
        ua = self._ua
        if self._pending_ist is not None or self._reinvite_in_progress:
            ua._respond(entry, ua._response(req, 491, extra=(("Retry-After", "1"),)))
            return
        ctype = (req.content_type or SDP).split(";", 1)[0].strip().lower()
        if req.body and ctype != SDP:
            ua._respond(entry, ua._response(req, 415, extra=(("Accept", SDP),)))
            return
        answer: bytes | None = None
        if self.on_reinvite is not None:
            try:
                answer = self.on_reinvite(req.body)
            except Exception:
                logger.exception("re-INVITE handler failed")
                ua._respond(entry, ua._response(req, 500))
                return
        if answer is None:
            ua._respond(entry, ua._response(req, 488))
            return
        self.state.refresh_target(req)
        self.remote_sdp = req.body
        self._local_sdp = answer
        self._pending_ist = entry
        self._pending_cseq = int((req.headers.get_first("cseq") or "0").split()[0])
        entry.tu = self._on_ist_event
        resp = ua._response(
            req,
            200,
            contact=True,
            flow=entry.flow,
            body=answer,
            content_type=SDP,
            copy_record_route=True,
            extra=(("Allow", ALLOW),),
        )
        ua._respond(entry, resp)


def _parse_dtmf(ctype: str, body: bytes) -> DtmfReceived | None:
    text = body.decode("ascii", errors="replace").strip()
    if ctype == "application/dtmf":
        digit = _DTMF_CODES.get(text, text.upper())
        return DtmfReceived(digit, None) if digit in _DTMF_DIGITS else None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    signal = fields.get("signal", "")
    digit = _DTMF_CODES.get(signal, signal.upper())
    if digit not in _DTMF_DIGITS:
        return None
    duration = fields.get("duration", "")
    return DtmfReceived(digit, int(duration) if duration.isdigit() else None)


# --- client side ---------------------------------------------------------------------------


class OutgoingState(enum.Enum):
    CALLING = "calling"
    EARLY = "early"
    ANSWERED = "answered"
    FAILED = "failed"


class OutgoingInvite(_EventSource[OutgoingEvent]):
    """An INVITE we sent. Reports Provisional, then Answered or Failed (exactly one)."""

    def __init__(
        self,
        ua: UserAgent,
        request: SipRequest,
        flow: Flow,
        credentials: Credentials | None,
    ) -> None:
        super().__init__()
        self._ua = ua
        self.request = request
        self._flow = flow
        self.state = OutgoingState.CALLING
        self.dialog: Dialog | None = None
        self._digest = DigestSession(credentials) if credentials is not None else None
        self._credentials = credentials
        self._entry: _Entry | None = None
        self._got_provisional = False
        self._cancel_wanted = False
        self._cancel_sent = False
        self._timeout: asyncio.TimerHandle | None = None
        self._answered = asyncio.get_running_loop().create_future()
        self.network_policy: NetworkPolicy | None = None  # None: the user agent's

    @property
    def call_id(self) -> str:
        return self.request.headers.get_first("call-id") or ""

    @property
    def local_tag(self) -> str:
        return header_tag(self.request.headers.get_first("from")) or ""

    @property
    def cseq(self) -> int:
        return int((self.request.headers.get_first("cseq") or "1").split()[0])

    async def wait_answered(self) -> Dialog:
        """The dialog once answered; raises CallFailed otherwise."""
        return await asyncio.shield(self._answered)

    def cancel(self) -> None:
        """Give up on the call: Failed(487) now, CANCEL sent as soon as RFC 3261 §9.1 allows."""
        self._give_up(487, "Request Terminated")

    def _give_up(self, code: int, reason: str) -> None:
        if self.state not in (OutgoingState.CALLING, OutgoingState.EARLY):
            return
        self._cancel_wanted = True
        self._fail(code, reason)
        if self._got_provisional:
            self._send_cancel()

    def _send_cancel(self) -> None:
        if self._cancel_sent or self._entry is None or self._entry.done:
            return
        self._cancel_sent = True
        cancel = build_cancel(self.request)
        self._ua._start_client(cancel, self._flow, None)

    def _fail(self, code: int, reason: str) -> None:
        if self.state in (OutgoingState.ANSWERED, OutgoingState.FAILED):
            return
        self.state = OutgoingState.FAILED
        self._stop_timeout()
        if not self._answered.done():
            self._answered.set_exception(CallFailed(code, reason))
            self._answered.exception()  # mark retrieved: nobody may await it
        self._emit(Failed(code, reason))
        self._ua._outgoing_settled(self)

    def _stop_timeout(self) -> None:
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None

    def _send(self) -> None:
        self._entry = self._ua._start_client(self.request, self._flow, self._on_txn_event)

    def _on_txn_event(self, event: TUEvent) -> None:
        if isinstance(event, TimedOut):
            self._fail(408, "Request Timeout")
        elif isinstance(event, TransportFailed):
            self._fail(503, "Transport Error")
        elif isinstance(event, ResponseReceived):
            self._on_response(event.response)

    def _on_response(self, resp: SipResponse) -> None:
        code = resp.status_code
        if code < 200:
            self._got_provisional = True  # any 1xx, 100 included, allows CANCEL (§9.1)
            if self._cancel_wanted:
                self._send_cancel()
                return
            if code > 100:
                self.state = OutgoingState.EARLY
                self._emit(Provisional(code, resp.reason_phrase, resp.body or None))
            return
        if code < 300:
            self._on_2xx(resp)
            return
        if code in (401, 407) and not self._cancel_wanted and self._digest is not None:
            auth = self._digest.answer(resp, "INVITE", self.request.uri)
            if auth:
                self._retry_with(auth)
                return
        self._fail(code, resp.reason_phrase)

    def _retry_with(self, auth: list[tuple[str, str]]) -> None:
        req = self.request
        retry = SipRequest(method="INVITE", uri=req.uri, body=req.body)
        retry.headers.append("Via", self._ua._via(self._flow, new_branch()))
        for name, values in req.headers.items():
            if name.lower() in ("via", "authorization", "proxy-authorization"):
                continue
            for value in values:
                retry.headers.append(name, value)
        retry.headers.set_single("CSeq", f"{self.cseq + 1} INVITE")
        for name, value in auth:
            retry.headers.append(name, value)
        self.request = retry
        self._got_provisional = False
        self._send()

    def _on_2xx(self, resp: SipResponse) -> None:
        dialog_id = response_dialog_id(resp)
        if dialog_id is None:
            return
        if self.dialog is not None and self.dialog.id == dialog_id:
            self.dialog._send_ack(self._flow)
            return
        state = DialogState.for_uac(self.request, resp)
        dialog = Dialog(self._ua, state, self._flow if self._flow.reliable else None)
        dialog.outbound = True
        dialog.network_policy = self.network_policy
        dialog._credentials = self._credentials
        ack = state.create_request(
            "ACK",
            via=self._ua._via(self._flow, new_branch()),
            cseq=self.cseq,
            headers=(("User-Agent", self._ua.config.user_agent),),
        )
        for name in ("authorization", "proxy-authorization"):
            for value in self.request.headers.get(name):
                ack.headers.append(name, value)
        dialog._ack_bytes = bytes(ack)
        dialog._send_ack(self._flow)
        if self.dialog is not None or self.state not in (
            OutgoingState.CALLING,
            OutgoingState.EARLY,
        ):
            # a second (forked) answer, or an answer after we gave up: ACK it and hang it up
            self._ua._spawn(dialog._request_quietly("BYE"))
            dialog.terminated = True
            return
        self.dialog = dialog
        dialog._local_sdp = self.request.body
        dialog.remote_sdp = resp.body
        self._ua._add_dialog(dialog)
        self.state = OutgoingState.ANSWERED
        self._stop_timeout()
        self._answered.set_result(dialog)
        self._emit(Answered(dialog, resp.body))
        self._ua._outgoing_settled(self)


# --- the user agent ------------------------------------------------------------------------


class IncomingRequest:
    """An out-of-dialog request (REGISTER) handed to the layer above, answered once."""

    def __init__(self, ua: UserAgent, request: SipRequest, entry: _Entry) -> None:
        self._ua = ua
        self.request = request
        self._entry = entry

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def uri(self) -> str:
        return self.request.uri

    @property
    def source(self) -> tuple[str, int]:
        return self._entry.flow.peer

    @property
    def client_host(self) -> str:
        """The source's host, or behind a trusted proxy the host the proxy received this from."""
        return client_host(self.request, self.source[0], self._ua.config.trusted_proxies)

    @property
    def transport(self) -> str:
        return self._entry.flow.transport

    def headers(self, name: str) -> list[str]:
        return list(self.request.headers.get(name))

    def respond(
        self,
        code: int,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        *,
        to_tag: str | None = None,
    ) -> None:
        self._ua._respond(
            self._entry,
            self._ua._response(self.request, code, reason, to_tag=to_tag, extra=headers),
        )

    @property
    def contact(self) -> str:
        """Our Contact for a dialog this request creates (SUBSCRIBE)."""
        return self._ua._contact(self._entry.flow)


class UserAgent:
    """One SIP endpoint (UDP and/or TCP). Use as ``async with UserAgent(config, on_invite)``."""

    def __init__(
        self,
        config: UAConfig,
        on_invite: Callable[[IncomingInvite], None] | None = None,
    ) -> None:
        self.config = config
        self.on_invite = on_invite
        # REGISTER goes here when set (sip.registrar); else it is answered 405
        self.on_register: Callable[[IncomingRequest], None] | None = None
        # SUBSCRIBE (new or in a subscription dialog) goes here when set (telephony.mwi)
        self.on_subscribe: Callable[[IncomingRequest], None] | None = None
        # out-of-dialog OPTIONS (a proxy's probe): True = take calls (200), False = 503 (draining,
        # full); None: 200 until the user agent closes
        self.accepting_calls: Callable[[], bool] | None = None
        self._transport = TransportLayer(self._on_message)
        self._txns: dict[TxnKey, _Entry] = {}
        self._dialogs: dict[DialogId, Dialog] = {}
        self._incoming: dict[tuple[str, str, str], IncomingInvite] = {}
        self._outgoing: set[OutgoingInvite] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._adv_host, adv_port = parse_hostport(config.advertise, 0)
        self._adv_port: int | None = adv_port or None

    async def __aenter__(self) -> UserAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        udp = parse_hostport(self.config.listen_udp) if self.config.listen_udp else None
        tcp = parse_hostport(self.config.listen_tcp) if self.config.listen_tcp else None
        await self._transport.start(udp, tcp)

    # introspection used by the layer above and by tests

    @property
    def udp_port(self) -> int | None:
        addr = self._transport.udp_address
        return addr[1] if addr else None

    @property
    def tcp_port(self) -> int | None:
        addr = self._transport.tcp_address
        return addr[1] if addr else None

    @property
    def transaction_count(self) -> int:
        return len(self._txns)

    @property
    def dialog_count(self) -> int:
        return len(self._dialogs)

    @property
    def advertised_host(self) -> str:
        return self._adv_host

    # --- outbound ---

    async def invite(
        self,
        request_uri: str,
        from_uri: str,
        to_uri: str,
        sdp_offer: bytes,
        headers: Iterable[tuple[str, str]] = (),
        credentials: Credentials | None = None,
        answer_timeout: float = 60.0,
        outbound_proxy: str | None = None,
        network_policy: NetworkPolicy | None = None,
    ) -> OutgoingInvite:
        """Send an INVITE; returns once it is sent.

        ``answer_timeout``: no final answer by then → CANCEL and Failed(408).
        Failure to reach the next hop is reported as Failed(503).
        ``network_policy``: held to this policy instead of the user agent's (its dialog too).
        """
        if self._draining:
            raise SipStateError("user agent is closing")
        hop = hop_of(outbound_proxy or request_uri)
        from_value = from_uri if "<" in from_uri else f"<{from_uri}>"
        to_value = to_uri if "<" in to_uri else f"<{to_uri}>"
        flow: Flow | None = None
        failure, code = "Transport Error", 503
        try:
            host = await self._permitted_host(hop, network_policy)
            flow = await self._transport.flow_to(host, hop.port, hop.transport)
        except SipTransportError as exc:
            failure = str(exc)
        except AddressBlocked:
            failure, code = "Destination Not Allowed", 403
        req = SipRequest(method="INVITE", uri=request_uri, body=sdp_offer)
        h = req.headers
        h.append("Via", self._via(flow or _DeadFlow(hop), new_branch()))
        h.set_single("Max-Forwards", "70")
        h.set_single("From", f"{from_value};tag={new_tag()}")
        h.set_single("To", to_value)
        h.set_single("Call-ID", new_call_id(self._adv_host))
        h.set_single("CSeq", "1 INVITE")
        h.set_single("Contact", self._contact(flow or _DeadFlow(hop)))
        h.set_single("User-Agent", self.config.user_agent)
        h.set_single("Allow", ALLOW)
        for name, value in headers:
            h.append(name, value)
        if sdp_offer:
            h.set_single("Content-Type", SDP)
        if flow is None:
            out = OutgoingInvite(self, req, _DeadFlow(hop), credentials)
            out._fail(code, failure)
            return out
        out = OutgoingInvite(self, req, flow, credentials)
        out.network_policy = network_policy
        self._outgoing.add(out)
        self._idle.clear()
        loop = asyncio.get_running_loop()
        out._timeout = loop.call_later(answer_timeout, out._give_up, 408, "Request Timeout")
        out._send()
        return out

    async def _permitted_host(self, hop: Hop, override: NetworkPolicy | None = None) -> str:
        """The address to connect to for `hop`: resolved once and checked against the
        network policy (raises AddressBlocked), or the hop's host when there is no policy."""
        policy = override or self.config.network_policy
        if policy is None:
            return hop.host
        ip = literal_address(await self._transport.resolve(hop.host, hop.port, hop.transport))
        if ip is None or not policy.permits(ip):
            raise AddressBlocked()
        return str(ip)

    async def send_request(self, build: Callable[[str, str], SipRequest], hop: Hop) -> SipResponse:
        """A non-INVITE request (NOTIFY) to `hop` in a client transaction of its own:
        `build(via, contact)` makes it; returns the final response (retransmitted over UDP
        per timer E; CallFailed 408 on timer F, 503 when it cannot be sent)."""
        if self._closed:
            raise SipStateError("user agent is closed")
        try:
            flow = await self._transport.flow_to(hop.host, hop.port, hop.transport)
        except SipTransportError as exc:
            raise CallFailed(503, "Transport Error") from exc
        req = build(self._via(flow, new_branch()), self._contact(flow))
        final: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()

        def on_event(event: TUEvent) -> None:
            if final.done():
                return
            if isinstance(event, ResponseReceived) and event.response.status_code >= 200:
                final.set_result(event.response)
            elif isinstance(event, TimedOut):
                final.set_exception(CallFailed(408, "Request Timeout"))
            elif isinstance(event, TransportFailed):
                final.set_exception(CallFailed(503, "Transport Error"))

        self._start_client(req, flow, on_event)
        return await final

    # --- shutdown ---

    async def close(self, drain_timeout: float = 0.0) -> None:
        """Drain (new INVITEs get 503 + Retry-After), hang up what is left, stop listening."""
        if self._closed:
            return
        self._draining = True
        if drain_timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), drain_timeout)
        for incoming in list(self._incoming.values()):
            incoming._cancel("shutdown", code=503)
        for out in list(self._outgoing):
            out.cancel()
        dialogs = list(self._dialogs.values())
        for dialog in dialogs:
            dialog._emit(HangUp("shutdown"))
        byes = [asyncio.ensure_future(d.bye()) for d in dialogs]
        if byes:
            _, pending = await asyncio.wait(byes, timeout=min(2.0, self.config.timers.timeout))
            for task in pending:
                task.cancel()
            await asyncio.gather(*byes, return_exceptions=True)
        self._closed = True
        for entry in list(self._txns.values()):
            self._finish(entry)
        self._txns.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._transport.close()

    # --- plumbing: transactions ---

    def _apply(self, entry: _Entry, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                try:
                    entry.flow.send(action.data)
                except SipTransportError:
                    self._apply(entry, entry.machine.on_transport_error())
                    return
            elif isinstance(action, StartTimer):
                old = entry.handles.pop(action.timer, None)
                if old is not None:
                    old.cancel()
                if not self._closed and self._loop is not None:
                    # A timer re-armed as it fires (A, E, G) counts from when it was due, so
                    # that a late loop does not push the retransmissions past timer B or F.
                    base = self._loop.time()
                    if entry.firing is not None and entry.firing[0] is action.timer:
                        base = entry.firing[1]
                    entry.handles[action.timer] = self._loop.call_at(
                        base + action.delay, self._on_timer, entry, action.timer
                    )
            elif isinstance(action, StopTimer):
                handle = entry.handles.pop(action.timer, None)
                if handle is not None:
                    handle.cancel()
            elif isinstance(action, ToTU):
                if entry.tu is not None:
                    try:
                        entry.tu(action.event)
                    except Exception:
                        logger.exception("SIP transaction user failed")
            elif isinstance(action, Terminate):
                self._finish(entry)

    def _finish(self, entry: _Entry) -> None:
        entry.done = True
        for handle in entry.handles.values():
            handle.cancel()
        entry.handles.clear()
        if self._txns.get(entry.machine.key) is entry:
            del self._txns[entry.machine.key]

    def _on_timer(self, entry: _Entry, timer: Timer) -> None:
        handle = entry.handles.pop(timer, None)
        if not entry.done:
            entry.firing = (timer, handle.when()) if handle is not None else None
            try:
                self._apply(entry, entry.machine.on_timer(timer))
            finally:
                entry.firing = None

    def _start_client(
        self, req: SipRequest, flow: Flow, tu: Callable[[TUEvent], None] | None
    ) -> _Entry:
        branch = top_via(req).branch or ""
        key = client_key(branch, req.method)
        data = bytes(req)
        machine: InviteClientTransaction | NonInviteClientTransaction
        timers = self.config.timers
        if req.method == "INVITE":
            machine = InviteClientTransaction(key, req, data, reliable=flow.reliable, timers=timers)
        else:
            machine = NonInviteClientTransaction(
                key, req, data, reliable=flow.reliable, timers=timers
            )
        entry = _Entry(machine, flow, tu)
        self._txns[key] = entry
        self._apply(entry, machine.start())
        return entry

    async def _send_and_wait(self, req: SipRequest, flow: Flow, dialog: Dialog) -> SipResponse:
        loop = asyncio.get_running_loop()
        final: asyncio.Future[SipResponse] = loop.create_future()

        def on_event(event: TUEvent) -> None:
            if final.done():
                if isinstance(event, ResponseReceived) and 200 <= event.response.status_code < 300:
                    dialog._send_ack(flow)
                return
            if isinstance(event, ResponseReceived):
                if event.response.status_code >= 200:
                    if req.method == "INVITE" and event.response.status_code < 300:
                        self._ack_reinvite(dialog, req, event.response, flow)
                    final.set_result(event.response)
            elif isinstance(event, TimedOut):
                final.set_exception(CallFailed(408, "Request Timeout"))
            elif isinstance(event, TransportFailed):
                final.set_exception(CallFailed(503, "Transport Error"))

        self._start_client(req, flow, on_event)
        return await final

    def _ack_reinvite(self, dialog: Dialog, req: SipRequest, resp: SipResponse, flow: Flow) -> None:
        dialog.state.refresh_target(resp)
        seq = int((req.headers.get_first("cseq") or "0").split()[0])
        ack = dialog.state.create_request("ACK", via=self._via(flow, new_branch()), cseq=seq)
        dialog._ack_bytes = bytes(ack)
        dialog._send_ack(flow)

    def _respond(self, entry: _Entry, resp: SipResponse) -> None:
        machine = entry.machine
        if isinstance(machine, InviteServerTransaction | NonInviteServerTransaction):
            self._apply(entry, machine.respond(bytes(resp), resp.status_code))

    def _trying_unless_answered(self, entry: _Entry, req: SipRequest) -> None:
        """§17.2.1: a 100 Trying unless the INVITE is answered within 200 ms. Most are answered
        at once (a mailbox); behind a proxy, a node that dies before answering then has sent
        nothing, and the proxy gives the call to another node at its failover time, where a 100
        would have made it wait for the dead node's answer."""
        machine = entry.machine

        def trying() -> None:
            unanswered = (
                isinstance(machine, InviteServerTransaction) and machine.last_response is None
            )
            if unanswered and not entry.done and not self._closed:
                self._respond(entry, build_response(req, 100))

        if self._loop is None:
            trying()
        else:
            self._loop.call_later(TRYING_AFTER, trying)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._closed:
            coro.close()
            return
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- plumbing: headers ---

    def _port_for(self, flow: Flow) -> int:
        if self._adv_port is not None:
            return self._adv_port
        port = self.tcp_port if flow.reliable else self.udp_port
        return port or 5060

    def _hostport(self, flow: Flow) -> str:
        host = f"[{self._adv_host}]" if ":" in self._adv_host else self._adv_host
        return f"{host}:{self._port_for(flow)}"

    def _via(self, flow: Flow, branch: str) -> str:
        return f"SIP/2.0/{flow.transport} {self._hostport(flow)};branch={branch};rport"

    def _contact(self, flow: Flow) -> str:
        suffix = ";transport=tcp" if flow.reliable else ""
        return f"<sip:{self.config.contact_user}@{self._hostport(flow)}{suffix}>"

    def _response(
        self,
        req: SipRequest,
        code: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        contact: bool = False,
        flow: Flow | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        copy_record_route: bool = False,
        extra: Iterable[tuple[str, str]] = (),
    ) -> SipResponse:
        headers = [("Server", self.config.user_agent), *extra]
        if contact and flow is not None:
            headers.append(("Contact", self._contact(flow)))
        return build_response(
            req,
            code,
            reason,
            to_tag=to_tag if to_tag is not None else new_tag(),
            headers=headers,
            body=body,
            content_type=content_type,
            copy_record_route=copy_record_route,
        )

    def _options_response(self, req: SipRequest) -> SipResponse:
        return self._response(
            req, 200, extra=(("Allow", ALLOW), ("Accept", SDP), ("Accept-Language", "en"))
        )

    def _probe_response(self, req: SipRequest) -> SipResponse:
        accepting = self.accepting_calls
        if self._draining or self._closed or (accepting is not None and not accepting()):
            retry = (("Retry-After", str(self.config.retry_after)),)
            return self._response(req, 503, extra=retry)
        return self._options_response(req)

    # --- plumbing: bookkeeping ---

    def _add_dialog(self, dialog: Dialog) -> None:
        self._dialogs[dialog.id] = dialog
        self._idle.clear()

    def _remove_dialog(self, dialog: Dialog) -> None:
        if self._dialogs.get(dialog.id) is dialog:
            del self._dialogs[dialog.id]
        self._check_idle()

    def _invite_settled(self, incoming: IncomingInvite) -> None:
        for key, value in list(self._incoming.items()):
            if value is incoming:
                del self._incoming[key]
        self._check_idle()

    def _outgoing_settled(self, out: OutgoingInvite) -> None:
        self._outgoing.discard(out)
        self._check_idle()

    def _check_idle(self) -> None:
        if not self._dialogs and not self._incoming and not self._outgoing:
            self._idle.set()

    # --- incoming messages ---

    def _on_message(self, data: bytes, flow: Flow) -> None:
        try:
            msg = parse_message(data)
        except SipParseError as exc:
            self._answer_malformed(exc, flow)
            return
        try:
            if isinstance(msg, SipResponse):
                self._on_response(msg)
            else:
                self._on_request(msg, flow)
        except Exception:
            logger.exception("SIP message handling failed")

    def _answer_malformed(self, exc: SipParseError, flow: Flow) -> None:
        req = exc.message
        if exc.status is None or not isinstance(req, SipRequest) or req.method == "ACK":
            logger.debug("dropped SIP message: %s", exc.reason)
            return
        try:
            if req.headers.get("via"):
                self._stamp_via(req, flow)
            else:
                return
            resp = self._response(req, exc.status, extra=(("Warning", f'399 - "{exc.reason}"'),))
            flow.send(bytes(resp))
        except (SipTransportError, ValueError, IndexError) as err:
            logger.debug("could not answer malformed SIP message: %s", err)

    def _stamp_via(self, req: SipRequest, flow: Flow) -> Via:
        """RFC 3261 §18.2.1 received, RFC 3581 rport: answers go where the request came from."""
        via = top_via(req)
        src_ip, src_port = flow.peer
        changed = False
        if via.host.strip("[]") != src_ip:
            via.received = src_ip
            changed = True
        if "rport" in via.params:
            via.rport = str(src_port)
            via.received = src_ip
            changed = True
        if changed:
            set_top_via(req, via)
        return via

    def _on_response(self, resp: SipResponse) -> None:
        key = response_key(resp)
        entry = self._txns.get(key) if key is not None else None
        if entry is not None:
            machine = entry.machine
            if isinstance(machine, InviteClientTransaction | NonInviteClientTransaction):
                self._apply(entry, machine.on_response(resp))
            return
        cseq = (resp.headers.get_first("cseq") or "").split()
        if 200 <= resp.status_code < 300 and cseq[-1:] == ["INVITE"]:
            # 2xx retransmission after the client transaction ended: ACK again from the dialog
            dialog_id = response_dialog_id(resp)
            dialog = self._dialogs.get(dialog_id) if dialog_id is not None else None
            if dialog is not None and dialog._ack_flow is not None:
                dialog._send_ack(dialog._ack_flow)

    def _on_request(self, req: SipRequest, flow: Flow) -> None:
        via = self._stamp_via(req, flow)
        key = server_key(req, via)
        entry = self._txns.get(key)
        method = req.method
        if entry is not None:
            machine = entry.machine
            if method == "ACK":
                if isinstance(machine, InviteServerTransaction):
                    self._apply(entry, machine.on_ack(req))
            elif isinstance(machine, InviteServerTransaction | NonInviteServerTransaction):
                self._apply(entry, machine.on_retransmission())
            return
        if method == "ACK":
            self._on_2xx_ack(req)
            return
        server: InviteServerTransaction | NonInviteServerTransaction
        timers = self.config.timers
        if method == "INVITE":
            server = InviteServerTransaction(key, reliable=flow.reliable, timers=timers)
        else:
            server = NonInviteServerTransaction(key, reliable=flow.reliable, timers=timers)
        entry = _Entry(server, flow, None)
        self._txns[key] = entry
        if method == "CANCEL":
            self._on_cancel(req, key, entry)
            return
        status = self._precheck(req)
        if status is not None:
            code, extra = status
            self._respond(entry, self._response(req, code, extra=extra))
            return
        if method == "INVITE":
            self._trying_unless_answered(entry, req)
        if method == "SUBSCRIBE" and self.on_subscribe is not None:
            self.on_subscribe(IncomingRequest(self, req, entry))
            return
        if header_tag(req.headers.get_first("to")):
            dialog_id = request_dialog_id(req)
            dialog = self._dialogs.get(dialog_id) if dialog_id is not None else None
            if dialog is None:
                self._respond(entry, self._response(req, 481))
            else:
                dialog._on_request(req, entry)
            return
        if method == "INVITE":
            self._on_new_invite(req, entry)
        elif method == "OPTIONS":
            self._respond(entry, self._probe_response(req))
        elif method == "REGISTER" and self.on_register is not None:
            self.on_register(IncomingRequest(self, req, entry))
        elif method in ("BYE", "INFO"):
            self._respond(entry, self._response(req, 481))
        else:
            self._respond(entry, self._response(req, 405, extra=(("Allow", ALLOW),)))

    def _precheck(self, req: SipRequest) -> tuple[int, tuple[tuple[str, str], ...]] | None:
        mf = req.headers.get_first("max-forwards")
        if mf is not None and int(mf) == 0 and req.method != "OPTIONS":
            return 483, ()
        require = [r.strip() for v in req.headers.get("require") for r in v.split(",")]
        if require and req.method not in ("ACK", "CANCEL"):
            return 420, (("Unsupported", ", ".join(r for r in require if r)),)
        return None

    def _on_2xx_ack(self, req: SipRequest) -> None:
        dialog_id = request_dialog_id(req)
        dialog = self._dialogs.get(dialog_id) if dialog_id is not None else None
        if dialog is None or dialog._pending_ist is None:
            return
        seq = int((req.headers.get_first("cseq") or "0").split()[0])
        if seq != dialog._pending_cseq:
            return
        entry = dialog._pending_ist
        if isinstance(entry.machine, InviteServerTransaction):
            self._apply(entry, entry.machine.on_ack(req))

    def _on_cancel(self, req: SipRequest, key: TxnKey, entry: _Entry) -> None:
        invite_entry = self._txns.get((key[0], key[1], "INVITE"))
        if invite_entry is None:
            self._respond(entry, self._response(req, 481))
            return
        self._respond(entry, self._response(req, 200))
        tu = invite_entry.tu
        incoming = getattr(tu, "__self__", None)
        if isinstance(incoming, IncomingInvite):
            incoming._cancel("CANCEL")

    def _on_new_invite(self, req: SipRequest, entry: _Entry) -> None:
        if self._draining or self._closed:
            retry = (("Retry-After", str(self.config.retry_after)),)
            self._respond(entry, self._response(req, 503, extra=retry))
            return
        ctype = (req.content_type or SDP).split(";", 1)[0].strip().lower()
        if req.body and ctype != SDP:
            self._respond(entry, self._response(req, 415, extra=(("Accept", SDP),)))
            return
        merge_key = (
            req.headers.get_first("call-id") or "",
            header_tag(req.headers.get_first("from")) or "",
            (req.headers.get_first("cseq") or "").split()[0],
        )
        if merge_key in self._incoming:
            self._respond(entry, self._response(req, 482))
            return
        if self.on_invite is None:
            self._respond(entry, self._response(req, 480))
            return
        incoming = IncomingInvite(self, req, entry)
        entry.tu = incoming._on_txn_event
        self._incoming[merge_key] = incoming
        self._idle.clear()
        if self._loop is not None:
            incoming._ring_timer = self._loop.call_later(
                self.config.ring_timeout, incoming._cancel, "ring-timeout", 480
            )
        try:
            self.on_invite(incoming)
        except Exception:
            logger.exception("on_invite handler failed")
            incoming.reject(500)


class _DeadFlow(Flow):
    """Stands in for a flow that could not be opened; every send fails."""

    def __init__(self, hop: Hop) -> None:
        self._hop = hop
        self.transport = hop.transport
        self.reliable = hop.transport == "TCP"

    @property
    def peer(self) -> tuple[str, int]:
        return (self._hop.host, self._hop.port)

    @property
    def closed(self) -> bool:
        return True

    def send(self, data: bytes) -> None:
        raise SipTransportError("no flow")
