"""Delivery engine pieces without peers: pacing, deposit peers, retry classes; and the deposit
receiver refusing a marked INVITE from a source that is not a deposit peer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from afterbeep.services.delivery import message_call_id, retryable
from afterbeep.telephony.delivery_worker import Pacer, TokenBucket, TrunkLimits
from afterbeep.telephony.deposit_receiver import deposit_call_id, parse_peers, peer_allowed
from tests.conftest import Backend
from tests.e2e.rig import NUMBER, api_of, speech
from tests.ringless.test_delivery import (
    NOON_EDT,
    SQLITE,
    WAIT,
    FakeClock,
    account_id_of,
    add_send,
    attempts_of,
    ringless_setup,
    runtime_of,
    send_row,
)


def test_token_bucket_spaces_calls_at_the_rate() -> None:
    bucket = TokenBucket(rate=2.0)
    assert [bucket.reserve(0.0) for _ in range(4)] == [0.0, 0.5, 1.0, 1.5]
    fresh = TokenBucket(rate=2.0)
    assert fresh.reserve(0.0) == 0.0
    assert fresh.reserve(10.0) == 0.0  # idle time refills at most `burst` tokens
    assert fresh.reserve(10.0) == 0.5
    with pytest.raises(ValueError):
        TokenBucket(rate=0)


async def test_pacer_caps_calls_in_progress_per_setup() -> None:
    pacer = Pacer()
    limits = TrunkLimits(calls_per_second=10_000, max_concurrent=2)
    in_progress = peak = 0
    release, three_in = asyncio.Event(), asyncio.Event()

    async def call(setup: str) -> None:
        nonlocal in_progress, peak
        async with pacer.call_slot(setup, limits):
            in_progress += 1
            peak = max(peak, in_progress)
            if in_progress == 3:
                three_in.set()
            await release.wait()
            in_progress -= 1

    async with asyncio.timeout(WAIT):
        async with asyncio.TaskGroup() as group:
            for _ in range(5):
                group.create_task(call("setup_a"))
            group.create_task(call("setup_b"))
            await three_in.wait()
            await asyncio.sleep(0.05)
            assert in_progress == 3  # two of setup_a, one of setup_b
            release.set()
    assert peak == 3


def test_deposit_peers_and_names() -> None:
    peers = parse_peers(" 10.0.0.0/8, 192.168.1.7 ,::1")
    assert peer_allowed(peers, "10.1.2.3") and peer_allowed(peers, "192.168.1.7")
    assert peer_allowed(peers, "::1")
    assert not peer_allowed(peers, "192.168.1.8") and not peer_allowed(peers, "example.com")
    assert parse_peers("") == ()
    assert not peer_allowed(parse_peers(""), "127.0.0.1")
    with pytest.raises(ValueError):
        parse_peers("10.0.0.300")
    assert deposit_call_id("vmsend_01abc") == message_call_id("vmsend_01abc")
    assert deposit_call_id("../etc") is None and deposit_call_id(None) is None


def test_retry_classes() -> None:
    assert all(retryable(code) for code in (408, 480, 486, 500, 503, None))
    assert not any(retryable(code) for code in (403, 404, 488, 603))


@SQLITE
async def test_a_deposit_from_a_stranger_is_refused(backend: Backend, tmp_path: Path) -> None:
    clock = FakeClock(NOON_EDT)
    backend_b = Backend(backend.name, {**backend.env, "data_dir": tmp_path / "var-b"})
    async with runtime_of(backend_b, None, workers=True, deposit_peers="10.9.9.9") as rt_b:
        assert rt_b.telephony is not None
        async with api_of(rt_b, "Receiver") as api_b:
            mailbox = await api_b.mailbox()
            uri = f"sip:{{to}}@127.0.0.1:{rt_b.telephony.udp_port}"
            async with (
                runtime_of(backend, clock, sip=True) as rt_a,
                api_of(rt_a, "Sender") as api_a,
            ):
                account_a = await account_id_of(rt_a, api_a)
                ids = await ringless_setup(rt_a, account_a, speech(10.0), deposit_uri=uri)
                send_id = await add_send(rt_a, account_a, ids, NUMBER)
                async with asyncio.timeout(WAIT):
                    assert await rt_a.delivery().run_once() == 1
                row = await send_row(rt_a, send_id)
                assert (row.status, row.failure_reason) == ("failed", "403 Forbidden")
                assert [a.sip_code for a in await attempts_of(rt_a, send_id)] == [403]
            assert await api_b.messages(mailbox["id"]) == []
            assert rt_b.deposit_receiver is not None
            assert rt_b.deposit_receiver.refused == 1 and rt_b.deposit_receiver.received == 0
