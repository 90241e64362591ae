"""Malformed and torture messages (after RFC 4475 §3.1.2 and §3.3): 4xx/505 or dropped.

The UA must stay healthy (OPTIONS still answered) and leave no transaction behind.
BRANCH and PEER are replaced per message; each case gets its own branch.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from afterbeep.telephony.sip.ua import UserAgent

from .conftest import make_config
from .peer import RawPeer, status_of

_HEAD = (
    b"Via: SIP/2.0/UDP 127.0.0.1:PEER;branch=BRANCH\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:caller@example.com>;tag=9fxced76sl\r\n"
    b"To: <sip:vm@127.0.0.1>\r\n"
)
_ID = b"Call-ID: torture-BRANCH@example.com\r\n"


def _msg(start: bytes, headers: bytes, body: bytes = b"") -> bytes:
    return start + b"\r\n" + headers + b"\r\n" + body


def _invite(extra: bytes = b"", *, cseq: bytes = b"CSeq: 1 INVITE\r\n", body: bytes = b"") -> bytes:
    length = b"Content-Length: %d\r\n" % len(body) if b"Content-Length" not in extra else b""
    return _msg(b"INVITE sip:vm@127.0.0.1 SIP/2.0", _HEAD + _ID + cseq + extra + length, body)


SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"

# name -> (bytes, accepted answers; None = dropped)
CASES: dict[str, tuple[bytes, set[int | None]]] = {
    "clerr: Content-Length larger than the body": (
        _invite(b"Content-Length: 9999\r\nContent-Type: application/sdp\r\n", body=SDP),
        {400},
    ),
    "ncl: negative Content-Length": (_invite(b"Content-Length: -999\r\n"), {400}),
    "scalar02: overlarge CSeq and Max-Forwards": (
        _msg(
            b"REGISTER sip:127.0.0.1 SIP/2.0",
            _HEAD.replace(b"Max-Forwards: 70", b"Max-Forwards: 300")
            + _ID
            + b"CSeq: 36893488147419103232 REGISTER\r\nContent-Length: 0\r\n",
        ),
        {400},
    ),
    "quotbal: unterminated quoted display name": (
        _msg(
            b"INVITE sip:vm@127.0.0.1 SIP/2.0",
            _HEAD.replace(b"To: <sip:vm@127.0.0.1>", b'To: "Mr. J. User <sip:j.user@example.com>')
            + _ID
            + b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n",
        ),
        {400},
    ),
    "ltgtruri: <> around the Request-URI": (
        _msg(
            b"INVITE <sip:vm@127.0.0.1> SIP/2.0",
            _HEAD + _ID + b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n",
        ),
        {400},
    ),
    "lwsruri: LWS inside the Request-URI": (
        _msg(
            b"INVITE sip:vm@127.0.0.1; lr SIP/2.0",
            _HEAD + _ID + b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n",
        ),
        {400},
    ),
    "lwsstart: several spaces in the Request-Line": (
        _msg(
            b"INVITE  sip:vm@127.0.0.1  SIP/2.0",
            _HEAD + _ID + b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n",
        ),
        {400},
    ),
    "trws: space at the end of the Request-Line": (
        _msg(
            b"OPTIONS sip:vm@127.0.0.1 SIP/2.0 ",
            _HEAD + _ID + b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n",
        ),
        {400},
    ),
    "escruri: escaped headers in the Request-URI": (
        _msg(
            b"INVITE sip:vm@127.0.0.1?Route=%3Csip:example.com%3E SIP/2.0",
            _HEAD + _ID + b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n",
        ),
        {400},
    ),
    "baddn: non-token characters in an unquoted display name": (
        _msg(
            b"OPTIONS sip:vm@127.0.0.1 SIP/2.0",
            _HEAD.replace(
                b"From: <sip:caller@example.com>",
                b"From: Bell, Alexander <sip:a.g.bell@bell-tel.com>",
            )
            + _ID
            + b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n",
        ),
        {400},
    ),
    "badvers: unknown protocol version": (
        _msg(
            b"OPTIONS sip:vm@127.0.0.1 SIP/7.0",
            _HEAD + _ID + b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n",
        ),
        {505, 400},
    ),
    "mismatch01: CSeq method differs from the method": (
        _msg(
            b"OPTIONS sip:vm@127.0.0.1 SIP/2.0",
            _HEAD + _ID + b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n",
        ),
        {400},
    ),
    "mismatch02: unknown method with a CSeq mismatch": (
        _msg(
            b"NEWMETHOD sip:vm@127.0.0.1 SIP/2.0",
            _HEAD + _ID + b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n",
        ),
        {400},
    ),
    "bigcode: response with an overlarge status code": (
        _msg(
            b"SIP/2.0 4294967301 better not break the receiver",
            _HEAD + _ID + b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n",
        ),
        {None},
    ),
    "insuf: Call-ID, From and To missing": (
        _msg(
            b"INVITE sip:vm@127.0.0.1 SIP/2.0",
            b"Via: SIP/2.0/UDP 127.0.0.1:PEER;branch=BRANCH\r\nMax-Forwards: 70\r\n"
            b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n",
        ),
        {400},
    ),
    "unkscm: unknown Request-URI scheme": (
        _msg(
            b"OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0",
            _HEAD + _ID + b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n",
        ),
        {416, 400},
    ),
    "multi01: two Call-IDs and two CSeqs": (
        _msg(
            b"INVITE sip:vm@127.0.0.1 SIP/2.0",
            _HEAD
            + _ID
            + b"Call-ID: other@example.com\r\nCSeq: 1 INVITE\r\nCSeq: 2 INVITE\r\n"
            + b"Content-Length: 0\r\n",
        ),
        {400},
    ),
    "mcl01: two Content-Length values": (
        _invite(b"Content-Length: 0\r\nContent-Length: 4\r\n"),
        {400},
    ),
    "header line without a colon": (_invite(b"This is not a header\r\n"), {400}),
    "Via with an impossible port": (
        _msg(
            b"OPTIONS sip:vm@127.0.0.1 SIP/2.0",
            _HEAD
            + b"Via: SIP/2.0/UDP 127.0.0.1:99999;branch=z9hG4bKx\r\n"
            + _ID
            + b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n",
        ),
        {400},
    ),
    "Max-Forwards not a number": (
        _invite(cseq=b"CSeq: 1 INVITE\r\nMax-Forwards: ten\r\n"),
        {400},
    ),
    "invut: unsupported Content-Type on INVITE": (
        _invite(b"Content-Type: application/unknownformat\r\n", body=b"<glorp/>"),
        {415},
    ),
    "Max-Forwards zero": (
        _invite().replace(b"Max-Forwards: 70", b"Max-Forwards: 0"),
        {483},
    ),
    "unknown Require option": (_invite(b"Require: nothingweknow\r\n"), {420}),
    "BYE outside any dialog": (
        _msg(
            b"BYE sip:vm@127.0.0.1 SIP/2.0",
            _HEAD.replace(b"To: <sip:vm@127.0.0.1>", b"To: <sip:vm@127.0.0.1>;tag=nosuch")
            + _ID
            + b"CSeq: 2 BYE\r\nContent-Length: 0\r\n",
        ),
        {481},
    ),
    "CANCEL matching nothing": (
        _msg(
            b"CANCEL sip:vm@127.0.0.1 SIP/2.0",
            _HEAD + _ID + b"CSeq: 1 CANCEL\r\nContent-Length: 0\r\n",
        ),
        {481},
    ),
    "garbage bytes": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 BRANCH PEER", {None}),
    "NUL inside the headers": (_invite(b"Subject: a\x00b\r\n"), {None}),
    "no end of headers": (_invite().replace(b"\r\n\r\n", b"\r\n"), {None}),
    "CRLF keep-alive": (b"\r\n\r\n", {None}),
    "ACK matching nothing": (
        _msg(
            b"ACK sip:vm@127.0.0.1 SIP/2.0", _HEAD + _ID + b"CSeq: 1 ACK\r\nContent-Length: 0\r\n"
        ),
        {None},
    ),
    "valid oddities: compact forms, folding, case (wsinv-like) is answered 200": (
        b"OPTIONS sip:vm@127.0.0.1 SIP/2.0\r\n"
        b"v:  SIP/2.0/UDP 127.0.0.1:PEER ;branch=BRANCH\r\n"
        b"max-forwards: 68\r\n"
        b"f: <sip:caller@example.com>\r\n  ;tag=abc\r\n"
        b"t: <sip:vm@127.0.0.1>\r\n"
        b"i: odd-BRANCH\r\n"
        b"cseq:   8\r\n   OPTIONS\r\n"
        b"l: 0\r\n\r\n",
        {200},
    ),
}

_counter = itertools.count()


@pytest.fixture
async def ua() -> AsyncIterator[UserAgent]:
    agent = UserAgent(make_config(t1=0.01))
    await agent.start()
    try:
        yield agent
    finally:
        await agent.close()


@pytest.mark.parametrize("name", list(CASES))
async def test_torture_message(name: str, ua: UserAgent) -> None:
    data, expected = CASES[name]
    peer = await RawPeer.open()
    try:
        branch = f"z9hG4bK-torture-{next(_counter)}"
        port = ua.udp_port
        assert port is not None
        peer.send(
            data.replace(b"BRANCH", branch.encode()).replace(b"PEER", b"%d" % peer.port), port
        )
        wait = 1.0 if None not in expected else 0.3
        answer = await peer.response(branch, timeout=wait)
        assert status_of(answer) in expected, answer

        # still healthy: a plain OPTIONS gets 200
        check = f"z9hG4bK-health-{next(_counter)}"
        options = _msg(
            b"OPTIONS sip:vm@127.0.0.1 SIP/2.0",
            _HEAD + _ID + b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n",
        )
        peer.send(
            options.replace(b"BRANCH", check.encode()).replace(b"PEER", b"%d" % peer.port), port
        )
        assert status_of(await peer.response(check, timeout=2.0)) == 200

        # nothing stuck: every transaction ends by 64*T1 (0.64 s here) plus timer I/K slack
        async with asyncio.timeout(5):
            while ua.transaction_count or ua.dialog_count:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        peer.close()


async def test_all_torture_messages_in_a_burst_leave_the_ua_clean(ua: UserAgent) -> None:
    peer = await RawPeer.open()
    port = ua.udp_port
    assert port is not None
    try:
        for i, (data, _) in enumerate(CASES.values()):
            branch = f"z9hG4bK-burst-{i}".encode()
            peer.send(data.replace(b"BRANCH", branch).replace(b"PEER", b"%d" % peer.port), port)
        check = "z9hG4bK-burst-health"
        options = _msg(
            b"OPTIONS sip:vm@127.0.0.1 SIP/2.0",
            _HEAD + _ID + b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n",
        )
        peer.send(
            options.replace(b"BRANCH", check.encode()).replace(b"PEER", b"%d" % peer.port), port
        )
        assert status_of(await peer.response(check, timeout=2.0)) == 200
        async with asyncio.timeout(5):
            while ua.transaction_count or ua.dialog_count:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        peer.close()
