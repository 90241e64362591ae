"""A slow trunk must not lose leases: the delivery worker holds per setup only the sends that
can start their call within the lease (`claimable_now`), so a send never waits behind the
pacer while another claimer could take it again.

Time is a fake clock; the far end is a `DepositDialer` that holds every call until the test
lets it go, so what is in flight is decided by the test, not by a stopwatch.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from afterbeep.db import tables as t
from afterbeep.db.repos.delivery import SqlDeliveryStore
from afterbeep.services.delivery import START_WITHIN as START_WITHIN_LEASE
from afterbeep.services.delivery import (
    AttemptResult,
    DeliveryService,
    SipDeposit,
    attempt_seconds,
    lease_for,
)
from afterbeep.telephony.delivery_worker import (
    DeliveryWorker,
    TokenBucket,
    TrunkLimits,
    claimable_now,
)
from tests.conftest import Backend
from tests.e2e.rig import api_of, speech
from tests.ringless.test_delivery import (
    NOON_EDT,
    FakeClock,
    account_id_of,
    add_send,
    attempts_of,
    ringless_setup,
    runtime_of,
)

SQLITE = pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
START_WITHIN = 60.0  # how long a claimed send may wait for its trunk


@pytest.mark.parametrize(
    ("cps", "concurrent", "expected"),
    [
        (1.0, 10, 10),  # 1,000 sends at 1 cps: only the 10 calls that can run at once
        (0.05, 10, 4),  # one INVITE every 20 s: 4 start within 60 s
        (20.0, 300, 300),
        (0.001, 5, 1),  # always at least one
    ],
)
def test_claimable_now_bounds_by_concurrency_and_rate(
    cps: float, concurrent: int, expected: int
) -> None:
    assert claimable_now(TrunkLimits(cps, concurrent), START_WITHIN) == expected


@pytest.mark.parametrize("cps", [0.05, 0.5, 1.0, 7.0, 20.0])
def test_every_admitted_claim_gets_its_invite_token_within_the_bound(cps: float) -> None:
    """The pacer's token bucket, driven at one instant for all the sends admitted at once."""
    limits = TrunkLimits(cps, 1_000_000)
    bucket = TokenBucket(cps)
    waits = [bucket.reserve(100.0) for _ in range(claimable_now(limits, START_WITHIN))]
    assert waits[0] == 0.0
    assert max(waits) <= START_WITHIN
    assert bucket.reserve(100.0) > START_WITHIN  # one more would have waited too long


def test_the_lease_covers_the_wait_for_the_trunk_and_a_whole_drop() -> None:
    ring = 45.0
    assert timedelta(seconds=START_WITHIN) == START_WITHIN_LEASE
    whole_drop = 10 + ring + 35 + 60  # second call placed late, ringing, listening, the audio
    assert attempt_seconds(ring) == whole_drop
    assert lease_for(ring) > timedelta(seconds=START_WITHIN + whole_drop)


