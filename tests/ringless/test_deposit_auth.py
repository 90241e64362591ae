"""Deposit peers that authenticate by SIP digest (AFTERBEEP_DEPOSIT_USERS).

`DigestGuard` is checked against afterbeep's own client side of digest (`telephony.sip.auth`),
then two afterbeep runtimes on 127.0.0.1 (each its own database) deliver through it: the right
password deposits the audio, a wrong one or none fails the send and stores nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import insert, update

from afterbeep.audio.compare import compare
from afterbeep.db import tables as t
from afterbeep.telephony.deposit_receiver import (
    AuthOutcome,
    DigestGuard,
    parse_users,
)
from afterbeep.telephony.sip.auth import Credentials, DigestChallenge, authorization_value
from tests.conftest import Backend
from tests.e2e.rig import NUMBER, api_of, sent, speech
from tests.ringless.test_delivery import (
    NOON_EDT,
    WAIT,
    FakeClock,
    account_id_of,
    add_send,
    attempts_of,
    ringless_setup,
    runtime_of,
    send_row,
)

SQLITE = pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
URI = "sip:+12025550100@127.0.0.1:5070"
NOW = 1_780_000_000.0


def answer(
    guard: DigestGuard,
    password: str,
    *,
    algorithm: str = "SHA-256",
    now: float = NOW,
    nc: int = 1,
    user: str = "peer-a",
    uri: str = URI,
) -> str:
    """What afterbeep's SIP client sends back for the guard's challenge of that algorithm."""
    offered = [v for _, v in guard.challenges(now) if f"algorithm={algorithm}" in v]
    challenge = DigestChallenge.parse(offered[0], proxy=False)
    assert challenge is not None
    return authorization_value(
        Credentials(user, password), challenge, "INVITE", uri, nonce_count=nc
    )


def test_the_challenge_offers_sha256_and_md5_with_qop_auth() -> None:
    guard = DigestGuard({"peer-a": "right"}, key=b"k" * 32)
    (name1, sha), (name2, md5) = guard.challenges(NOW)
    assert name1 == name2 == "WWW-Authenticate"
    parsed = [DigestChallenge.parse(v, proxy=False) for v in (sha, md5)]
    assert [p.algorithm for p in parsed if p] == ["SHA-256", "MD5"]
    assert all(p is not None and p.qop == ("auth",) and p.realm == "afterbeep" for p in parsed)
    assert guard.check("INVITE", URI, [], NOW).outcome is AuthOutcome.CHALLENGE


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_the_right_answer_passes_once_per_nonce_count(algorithm: str) -> None:
    guard = DigestGuard({"peer-a": "right"})
    first = answer(guard, "right", algorithm=algorithm)
    check = guard.check("INVITE", URI, [first], NOW + 1)
    assert (check.outcome, check.user) == (AuthOutcome.OK, "peer-a")
    assert guard.check("INVITE", URI, [first], NOW + 2).outcome is AuthOutcome.REFUSED  # replay


def test_wrong_answers_are_refused_and_expired_nonces_challenged_again() -> None:
    guard = DigestGuard({"peer-a": "right"}, nonce_seconds=60)
    assert guard.check("INVITE", URI, [answer(guard, "wrong")], NOW).outcome is AuthOutcome.REFUSED
    unknown = answer(guard, "right", user="stranger")
    assert guard.check("INVITE", URI, [unknown], NOW).outcome is AuthOutcome.REFUSED
    other_uri = answer(guard, "right", uri="sip:+12025550199@127.0.0.1")
    assert guard.check("INVITE", URI, [other_uri], NOW).outcome is AuthOutcome.REFUSED
    late = guard.check("INVITE", URI, [answer(guard, "right")], NOW + 61)
    assert late.outcome is AuthOutcome.STALE
    assert all("stale=true" in v for _, v in guard.challenges(NOW, stale=True))
    foreign = DigestGuard({"peer-a": "right"})  # another process's key: its nonce is not ours
    assert guard.check("INVITE", URI, [answer(foreign, "right")], NOW).outcome is AuthOutcome.STALE


def test_parse_users() -> None:
    assert parse_users(" a:one , b:two:with:colons,") == {"a": "one", "b": "two:with:colons"}
    assert parse_users("") == {}
    for bad in ("nopassword", ":x", "a:"):
        with pytest.raises(ValueError):
            parse_users(bad)


async def authenticate_as(rt: Any, account_id: str, setup_id: str, user: str, password: str) -> None:
    ref = f"secret:{setup_id}"
    now = rt.clock.now()
    async with rt.db.begin() as conn:
        await conn.execute(
            insert(t.secrets).values(
                ref=ref, account_id=account_id, value=password, created_at=now, updated_at=now
            )
        )
        await conn.execute(
            update(t.telephony_setups)
            .where(t.telephony_setups.c.id == setup_id)
            .values(username=user, password_ref=ref)
        )


@SQLITE
@pytest.mark.parametrize(
    ("password", "outcome"),
    [("right-pass", "delivered"), ("wrong-pass", "403 Forbidden"), (None, "401 Unauthorized")],
)
async def test_a_digest_peer_deposits_only_with_the_right_password(
    backend: Backend, tmp_path: Any, password: str | None, outcome: str
) -> None:
    clock = FakeClock(NOON_EDT)
    audio = speech(10.0, seed=7)
    backend_b = Backend(backend.name, {**backend.env, "data_dir": tmp_path / "var-b"})
    async with runtime_of(
        backend_b, None, workers=True, deposit_peers="", deposit_users="peer-a:right-pass"
    ) as rt_b:
        assert rt_b.telephony is not None and rt_b.telephony.udp_port is not None
        async with api_of(rt_b, "Receiver") as api_b:
            mailbox = await api_b.mailbox()
            uri = f"sip:{{to}}@127.0.0.1:{rt_b.telephony.udp_port}"
            async with runtime_of(backend, clock, sip=True) as rt_a, api_of(rt_a, "Sender") as api_a:
                account_a = await account_id_of(rt_a, api_a)
                ids = await ringless_setup(rt_a, account_a, audio, deposit_uri=uri)
                if password is not None:
                    await authenticate_as(rt_a, account_a, ids[0], "peer-a", password)
                send_id = await add_send(rt_a, account_a, ids, NUMBER)
                async with asyncio.timeout(WAIT):
                    assert await rt_a.delivery().run_once() == 1
                row = await send_row(rt_a, send_id)
                (attempt,) = await attempts_of(rt_a, send_id)
            receiver = rt_b.deposit_receiver
            assert receiver is not None
            if outcome == "delivered":
                assert (row.status, row.method, attempt.sip_code) == ("delivered", "sip_deposit", 200)
                (message,) = await api_b.wait_messages(mailbox["id"], 1)
                assert message["call_id"] == f"rvm_{send_id}"
                result = compare(sent(audio), await api_b.audio(message["id"]))
                assert result.snr_db > 30, result
                assert (receiver.received, receiver.refused) == (1, 0)
            else:
                assert (row.status, row.failure_reason) == ("failed", outcome), row
                assert attempt.sip_code == int(outcome[:3])
                await asyncio.sleep(0.5)  # a wrongly accepted deposit would be recording by now
                assert await api_b.messages(mailbox["id"]) == []
                assert receiver.received == 0
                assert receiver.refused == (1 if password else 0)
