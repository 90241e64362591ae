"""The engine's side of the send repository on both backends: claiming due sends under a
lease, writing an outcome only under that lease, releasing, the next wake-up, the per-recipient
attempt count, and the suppression and consent look-ups the rules need."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import httpx

from afterbeep.app import Runtime
from afterbeep.domain.ids import new_id
from afterbeep.domain.ringless import DeliveryMethod, SendAttempt, SendStatus
from afterbeep.services.ports.ringless import SendUpdate
from tests.conftest import TestAccount
from tests.ringless.support import NYC_RECIPIENT, audio, make_setup, make_use_case


async def test_claim_update_release_and_lookups(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    h = account.headers
    use_case = await make_use_case(client, account, await make_setup(client, account))
    media = await client.post("/v1/media", files={"file": ("m.mp3", audio(11))}, headers=h)
    ids = []
    for _ in range(3):
        r = await client.post(
            "/v1/voicemails",
            json={"to": NYC_RECIPIENT, "use_case_id": use_case, "media_id": media.json()["id"]},
            headers=h,
        )
        ids.append(r.json()["id"])
    async with runtime.uow() as uow:
        first = await uow.voicemail_sends.get(account.id, ids[0])
        third = await uow.voicemail_sends.get(account.id, ids[2])
    assert first is not None and third is not None
    now = first.created_at + timedelta(hours=1)
    lease = now + timedelta(minutes=5)

    async with runtime.uow() as uow:
        claimed = await uow.voicemail_sends.claim_due(now, lease, limit=2)
    assert [s.id for s in claimed] == ids[:2]
    assert all(s.claimed_until == lease for s in claimed)
    async with runtime.uow() as uow:
        rest = await uow.voicemail_sends.claim_due(now, lease, limit=10)
    assert [s.id for s in rest] == [ids[2]]
    async with runtime.uow() as uow:
        assert await uow.voicemail_sends.claim_due(now, lease, limit=10) == []
        # An expired lease (a crashed worker) is claimable again.
        again = await uow.voicemail_sends.claim_due(lease, lease + timedelta(minutes=5), limit=1)
    assert [s.id for s in again] == [ids[0]]

    attempt = SendAttempt(
        id=new_id("att"), account_id=account.id, send_id=ids[1], to_e164=NYC_RECIPIENT,
        number=1, method=DeliveryMethod.SIP_DEPOSIT, started_at=now, ended_at=None,
        sip_code=None, duration_ms=None, outcome="started", reason=None,
    )
    done = SendUpdate(
        status=SendStatus.DELIVERED, attempts=1, next_attempt_at=None,
        method=DeliveryMethod.SIP_DEPOSIT, failure_reason=None, skip_reason=None,
        delivered_at=now, updated_at=now,
    )
    async with runtime.uow() as uow:
        await uow.voicemail_sends.add_attempt(attempt)
        await uow.voicemail_sends.finish_attempt(
            replace(attempt, ended_at=now, sip_code=200, duration_ms=11000, outcome="delivered")
        )
        assert await uow.voicemail_sends.update_claimed(ids[1], lease + timedelta(1), done) is None
        updated = await uow.voicemail_sends.update_claimed(ids[1], lease, done)
        assert await uow.voicemail_sends.count_attempts_to(account.id, NYC_RECIPIENT, now) == 1
        assert await uow.voicemail_sends.count_attempts_to(
            account.id, NYC_RECIPIENT, now + timedelta(seconds=1)
        ) == 0
        attempts = await uow.voicemail_sends.attempts(account.id, ids[1])
    assert updated is not None and updated.status is SendStatus.DELIVERED
    assert updated.claimed_until is None
    assert [(a.sip_code, a.outcome) for a in attempts] == [(200, "delivered")]

    async with runtime.uow() as uow:
        await uow.voicemail_sends.release([(ids[2], lease)])
        wake = await uow.voicemail_sends.next_wakeup()
        reclaimed = await uow.voicemail_sends.claim_due(now, lease, limit=10)
    # ids[0] is leased past its due time, ids[1] has ended: ids[2] is the next one due.
    assert wake == third.created_at
    assert [s.id for s in reclaimed] == [ids[2]]

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
