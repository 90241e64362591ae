"""SIP message parsing with strict validation, and builders for the messages we generate.

Parsing and serialising are aiosipua's (`SipMessage.parse`, `bytes(msg)`, the header codecs).
aiosipua's parser is lenient: it accepts a bad version, a Request-Line with extra spaces,
a Content-Length larger than the body, two Call-IDs, a CSeq whose method differs from the
request's. `parse_message` adds the checks of RFC 3261 §7/§8.2 and the RFC 4475 cases on
top, so a malformed message becomes a `SipParseError` carrying the status to answer with.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from aiosipua.headers import Via, parse_address, parse_via, stringify_via
from aiosipua.message import SipMessage, SipRequest, SipResponse

from afterbeep.telephony.sip.errors import SipParseError

__all__ = [
    "BRANCH_COOKIE",
    "REASON_PHRASES",
    "SipRequest",
    "SipResponse",
    "build_cancel",
    "build_non2xx_ack",
    "build_response",
    "header_tag",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_message",
    "top_via",
    "uri_of",
]

BRANCH_COOKIE = "z9hG4bK"
SIP_VERSION = "SIP/2.0"
MAX_CSEQ = 2**31 - 1
MAX_MAX_FORWARDS = 255
MAX_EXPIRES = 2**32 - 1

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "Version Not Supported",
    603: "Decline",
}

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_REQUEST_LINE = re.compile(rf"({_TOKEN}) ([^\s<>]+) (SIP/\d+\.\d+)")
_STATUS_LINE = re.compile(r"(SIP/\d+\.\d+) (\d{3}) ?(.*)")
_HEADER_NAME = re.compile(_TOKEN)
_CSEQ = re.compile(rf"(\d{{1,10}})[ \t]+({_TOKEN})")
_DIGITS = re.compile(r"\d{1,10}")
_DISPLAY_TOKENS = re.compile(rf"{_TOKEN}(?:[ \t]+{_TOKEN})*")
_SINGLE_HEADERS = (
    "call-id",
    "cseq",
    "from",
    "to",
    "max-forwards",
    "content-length",
    "content-type",
)
_MANDATORY = ("via", "from", "to", "call-id", "cseq")
_KNOWN_SCHEMES = ("sip", "sips", "tel")


def new_branch() -> str:
    return f"{BRANCH_COOKIE}{os.urandom(10).hex()}"


def new_tag() -> str:
    return os.urandom(6).hex()


def new_call_id(host: str) -> str:
    return f"{os.urandom(12).hex()}@{host}"


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse and validate one complete SIP message (one datagram or one framed stream message).

    Raises SipParseError: ``status`` is 400/416/505 when a request can be answered,
    ``None`` when the message must be dropped (responses, unparseable start line).
    """
    stripped = data.lstrip(b"\r\n")
    if not stripped:
        raise SipParseError("empty message", status=None)
    end = stripped.find(b"\r\n\r\n")
    sep_len = 4
    if end == -1:
        end = stripped.find(b"\n\n")
        sep_len = 2
    if end == -1:
        raise SipParseError("no end of headers", status=None)
    head = stripped[:end]
    if b"\x00" in head:
        raise SipParseError("NUL in headers", status=None)
    first_eol = head.find(b"\n")
    start_line = (
        (head if first_eol == -1 else head[:first_eol])
        .rstrip(b"\r")
        .decode("utf-8", errors="replace")
    )
    is_response = start_line.startswith("SIP/")
    try:
        msg = SipMessage.parse(stripped)
    except (ValueError, IndexError) as exc:
        raise SipParseError(f"unparseable: {exc}", status=None) from exc

    try:
        if is_response:
            _check_status_line(start_line)
        else:
            _check_request_line(start_line, msg)
        _check_header_lines(head, first_eol)
        _check_headers(msg, len(stripped) - end - sep_len)
    except SipParseError as exc:
        if is_response:
            exc.status = None
        exc.message = msg
        raise
    return msg


def _check_status_line(line: str) -> None:
    m = _STATUS_LINE.fullmatch(line)
    if m is None or m.group(1).upper() != SIP_VERSION:
        raise SipParseError("bad status line", status=None)
    code = int(m.group(2))
    if not 100 <= code <= 699:
        raise SipParseError("status code out of range", status=None)


