"""Digest answers checked against RFC 7616 §3.9.1 and the once-per-challenge rule."""

from __future__ import annotations

from aiosipua.headers import parse_auth
from aiosipua.message import SipResponse

from afterbeep.telephony.sip.auth import (
    Credentials,
    DigestChallenge,
    DigestSession,
    authorization_value,
)
from afterbeep.telephony.sip.message import parse_message

MUFASA = Credentials("Mufasa", "Circle of Life")
NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def _challenge(algorithm: str) -> DigestChallenge:
    value = (
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{NONCE}", opaque="{OPAQUE}"'
    )
    challenge = DigestChallenge.parse(value, proxy=False)
    assert challenge is not None
    return challenge


def _response_param(header: str) -> str:
    return parse_auth(header, credentials=True).params["response"]


def test_rfc7616_md5_vector() -> None:
    header = authorization_value(
        MUFASA, _challenge("MD5"), "GET", "/dir/index.html", nonce_count=1, cnonce=CNONCE
    )
    assert _response_param(header) == "8ca523f5e9506fed4657c9700eebdbec"
    assert "qop=auth," in header and "nc=00000001" in header and f'opaque="{OPAQUE}"' in header


def test_rfc7616_sha256_vector() -> None:
    header = authorization_value(
        MUFASA, _challenge("SHA-256"), "GET", "/dir/index.html", nonce_count=1, cnonce=CNONCE
    )
    assert _response_param(header) == (
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    )
    assert "algorithm=SHA-256" in header


def _challenge_response(code: int, *values: str) -> SipResponse:
    name = "Proxy-Authenticate" if code == 407 else "WWW-Authenticate"
    lines = "".join(f"{name}: {v}\r\n" for v in values)
    raw = (
        f"SIP/2.0 {code} Auth\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n"
        f"To: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n{lines}Content-Length: 0\r\n\r\n"
    ).encode()
    msg = parse_message(raw)
    assert isinstance(msg, SipResponse)
    return msg


def test_session_prefers_sha256_and_answers_each_nonce_once() -> None:
    session = DigestSession(Credentials("u", "p"))
    resp = _challenge_response(
        401,
        'Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"',
        'Digest realm="r", nonce="n1", algorithm=SHA-256, qop="auth"',
    )
    first = session.answer(resp, "INVITE", "sip:b@h")
    assert first is not None and len(first) == 1
    name, value = first[0]
    assert name == "Authorization" and "algorithm=SHA-256" in value
    assert session.answer(resp, "INVITE", "sip:b@h") is None  # same nonce again: refused


def test_stale_nonce_is_answered_again_and_407_uses_proxy_authorization() -> None:
    session = DigestSession(Credentials("u", "p"))
    resp = _challenge_response(407, 'DIGEST REALM="r", NONCE="n1", QOP="auth"')
    first = session.answer(resp, "INVITE", "sip:b@h")
    assert first is not None and first[0][0] == "Proxy-Authorization"
    stale = _challenge_response(407, 'Digest realm="r", nonce="n1", qop="auth", stale=true')
    again = session.answer(stale, "INVITE", "sip:b@h")
    assert again is not None and "nc=00000002" in again[0][1]


def test_unusable_challenges_give_up() -> None:
    session = DigestSession(Credentials("u", "p"))
    assert session.answer(_challenge_response(401, 'Basic realm="r"'), "INVITE", "sip:b") is None
    only_int = _challenge_response(401, 'Digest realm="r", nonce="n", qop="auth-int"')
    assert session.answer(only_int, "INVITE", "sip:b") is None
    assert "secret" not in repr(Credentials("u", "secret"))
