"""Dialog state (RFC 3261 §12): identity, CSeq counters, remote target and route set.

Pure: builds in-dialog requests and checks incoming ones, sends nothing. aiosipua has a
dialog module, but it is tied to its transaction handling; this one is ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiosipua.headers import parse_address, parse_uri, stringify_address
from aiosipua.message import SipRequest, SipResponse

from afterbeep.telephony.sip.message import header_tag, uri_of

DialogId = tuple[str, str, str]  # (Call-ID, local tag, remote tag)


@dataclass(frozen=True, slots=True)
class Hop:
    """Where to send a request: host (name or IP literal, no brackets), port, transport."""

    host: str
    port: int
    transport: str  # "UDP" or "TCP"


def hop_of(uri: str) -> Hop:
    """Next hop of a SIP URI (maddr, port, transport parameters; no DNS SRV)."""
    parsed = parse_uri(uri)
    transport = (parsed.params.get("transport") or "udp").upper()
    host = parsed.params.get("maddr") or parsed.host
    default = 5061 if parsed.scheme == "sips" else 5060
    return Hop(host.strip("[]"), parsed.port or default, "TCP" if transport == "TCP" else "UDP")


def without_tag(value: str) -> str:
    addr = parse_address(value)
    addr.tag = None
    return stringify_address(addr)


def request_dialog_id(request: SipRequest) -> DialogId | None:
    """The dialog id an incoming in-dialog request names, seen from our (UAS) side."""
    to_tag = header_tag(request.headers.get_first("to"))
    from_tag = header_tag(request.headers.get_first("from"))
    call_id = request.headers.get_first("call-id")
    if not to_tag or call_id is None:
        return None
    return (call_id, to_tag, from_tag or "")


def response_dialog_id(response: SipResponse) -> DialogId | None:
    """The dialog id of a response to a request we sent (we are the UAC)."""
    from_tag = header_tag(response.headers.get_first("from"))
    to_tag = header_tag(response.headers.get_first("to"))
    call_id = response.headers.get_first("call-id")
    if not from_tag or call_id is None:
        return None
    return (call_id, from_tag, to_tag or "")


def _cseq_number(msg: SipRequest | SipResponse) -> int:
    raw = msg.headers.get_first("cseq") or "0"
    return int(raw.split()[0])


@dataclass(slots=True)
class DialogState:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: list[str] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    is_uac: bool = False

    @classmethod
    def for_uas(cls, invite: SipRequest, local_tag: str) -> DialogState:
        """UAS side: route set is Record-Route in order, remote target the INVITE's Contact."""
        h = invite.headers
        contact = h.get_first("contact")
        return cls(
            call_id=h.get_first("call-id") or "",
            local_tag=local_tag,
            remote_tag=header_tag(h.get_first("from")) or "",
            local_uri=without_tag(h.get_first("to") or ""),
            remote_uri=without_tag(h.get_first("from") or ""),
            remote_target=uri_of(contact) if contact else invite.uri,
            route_set=list(h.get("record-route")),
            local_seq=0,
            remote_seq=_cseq_number(invite),
            is_uac=False,
        )

    @classmethod
    def for_uac(cls, invite: SipRequest, response: SipResponse) -> DialogState:
        """UAC side: route set is the response's Record-Route reversed."""
        h = response.headers
        contact = h.get_first("contact")
        return cls(
            call_id=h.get_first("call-id") or "",
            local_tag=header_tag(h.get_first("from")) or "",
            remote_tag=header_tag(h.get_first("to")) or "",
            local_uri=without_tag(h.get_first("from") or ""),
            remote_uri=without_tag(h.get_first("to") or ""),
            remote_target=uri_of(contact) if contact else invite.uri,
            route_set=list(reversed(h.get("record-route"))),
            local_seq=_cseq_number(invite),
            remote_seq=None,
            is_uac=True,
        )

    @property
    def id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag)

    def _loose(self) -> bool:
        return not self.route_set or "lr" in parse_uri(uri_of(self.route_set[0])).params

    def next_hop_uri(self) -> str:
        """The URI whose host:port receives our in-dialog requests (§12.2.1.1, §8.1.2)."""
        if self.route_set:
            return uri_of(self.route_set[0])
        return self.remote_target

    def create_request(
        self,
        method: str,
        *,
        via: str,
        contact: str | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        cseq: int | None = None,
        max_forwards: int = 70,
    ) -> SipRequest:
        """An in-dialog request. ACK passes the INVITE's ``cseq``; others take the next number."""
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        if self._loose():
            uri = self.remote_target
            routes = list(self.route_set)
        else:
            uri = uri_of(self.route_set[0])
            routes = [*self.route_set[1:], f"<{self.remote_target}>"]
        req = SipRequest(method=method, uri=uri)
        h = req.headers
        h.append("Via", via)
        h.set_single("Max-Forwards", str(max_forwards))
        h.set_single("From", f"{self.local_uri};tag={self.local_tag}")
        to = self.remote_uri if not self.remote_tag else f"{self.remote_uri};tag={self.remote_tag}"
        h.set_single("To", to)
        h.set_single("Call-ID", self.call_id)
        h.set_single("CSeq", f"{cseq} {method}")
        for route in routes:
            h.append("Route", route)
        if contact is not None:
            h.set_single("Contact", contact)
        for name, value in headers:
            h.append(name, value)
        if body:
            req.body = body
            if content_type is not None:
                h.set_single("Content-Type", content_type)
        return req

    def accept_remote_cseq(self, request: SipRequest) -> bool:
        """§12.2.2: a CSeq lower than the last one seen is out of order (answer 500)."""
        seq = _cseq_number(request)
        if request.method in ("ACK", "CANCEL"):
            return True
        if self.remote_seq is not None and seq < self.remote_seq:
            return False
        self.remote_seq = seq
        return True

    def refresh_target(self, msg: SipRequest | SipResponse) -> None:
        """A target refresh (re-INVITE or its 2xx) replaces the remote target."""
        contact = msg.headers.get_first("contact")
        if contact:
            self.remote_target = uri_of(contact)