def _check_request_line(line: str, msg: SipRequest | SipResponse) -> None:
    m = _REQUEST_LINE.fullmatch(line)
    if m is None or not isinstance(msg, SipRequest):
        raise SipParseError("bad Request-Line", status=400)
    if m.group(3).upper() != SIP_VERSION:
        raise SipParseError("unsupported SIP version", status=505)
    uri = m.group(2)
    scheme, colon, rest = uri.partition(":")
    if not colon or not rest:
        raise SipParseError("bad Request-URI", status=400)
    if scheme.lower() not in _KNOWN_SCHEMES:
        raise SipParseError("unsupported URI scheme", status=416)
    if scheme.lower() != "tel":
        host = rest.split(";", 1)[0].rpartition("@")[2]
        if "?" in rest or not host:
            raise SipParseError("headers or empty host in Request-URI", status=400)


def _check_header_lines(head: bytes, first_eol: int) -> None:
    if first_eol == -1:
        return
    for raw in head[first_eol + 1 :].split(b"\n"):
        line = raw.rstrip(b"\r")
        if not line or line[:1] in (b" ", b"\t"):
            continue
        name, colon, _ = line.partition(b":")
        if not colon or _HEADER_NAME.fullmatch(name.strip().decode("utf-8", "replace")) is None:
            raise SipParseError("malformed header line", status=400)


def _check_headers(msg: SipRequest | SipResponse, body_len: int) -> None:
    headers = msg.headers
    for name in _MANDATORY:
        if not headers.get(name):
            raise SipParseError(f"missing {name}", status=400)
    for name in _SINGLE_HEADERS:
        if len(headers.get(name)) > 1:
            raise SipParseError(f"more than one {name}", status=400)

    cseq = _CSEQ.fullmatch(headers.get("cseq")[0].strip())
    if cseq is None or int(cseq.group(1)) > MAX_CSEQ:
        raise SipParseError("bad CSeq", status=400)
    if isinstance(msg, SipRequest) and cseq.group(2) != msg.method:
        raise SipParseError("CSeq method differs from the request method", status=400)

    for raw_via in headers.get("via"):
        via = _parse_via_strict(raw_via)
        if via is None:
            raise SipParseError("bad Via", status=400)

    for name in ("from", "to"):
        _check_address(headers.get(name)[0])

    mf = headers.get_first("max-forwards")
    if mf is not None and (_DIGITS.fullmatch(mf.strip()) is None or int(mf) > MAX_MAX_FORWARDS):
        raise SipParseError("bad Max-Forwards", status=400)
    expires = headers.get_first("expires")
    if expires is not None and (
        _DIGITS.fullmatch(expires.strip()) is None or int(expires) > MAX_EXPIRES
    ):
        raise SipParseError("bad Expires", status=400)
    cl = headers.get_first("content-length")
    if cl is not None:
        if _DIGITS.fullmatch(cl.strip()) is None:
            raise SipParseError("bad Content-Length", status=400)
        if int(cl) > body_len:
            raise SipParseError("Content-Length larger than the body", status=400)


def _parse_via_strict(raw: str) -> Via | None:
    proto, _, rest = raw.strip().partition(" ")
    parts = proto.split("/")
    if len(parts) != 3 or f"{parts[0]}/{parts[1]}".upper() != SIP_VERSION or not parts[2]:
        return None
    sent_by = rest.strip().split(";", 1)[0].strip()
    host, _, port = sent_by.rpartition(":") if not sent_by.endswith("]") else (sent_by, "", "")
    if not host:
        host, port = sent_by, ""
    if not host or any(c in host for c in ' <>"') or (port and not port.isdigit()):
        return None
    if port and int(port) > 65535:
        return None
    via = parse_via(raw)
    return via if via.host else None


def _check_address(raw: str) -> None:
    text = raw.strip()
    if _unbalanced_quotes(text):
        raise SipParseError("unterminated quoted string", status=400)
    lt = _find_unquoted(text, "<")
    if lt != -1:
        display = text[:lt].strip()
        quoted = display.startswith('"') and display.endswith('"')
        if display and not quoted and _DISPLAY_TOKENS.fullmatch(display) is None:
            raise SipParseError("invalid display name", status=400)
        if text.find(">", lt) == -1:
            raise SipParseError("unterminated <", status=400)
    elif " " in text.split(";", 1)[0].strip() or "," in text:
        raise SipParseError("bad addr-spec", status=400)
    addr = parse_address(text)
    if not addr.uri.host and addr.uri.scheme != "tel":
        raise SipParseError("address without host", status=400)