class HeldDialer:
    """A far end that answers every deposit only when `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.in_flight = 0
        self.most = 0
        self.calls: list[str] = []
        self.changed = asyncio.Condition()

    async def sip_deposit(self, deposit: SipDeposit) -> AttemptResult:
        async with self.changed:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.calls.append(deposit.send_id)
            self.changed.notify_all()
        await self.release.wait()
        async with self.changed:
            self.in_flight -= 1
        return AttemptResult(True, 200, None, 10_000)

    async def wait_in_flight(self, count: int) -> None:
        async with asyncio.timeout(30), self.changed:
            await self.changed.wait_for(lambda: self.in_flight >= count)


async def leased(rt: Any) -> set[str]:
    s = t.voicemail_sends.c
    async with rt.db.begin() as conn:
        query = select(s.id).where(s.status == "accepted", s.claimed_until.is_not(None))
        return set((await conn.execute(query)).scalars())


@SQLITE
@pytest.mark.parametrize(("cps", "concurrent", "held"), [(0.05, 10, 4), (50.0, 3, 3)])
async def test_a_slow_trunk_is_claimed_only_as_fast_as_it_can_start_calls(
    backend: Backend, cps: float, concurrent: int, held: int
) -> None:
    clock = FakeClock(NOON_EDT)
    async with runtime_of(backend, clock) as rt, api_of(rt) as api:
        account_id = await account_id_of(rt, api)
        ids = await ringless_setup(
            rt,
            account_id,
            speech(10.0),
            calls_per_second=cps,
            max_concurrent=concurrent,
            cap_attempts=100,
        )
        sends = [await add_send(rt, account_id, ids, f"+1202555{1000 + i}") for i in range(30)]
        dialer = HeldDialer()
        assert rt.store is not None and rt.deposits is not None
        service = DeliveryService(
            SqlDeliveryStore(rt.db), rt.store, clock, rt.call_router(), rt.deposits, dialer
        )
        lease = lease_for(rt.settings.delivery_ring_timeout_seconds)
        worker = DeliveryWorker(
            SqlDeliveryStore(rt.db),
            service,
            clock,
            lease=lease,
            batch_size=20,
            limits=rt.trunk_limits,
            start_within=timedelta(seconds=START_WITHIN),
        )
        drain = asyncio.create_task(worker.run_once())
        try:
            await dialer.wait_in_flight(held)
            await asyncio.sleep(0.2)  # room for a wrong extra claim to show (not a speed bound)
            in_flight = await leased(rt)
            assert in_flight == set(dialer.calls) and len(in_flight) == held

            # Another claimer at the same moment finds every other send free to take.
            other = SqlDeliveryStore(rt.db)
            now = clock.now()
            taken = await other.claim_due(now, now + lease, 100)
            assert {c.send_id for c in taken} == set(sends) - in_flight
            await other.release(taken)

            dialer.release.set()
            async with asyncio.timeout(30):
                assert await drain == len(sends)
        finally:
            dialer.release.set()
            if not drain.done():
                drain.cancel()
        assert dialer.most == held
        assert sorted(dialer.calls) == sorted(sends)  # each once
        s = t.voicemail_sends.c
        async with rt.db.begin() as conn:
            statuses = (await conn.execute(select(s.status).where(s.id.in_(sends)))).scalars()
            assert set(statuses) == {"delivered"}
        for send_id in sends[:3]:
            assert len(await attempts_of(rt, send_id)) == 1


@SQLITE
async def test_a_sole_claimer_takes_back_its_leases_at_start_up(backend: Backend) -> None:
    """On SQLite the restarted process needs not wait for its dead life's leases to expire."""
    clock = FakeClock(NOON_EDT)
    async with runtime_of(backend, clock) as rt, api_of(rt) as api:
        account_id = await account_id_of(rt, api)
        ids = await ringless_setup(rt, account_id, speech(10.0), cap_attempts=100)
        send_id = await add_send(rt, account_id, ids, "+12025550188")
        store = SqlDeliveryStore(rt.db)
        lease = lease_for(45.0)
        (claim,) = await store.claim_due(clock.now(), clock.now() + lease, 10)
        from afterbeep.domain.ringless import DeliveryMethod

        assert await store.begin_attempt(claim, 1, DeliveryMethod.SIP_DEPOSIT, clock.now())
        worker = rt.delivery()
        assert await worker.recover() == 1  # the open attempt is marked interrupted
        assert await leased(rt) == set()
        (attempt,) = await attempts_of(rt, send_id)
        assert attempt.outcome == "interrupted"
        (again,) = await store.claim_due(clock.now(), clock.now() + lease, 10)
        assert again.send_id == send_id


@SQLITE
async def test_a_busy_trunk_does_not_hold_back_another_trunks_sends(backend: Backend) -> None:
    """Trunk A is full with sends still due; the worker claims around it and B's send starts."""
    clock = FakeClock(NOON_EDT)
    async with runtime_of(backend, clock) as rt, api_of(rt) as api:
        account_id = await account_id_of(rt, api)
        busy = await ringless_setup(rt, account_id, speech(10.0), max_concurrent=2, cap_attempts=100)
        a_sends = [await add_send(rt, account_id, busy, f"+1202555{1100 + i}") for i in range(10)]
        other = await ringless_setup(rt, account_id, speech(10.0), cap_attempts=100)
        b_send = await add_send(rt, account_id, other, "+12025551200")  # the last in due order
        dialer = HeldDialer()
        assert rt.store is not None and rt.deposits is not None
        service = DeliveryService(
            SqlDeliveryStore(rt.db), rt.store, clock, rt.call_router(), rt.deposits, dialer
        )
        worker = DeliveryWorker(
            SqlDeliveryStore(rt.db),
            service,
            clock,
            lease=lease_for(rt.settings.delivery_ring_timeout_seconds),
            batch_size=5,
            limits=rt.trunk_limits,
            start_within=timedelta(seconds=START_WITHIN),
        )
        drain = asyncio.create_task(worker.run_once())
        try:
            await dialer.wait_in_flight(3)
            assert b_send in dialer.calls
            assert len(set(dialer.calls) & set(a_sends)) == 2
            dialer.release.set()
            async with asyncio.timeout(30):
                assert await drain == len(a_sends) + 1
        finally:
            dialer.release.set()
            if not drain.done():
                drain.cancel()
        assert sorted(dialer.calls) == sorted([*a_sends, b_send])
