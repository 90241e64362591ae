"""The registrar's pure parts, without an event loop: nonces, digest checking (SHA-256 and
MD5, against the arithmetic of the client side `sip.auth`), contacts, expiry and lockout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiosipua.message import SipResponse

from afterbeep.domain.users import ha1
from afterbeep.telephony.sip.auth import Credentials, DigestSession
from afterbeep.telephony.sip.registrar import (
    STAR,
    BadContact,
    ContactBinding,
    DigestAnswer,
    IntervalTooBrief,
    LockoutPolicy,
    NonceSigner,
    NonceState,
    challenge_headers,
    contact_expires,
    digest_matches,
    parse_contacts,
    user_subject,
)

T0 = 1_800_000_000.0
HOST = "192.0.2.10"


def test_nonces_verify_on_any_node_with_the_secret_and_go_stale() -> None:
    node_a, node_b = NonceSigner(b"s" * 32), NonceSigner(b"s" * 32)
    nonce = node_a.make(T0, HOST)
    assert node_b.check(nonce, T0 + 10, HOST) == NonceState.VALID
    assert node_b.check(nonce, T0 + node_b.ttl + 1, HOST) == NonceState.STALE
    assert NonceSigner(b"other" * 8).check(nonce, T0, HOST) == NonceState.INVALID
    tampered = nonce[:-2] + ("A" if nonce[-2] != "A" else "B") + nonce[-1]
    assert node_b.check(tampered, T0, HOST) == NonceState.INVALID
    assert node_b.check("not a nonce", T0, HOST) == NonceState.INVALID
    assert node_a.make(T0, HOST) != nonce  # never the same twice
    assert node_b.check(node_a.make(T0 + 100, HOST), T0, HOST) == NonceState.INVALID  # future
    # a nonce answers only from the address its challenge went to
    assert node_b.check(nonce, T0 + 10, "192.0.2.99") == NonceState.INVALID


def _challenge(nonce: str) -> SipResponse:
    resp = SipResponse(status_code=401, reason_phrase="Unauthorized")
    for name, value in challenge_headers("afterbeep", nonce):
        resp.headers.append(name, value)
    return resp


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_digest_answers_of_a_client_are_checked(algorithm: str) -> None:
    nonce = NonceSigner(b"k" * 32).make(T0, HOST)
    headers = challenge_headers("afterbeep", nonce)
    assert [v.split("algorithm=")[1].split(",")[0] for _, v in headers] == ["SHA-256", "MD5"]
    response = _challenge(nonce)
    if algorithm == "MD5":  # a client that knows only MD5 sees only that challenge
        response = SipResponse(status_code=401, reason_phrase="Unauthorized")
        response.headers.append(*headers[1])
    session = DigestSession(Credentials("desk-1", "correct-horse-battery-9"))
    answered = session.answer(response, "REGISTER", "sip:afterbeep")
    assert answered is not None
    answer = DigestAnswer.parse(answered[0][1])
    assert answer is not None and answer.algorithm == algorithm and answer.qop == "auth"
    good = ha1(algorithm, "desk-1", "afterbeep", "correct-horse-battery-9")
    bad = ha1(algorithm, "desk-1", "afterbeep", "correct-horse-battery-8")
    assert digest_matches(answer, "REGISTER", good)
    assert not digest_matches(answer, "REGISTER", bad)
    assert not digest_matches(answer, "INVITE", good)  # the method is part of the digest


def test_rfc_2069_answers_without_qop_are_checked() -> None:
    key = ha1("MD5", "a", "r", "p")
    import hashlib

    ha2 = hashlib.md5(b"REGISTER:sip:r").hexdigest()
    response = hashlib.md5(f"{key}:n1:{ha2}".encode()).hexdigest()
    value = f'Digest username="a", realm="r", nonce="n1", uri="sip:r", response="{response}"'
    answer = DigestAnswer.parse(value)
    assert answer is not None and digest_matches(answer, "REGISTER", key)


@pytest.mark.parametrize(
    "value",
    [
        'Basic YWxhZGRpbjpvcGVuc2VzYW1l',
        'Digest username="a", realm="r", nonce="n", uri="sip:r"',  # no response
        'Digest username="a", realm="r", nonce="n", uri="sip:r", response="x", algorithm=SHA-512',
        'Digest username="a", realm="r", nonce="n", uri="sip:r", response="x", qop=auth',  # no nc
    ],
)
def test_unusable_answers_are_none(value: str) -> None:
    assert DigestAnswer.parse(value) is None


def test_contacts() -> None:
    found = parse_contacts(
        ['"Desk" <sip:desk@10.0.0.2:5062;transport=tcp>;expires=120, <sip:desk@10.0.0.3>',
         "sip:desk@10.0.0.4;expires=0"]
    )
    assert found == [
        ContactBinding("sip:desk@10.0.0.2:5062;transport=tcp", 120),
        ContactBinding("sip:desk@10.0.0.3", None),
        ContactBinding("sip:desk@10.0.0.4", 0),
    ]
    assert parse_contacts(["*"]) == STAR
    assert parse_contacts([]) == []
    for bad in (["*", "<sip:a@b>"], ["<http://x>"], ["<sip:a@b>;expires=soon"]):
        with pytest.raises(BadContact):
            parse_contacts(bad)


def test_expires_is_bounded() -> None:
    plain = ContactBinding("sip:a@b", None)
    assert contact_expires(plain, None) == 3600
    assert contact_expires(plain, 120) == 120
    assert contact_expires(plain, 7200) == 3600  # clamped
    assert contact_expires(plain, 0) == 0
    assert contact_expires(ContactBinding("sip:a@b", 90), 3000) == 90  # its own wins
    with pytest.raises(IntervalTooBrief):
        contact_expires(plain, 59)
    assert contact_expires(plain, 1, min_expires=1) == 1


def test_twenty_failures_in_the_window_lock_until_the_lockout_ends() -> None:
    policy = LockoutPolicy(max_failures=20, window=timedelta(minutes=10), lockout=timedelta(seconds=30))
    now = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    subject = user_subject("desk-1")
    record = None
    for i in range(19):
        record = policy.failed(record, subject, now + timedelta(seconds=i))
        assert not policy.locked(record, now + timedelta(seconds=i))
    assert record is not None and record.failures == 19
    record = policy.failed(record, subject, now + timedelta(seconds=19))
    assert policy.locked(record, now + timedelta(seconds=19))
    assert policy.locked(record, now + timedelta(seconds=48))
    assert not policy.locked(record, now + timedelta(seconds=50))
    # after the lockout, counting starts again from one
    again = policy.failed(record, subject, now + timedelta(seconds=50))
    assert again.failures == 1 and not policy.locked(again, now + timedelta(seconds=50))


def test_failures_spread_beyond_the_window_do_not_lock() -> None:
    policy = LockoutPolicy(max_failures=3, window=timedelta(minutes=10))
    now = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    record = None
    for i in range(10):
        record = policy.failed(record, "addr:192.0.2.1", now + timedelta(minutes=6 * i))
        assert not policy.locked(record, now + timedelta(minutes=6 * i))