def _unbalanced_quotes(text: str) -> bool:
    inside = False
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and inside:
            escaped = True
        elif ch == '"':
            inside = not inside
    return inside


def _find_unquoted(text: str, target: str) -> int:
    inside = False
    for i, ch in enumerate(text):
        if ch == '"':
            inside = not inside
        elif ch == target and not inside:
            return i
    return -1


def top_via(msg: SipMessage) -> Via:
    values = msg.headers.get("via")
    if not values:
        raise SipParseError("no Via", status=None)
    return parse_via(values[0])


def header_tag(value: str | None) -> str | None:
    """The ``tag`` parameter of a From/To header value."""
    if value is None:
        return None
    return parse_address(value).tag


def uri_of(value: str) -> str:
    """The URI inside a name-addr / addr-spec header value, without header parameters."""
    text = value.strip()
    lt = _find_unquoted(text, "<")
    if lt != -1:
        gt = text.find(">", lt)
        return text[lt + 1 : gt if gt != -1 else len(text)]
    return text.split(";", 1)[0].strip()


def build_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
    copy_record_route: bool = False,
) -> SipResponse:
    """A response to ``request`` per RFC 3261 §8.2.6.2.

    The To tag is added only when the request's To has none (a retransmitted BYE keeps one tag).
    """
    resp = SipResponse(status_code=status, reason_phrase=reason or REASON_PHRASES.get(status, ""))
    h = resp.headers
    src = request.headers
    for via in src.get("via"):
        h.append("Via", via)
    if copy_record_route:
        for rr in src.get("record-route"):
            h.append("Record-Route", rr)
    for name in ("From", "Call-ID", "CSeq"):
        value = src.get_first(name)
        if value is not None:
            h.set_single(name, value)
    to = src.get_first("to")
    if to is not None:
        if to_tag is not None and status != 100 and header_tag(to) is None:
            to = f"{to};tag={to_tag}"
        h.set_single("To", to)
    if status == 100 and (ts := src.get_first("timestamp")) is not None:
        h.set_single("Timestamp", ts)
    for name, value in headers:
        h.append(name, value)
    if body:
        resp.body = body
        if content_type is not None:
            h.set_single("Content-Type", content_type)
    return resp


def build_non2xx_ack(invite: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK a client INVITE transaction sends for a 300-699 (RFC 3261 §17.1.1.3)."""
    ack = SipRequest(method="ACK", uri=invite.uri)
    h = ack.headers
    h.append("Via", invite.headers.get("via")[0])
    for name in ("Max-Forwards", "From", "Call-ID"):
        value = invite.headers.get_first(name)
        if value is not None:
            h.set_single(name, value)
    to = response.headers.get_first("to") or invite.headers.get_first("to") or ""
    h.set_single("To", to)
    seq = (invite.headers.get_first("cseq") or "1 INVITE").split()[0]
    h.set_single("CSeq", f"{seq} ACK")
    for route in invite.headers.get("route"):
        h.append("Route", route)
    return ack


def build_cancel(invite: SipRequest) -> SipRequest:
    """CANCEL for a pending INVITE (RFC 3261 §9.1): same branch, URI, Call-ID, From, To, CSeq number."""
    cancel = SipRequest(method="CANCEL", uri=invite.uri)
    h = cancel.headers
    h.append("Via", invite.headers.get("via")[0])
    for name in ("Max-Forwards", "From", "To", "Call-ID"):
        value = invite.headers.get_first(name)
        if value is not None:
            h.set_single(name, value)
    seq = (invite.headers.get_first("cseq") or "1 INVITE").split()[0]
    h.set_single("CSeq", f"{seq} CANCEL")
    for route in invite.headers.get("route"):
        h.append("Route", route)
    return cancel


def set_top_via(msg: SipMessage, via: Via) -> None:
    values = msg.headers.get("via")
    rest = list(values[1:])
    msg.headers.remove("via")
    msg.headers.append("Via", stringify_via(via))
    for v in rest:
        msg.headers.append("Via", v)
