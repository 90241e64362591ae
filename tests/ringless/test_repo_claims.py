"""The delivery engine's store (`SqlDeliveryStore`) on both backends: claiming due sends under a
lease, writes guarded by that exact lease, releasing, the next wake-up and concurrent claimers;
then the per-recipient attempt count and the suppression and consent look-ups the rules need."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from sqlalchemy import select

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from afterbeep.db.repos.delivery import SqlDeliveryStore
from afterbeep.domain.ringless import DeliveryMethod, SendStatus, VoicemailSend
from afterbeep.services.delivery import AttemptResult, Claim
from tests.conftest import TestAccount
from tests.ringless.support import NYC_RECIPIENT, audio, make_setup, make_use_case


async def add_sends(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, n: int
) -> tuple[str, list[VoicemailSend]]:
    """`n` accepted sends through the API, oldest first, and their setup's id."""
    h = account.headers
    setup = await make_setup(client, account)
    use_case = await make_use_case(client, account, setup)
    media = await client.post("/v1/media", files={"file": ("m.mp3", audio(11))}, headers=h)
    sends = []
    for _ in range(n):
        r = await client.post(
            "/v1/voicemails",
            json={"to": NYC_RECIPIENT, "use_case_id": use_case, "media_id": media.json()["id"]},
            headers=h,
        )
        assert r.status_code in (200, 201, 202), r.text
        async with runtime.uow() as uow:
            send = await uow.voicemail_sends.get(account.id, r.json()["id"])
        assert send is not None
        sends.append(send)
    return setup, sends


async def test_claim_guarded_writes_release_and_wakeup(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    setup, sends = await add_sends(client, runtime, account, 3)
    ids = [s.id for s in sends]
    store = SqlDeliveryStore(runtime.db)
    now = sends[0].created_at + timedelta(hours=1)
    lease = now + timedelta(minutes=5)

    claimed = await store.claim_due(now, lease, 2)
    assert claimed == [Claim(ids[0], setup, lease), Claim(ids[1], setup, lease)]
    assert await store.claim_due(now, lease, 10) == [Claim(ids[2], setup, lease)]
    assert await store.claim_due(now, lease, 10) == []
    # An expired lease (a crashed worker) is claimable again, under a new lease.
    later = lease + timedelta(minutes=5)
    assert await store.claim_due(lease, later, 1) == [Claim(ids[0], setup, later)]

    # The first worker lost ids[0]: nothing it writes or releases lands.
    stale = claimed[0]
    assert not await store.hold(stale, later)
    assert await store.begin_attempt(stale, 1, DeliveryMethod.SIP_DEPOSIT, now) is None
    await store.release([stale])
    assert await store.claim_due(now, later, 10) == []

    attempt_id = await store.begin_attempt(claimed[1], 1, DeliveryMethod.SIP_DEPOSIT, now)
    assert attempt_id is not None
    result = AttemptResult(delivered=True, sip_code=200, reason=None, duration_ms=11000)
    wrong = Claim(ids[1], setup, lease + timedelta(days=1))
    assert not await store.conclude(
        wrong, status=SendStatus.DELIVERED, now=now, attempt_id=attempt_id, attempt=result
    )
    assert await store.conclude(
        claimed[1], status=SendStatus.DELIVERED, now=now, attempt_id=attempt_id, attempt=result
    )
    async with runtime.uow() as uow:
        delivered = await uow.voicemail_sends.get(account.id, ids[1])
        attempts = await uow.voicemail_sends.attempts(account.id, ids[1])
    assert delivered is not None and delivered.status is SendStatus.DELIVERED
    assert delivered.claimed_until is None and delivered.attempts == 1
    assert [(a.sip_code, a.outcome) for a in attempts] == [(200, "delivered")]

    await store.release([Claim(ids[2], setup, lease)])
    # ids[0] is leased past its due time, ids[1] has ended: ids[2] is the next one due.
    assert await store.next_claimable_at() == sends[2].created_at
    assert await store.claim_due(now, lease, 10) == [Claim(ids[2], setup, lease)]
    assert await store.next_claimable_at() == lease


async def test_concurrent_claimers_never_share_a_send(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    """Several claimers at once (`SKIP LOCKED` on PostgreSQL, the single writer on SQLite)."""
    _, sends = await add_sends(client, runtime, account, 12)
    store = SqlDeliveryStore(runtime.db)
    now = sends[0].created_at + timedelta(hours=1)
    lease = now + timedelta(minutes=5)

    batches = await asyncio.wait_for(
        asyncio.gather(*(store.claim_due(now, lease, 3) for _ in range(4))), timeout=30
    )
    claimed = [c.send_id for batch in batches for c in batch]
    assert sorted(claimed) == sorted(s.id for s in sends)
    async with runtime.db.begin() as conn:
        leases = (
            await conn.execute(
                select(t.voicemail_sends.c.claimed_until).where(
                    t.voicemail_sends.c.id.in_(claimed)
                )
            )
        ).scalars().all()
    assert leases == [lease] * len(sends)


async def test_attempt_count_and_rule_lookups(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    h = account.headers
    _, sends = await add_sends(client, runtime, account, 1)
    store = SqlDeliveryStore(runtime.db)
    now = sends[0].created_at + timedelta(hours=1)
    (claim,) = await store.claim_due(now, now + timedelta(minutes=5), 1)
    assert await store.begin_attempt(claim, 1, DeliveryMethod.SIP_DEPOSIT, now) is not None
    async with runtime.uow() as uow:
        assert await uow.voicemail_sends.count_attempts_to(account.id, NYC_RECIPIENT, now) == 1
        assert (
            await uow.voicemail_sends.count_attempts_to(
                account.id, NYC_RECIPIENT, now + timedelta(seconds=1)
            )
            == 0
        )

    await client.post("/v1/suppressions", json={"e164": NYC_RECIPIENT}, headers=h)
    c1 = await client.post(
        "/v1/consents",
        json={"e164": NYC_RECIPIENT, "source": "a", "captured_at": "2026-01-01T00:00:00Z"},
        headers=h,
    )
    await client.post(f"/v1/consents/{c1.json()['id']}/revoke", headers=h)
    async with runtime.uow() as uow:
        assert await uow.suppressions.is_suppressed(account.id, NYC_RECIPIENT)
        assert not await uow.suppressions.is_suppressed(account.id, "+13105550123")
        current = await uow.consents.current(account.id, NYC_RECIPIENT)
    assert current is not None and not current.active
    c2 = await client.post(
        "/v1/consents",
        json={"e164": NYC_RECIPIENT, "source": "b", "captured_at": "2026-01-02T00:00:00Z"},
        headers=h,
    )
    async with runtime.uow() as uow:
        current = await uow.consents.current(account.id, NYC_RECIPIENT)
        assert await uow.consents.current(account.id, "+13105550123") is None
    assert current is not None and current.id == c2.json()["id"] and current.active
