"""The delivery engine's SQL: claiming due sends under a lease, recording attempts and outcomes.

A send is due when it is `accepted`, its `next_attempt_at` has come and no live lease holds it;
claiming, releasing and the lease-guarded writes are `_leases` (the outboxes' lease discipline)
on the send's own status. Every later write is guarded by the exact lease, so a worker that lost
its lease (it was too slow, or presumed dead) cannot overwrite a newer result. A crashed
worker's sends come back when the lease runs out; their started attempts stay recorded (outcome
`interrupted`), so they still count against `max_attempts`. A worker stopped gracefully records
the attempts it cut short as `interrupted` itself and drops their leases at once (`interrupt`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from afterbeep.db import tables as t
from afterbeep.db.engine import Database
from afterbeep.db.repos import _leases as leases
from afterbeep.db.repos.ringless import send_from_row, setup_from_row, use_case_from_row
from afterbeep.db.repos.webhooks import SqlEventOutbox
from afterbeep.domain.campaigns import CampaignStatus
from afterbeep.domain.drops import DropResult
from afterbeep.domain.ids import new_id
from afterbeep.domain.ringless import (
    FINAL_STATUSES,
    Consent,
    DeliveryMethod,
    SendKind,
    SendStatus,
    SetupNumber,
    TelephonySetup,
)
from afterbeep.services.delivery import (
    STATUS_EVENT,
    AttemptResult,
    Claim,
    DeliveryContext,
    Fallback,
)

_S = t.voicemail_sends
_A = t.send_attempts
ACCEPTED = SendStatus.ACCEPTED.value
STARTED = "started"
INTERRUPTED = "interrupted"
SHUTDOWN_REASON = "interrupted by shutdown"


class SqlDeliveryStore:
    """`services.delivery.DeliveryStore` over the database; one transaction per call."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim_due(
        self,
        now: datetime,
        lease_until: datetime,
        limit: int,
        exclude_setups: Collection[str] = (),
    ) -> list[Claim]:
        where = [_S.c.setup_id.not_in(list(exclude_setups))] if exclude_setups else []
        async with self._db.begin() as conn:
            ids = await leases.claim_due_ids(
                conn, _S, now, lease_until, limit, status=ACCEPTED, where=where
            )
            if not ids:
                return []
            query = select(_S.c.id, _S.c.setup_id).where(_S.c.id.in_(ids))
            setups = {r.id: r.setup_id for r in await conn.execute(query)}
        return [Claim(i, setups[i], lease_until) for i in ids]

    async def release(self, claims: Sequence[Claim]) -> None:
        async with self._db.begin() as conn:
            await leases.release(conn, _S, ((c.send_id, c.lease_until) for c in claims))

    async def next_claimable_at(self) -> datetime | None:
        async with self._db.begin() as conn:
            return await leases.next_claimable_at(conn, _S, status=ACCEPTED)

    async def load(self, send_id: str, now: datetime) -> DeliveryContext | None:
        async with self._db.begin() as conn:
            row = (await conn.execute(select(_S).where(_S.c.id == send_id))).first()
            if row is None:
                return None
            send = send_from_row(row)
            account = send.account_id
            uc_row = (
                await conn.execute(select(t.use_cases).where(t.use_cases.c.id == send.use_case_id))
            ).first()
            setup_row = (
                await conn.execute(
                    select(t.telephony_setups).where(t.telephony_setups.c.id == send.setup_id)
                )
            ).first()
            if uc_row is None or setup_row is None:
                return None
            use_case = use_case_from_row(uc_row)
            n = t.setup_numbers.c
            numbers = [
                SetupNumber(r.e164, bool(r.verified))
                for r in await conn.execute(
                    select(n.e164, n.verified)
                    .where(n.setup_id == send.setup_id)
                    .order_by(n.position)
                )
            ]
            setup = setup_from_row(setup_row, numbers)
            media_row = (
                await conn.execute(
                    select(
                        t.media.c.telephony_key, t.media.c.original_key, t.media.c.duration_ms
                    ).where(
                        t.media.c.id == send.media_id, t.media.c.account_id == account
                    )
                )
            ).first()
            suppressed = (
                await conn.execute(
                    select(t.suppressions.c.id).where(
                        t.suppressions.c.account_id == account,
                        t.suppressions.c.e164 == send.to_e164,
                    )
                )
            ).first() is not None
            k = t.consents.c
            consent_row = (
                await conn.execute(
                    select(t.consents)
                    .where(k.account_id == account, k.e164 == send.to_e164)
                    .order_by(k.revoked_at.is_not(None), k.captured_at.desc())
                    .limit(1)
                )
            ).first()
            consent = (
                Consent(
                    id=consent_row.id,
                    account_id=consent_row.account_id,
                    e164=consent_row.e164,
                    source=consent_row.source,
                    captured_at=consent_row.captured_at,
                    revoked_at=consent_row.revoked_at,
                    created_at=consent_row.created_at,
                )
                if consent_row is not None
                else None
            )
            since = now - use_case.recipient_cap.period
            attempts_in_period = (
                await conn.execute(
                    select(func.count())
                    .select_from(_A)
                    .where(
                        _A.c.account_id == account,
                        _A.c.to_e164 == send.to_e164,
                        _A.c.started_at > since,
                    )
                )
            ).scalar_one()
            password = None
            if setup.password_ref:
                password = (
                    await conn.execute(
                        select(t.secrets.c.value).where(
                            t.secrets.c.ref == setup.password_ref, t.secrets.c.account_id == account
                        )
                    )
                ).scalar_one_or_none()
            campaign_status = None
            if send.campaign_id is not None:
                stored = (
                    await conn.execute(
                        select(t.campaigns.c.status).where(t.campaigns.c.id == send.campaign_id)
                    )
                ).scalar_one_or_none()
                campaign_status = CampaignStatus(stored) if stored is not None else None
            fallback = None
            if send.kind is SendKind.RINGLESS and use_case.fallback_use_case_id is not None:
                fallback = await _fallback(conn, use_case.fallback_use_case_id, account)
        return DeliveryContext(
            send=send,
            use_case=use_case,
            setup=setup,
            audio_key=media_row.telephony_key if media_row is not None else None,
            original_key=media_row.original_key if media_row is not None else None,
            media_duration_ms=media_row.duration_ms if media_row is not None else None,
            suppressed=suppressed,
            consent=consent,
            attempts_in_period=int(attempts_in_period),
            password=str(password) if password is not None else None,
            fallback=fallback,
            campaign_status=campaign_status,
        )

    async def hold(self, claim: Claim, until: datetime) -> bool:
        async with self._db.begin() as conn:
            return await self._guarded(conn, claim, {"next_attempt_at": until})

    async def pause(self, claim: Claim) -> bool:
        async with self._db.begin() as conn:
            return await self._guarded(conn, claim, {"status": SendStatus.PAUSED.value})

    async def begin_attempt(
        self, claim: Claim, number: int, method: DeliveryMethod, now: datetime
    ) -> str | None:
        attempt_id = new_id("att")
        async with self._db.begin() as conn:
            row = (
                await conn.execute(
                    select(_S.c.account_id, _S.c.to_e164).where(
                        _S.c.id == claim.send_id,
                        _S.c.status == ACCEPTED,
                        _S.c.claimed_until == claim.lease_until,
                    )
                )
            ).first()
            if row is None:
                return None
            await conn.execute(
                update(_S)
                .where(_S.c.id == claim.send_id)
                .values(attempts=number, method=method.value, updated_at=now)
            )
            await conn.execute(
                insert(_A).values(
                    id=attempt_id,
                    account_id=row.account_id,
                    send_id=claim.send_id,
                    to_e164=row.to_e164,
                    number=number,
                    method=method.value,
                    started_at=now,
                    ended_at=None,
                    sip_code=None,
                    duration_ms=None,
                    outcome=STARTED,
                    reason=None,
                )
            )
        return attempt_id

    async def conclude(
        self,
        claim: Claim,
        *,
        status: SendStatus,
        now: datetime,
        attempt_id: str | None = None,
        attempt: AttemptResult | None = None,
        method: DeliveryMethod | None = None,
        reason: str | None = None,
        next_attempt_at: datetime | None = None,
        event: Mapping[str, object] | None = None,
        event_name: str = STATUS_EVENT,
        detection: DropResult | None = None,
    ) -> bool:
        values: dict[str, Any] = {"status": status.value, "updated_at": now}
        if detection is not None:
            values["answered_by"] = detection.answered_by
            values["detection_ms"] = detection.detection_ms
            values["beep_ms"] = detection.beep_ms
        if method is not None:
            values["method"] = method.value
        if status is SendStatus.ACCEPTED:
            values["next_attempt_at"] = next_attempt_at
            values["failure_reason"] = reason
        else:
            values["next_attempt_at"] = None
        if status is SendStatus.DELIVERED:
            values["delivered_at"] = now
            values["failure_reason"] = None
        elif status is SendStatus.FAILED:
            values["failure_reason"] = reason
        elif status is SendStatus.SKIPPED:
            values["skip_reason"] = reason
        elif status is SendStatus.LEFT_VOICEMAIL:
            values["delivered_at"] = now
            values["failure_reason"] = None
        elif status in FINAL_STATUSES:  # human_answered, busy, no_answer: the status says it
            values["failure_reason"] = None
        async with self._db.begin() as conn:
            if not await self._guarded(conn, claim, values):
                return False
            if attempt_id is not None and attempt is not None:
                outcome = attempt.outcome or ("delivered" if attempt.delivered else "not_delivered")
                await conn.execute(
                    update(_A)
                    .where(_A.c.id == attempt_id)
                    .values(
                        ended_at=now,
                        sip_code=attempt.sip_code,
                        duration_ms=attempt.duration_ms,
                        outcome=outcome,
                        reason=attempt.reason,
                    )
                )
            if event is not None:
                account = (
                    await conn.execute(select(_S.c.account_id).where(_S.c.id == claim.send_id))
                ).scalar_one()
                await SqlEventOutbox(conn).publish(account, event_name, event)
        return True

    async def interrupt(self, claims: Sequence[Claim], now: datetime) -> int:
        """Claims whose attempt a stopping worker cut short: the started attempt ends
        `interrupted` and the lease is dropped, so the send is due again at once (on any node).
        Claims whose lease was lost meanwhile are left alone; how many were interrupted."""
        interrupted = 0
        async with self._db.begin() as conn:
            for claim in claims:
                released = await conn.execute(
                    update(_S)
                    .where(
                        _S.c.id == claim.send_id,
                        _S.c.status == ACCEPTED,
                        _S.c.claimed_until == claim.lease_until,
                    )
                    .values(claimed_until=None, updated_at=now)
                )
                if not released.rowcount:
                    continue
                ended = await conn.execute(
                    update(_A)
                    .where(_A.c.send_id == claim.send_id, _A.c.outcome == STARTED)
                    .values(ended_at=now, outcome=INTERRUPTED, reason=SHUTDOWN_REASON)
                )
                interrupted += int(ended.rowcount or 0)
        return interrupted

    async def mark_interrupted(self, now: datetime) -> int:
        """Started attempts whose send is no longer leased by anyone: the worker died."""
        c = _S.c
        stale = select(c.id).where(
            c.status == ACCEPTED, or_(c.claimed_until.is_(None), c.claimed_until <= now)
        )
        async with self._db.begin() as conn:
            result = await conn.execute(
                update(_A)
                .where(_A.c.outcome == STARTED, _A.c.send_id.in_(stale))
                .values(outcome=INTERRUPTED, reason="delivery interrupted (worker stopped)")
            )
        return int(result.rowcount or 0)

    @staticmethod
    async def _guarded(conn: AsyncConnection, claim: Claim, values: Mapping[str, Any]) -> bool:
        """Write `values` and drop the lease if the claim's lease still holds."""
        return await leases.record_attempt(
            conn, _S, claim.send_id, claim.lease_until, values, status=ACCEPTED
        )


