"""Which INVITEs come from a caller hiding its identity (a number may refuse them with 403)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from afterbeep.telephony.inbound import anonymous_caller
from afterbeep.telephony.sip import IncomingInvite
from afterbeep.telephony.sip.message import SipRequest, parse_message


def invite(from_: str, *extra: str) -> IncomingInvite:
    lines = [
        "INVITE sip:2025550100@127.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1",
        f"From: {from_};tag=1",
        "To: <sip:2025550100@127.0.0.1>",
        "Call-ID: a@b",
        "CSeq: 1 INVITE",
        "Max-Forwards: 70",
        *extra,
        "Content-Length: 0",
    ]
    request = parse_message("\r\n".join(lines).encode() + b"\r\n\r\n")
    assert isinstance(request, SipRequest)
    fake = SimpleNamespace(request=request, from_header=request.headers.get_first("from"))
    return cast(IncomingInvite, fake)


@pytest.mark.parametrize(
    ("from_", "extra", "anonymous"),
    [
        ('"Alice" <sip:+12025550123@carrier.example>', (), False),
        ("<sip:+12025550123@carrier.example>", ("Privacy: none",), False),
        ("<tel:+12025550123>", (), False),
        ('"Anonymous" <sip:anonymous@anonymous.invalid>', (), True),
        ("<sip:Anonymous@carrier.example>", (), True),
        ("<sip:restricted@carrier.example>", (), True),
        ("<sip:+12025550123@carrier.example>", ("Privacy: id",), True),
        ("<sip:+12025550123@carrier.example>", ("Privacy: id;critical",), True),
        ("<sip:+12025550123@carrier.example>", ("Privacy: user",), True),
        ("<sip:+12025550123@carrier.example>", ("Privacy: header",), False),
        ("<sip:carrier.example>", (), True),
    ],
)
def test_anonymous_callers(from_: str, extra: tuple[str, ...], anonymous: bool) -> None:
    assert anonymous_caller(invite(from_, *extra)) is anonymous