async def _setup_of(conn: AsyncConnection, setup_id: str) -> TelephonySetup | None:
    row = (
        await conn.execute(select(t.telephony_setups).where(t.telephony_setups.c.id == setup_id))
    ).first()
    if row is None:
        return None
    n = t.setup_numbers.c
    numbers = [
        SetupNumber(r.e164, bool(r.verified))
        for r in await conn.execute(
            select(n.e164, n.verified).where(n.setup_id == setup_id).order_by(n.position)
        )
    ]
    return setup_from_row(row, numbers)


async def _fallback(conn: AsyncConnection, use_case_id: str, account_id: str) -> Fallback | None:
    """A ringless use case's drop fallback: the use case, its setup and the trunk password."""
    u = t.use_cases.c
    row = (
        await conn.execute(
            select(t.use_cases).where(u.id == use_case_id, u.account_id == account_id)
        )
    ).first()
    if row is None:
        return None
    use_case = use_case_from_row(row)
    setup = await _setup_of(conn, use_case.setup_id)
    if setup is None:
        return None
    password = None
    if setup.password_ref:
        password = (
            await conn.execute(
                select(t.secrets.c.value).where(
                    t.secrets.c.ref == setup.password_ref, t.secrets.c.account_id == account_id
                )
            )
        ).scalar_one_or_none()
    return Fallback(use_case, setup, str(password) if password is not None else None)
