"""SQL repositories for ringless voicemail: setups (with their numbers), use cases, sends and
attempts, suppressions and consents. The delivery engine claims and updates sends through
`delivery.SqlDeliveryStore`, not here."""

from __future__ import annotations

import builtins
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, time
from typing import Any

from sqlalchemy import bindparam, case, delete, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from afterbeep.db import tables as t
from afterbeep.db.repos._paging import page_query, split_page
from afterbeep.db.tables import UNREADABLE
from afterbeep.domain.metadata import readable_metadata
from afterbeep.domain.ringless import (
    DROP_STATUSES,
    RINGLESS_STATUSES,
    CallingWindow,
    Channel,
    Consent,
    DeliveryMethod,
    DropTechnique,
    RecipientCap,
    SendAttempt,
    SenderSelection,
    SendKind,
    SendStats,
    SendStatus,
    SetupNumber,
    Suppression,
    TelephonySetup,
    Transport,
    UseCase,
    VoicemailSend,
)
from afterbeep.services.ports import Page
from afterbeep.services.ports.ringless import SendFilter

log = logging.getLogger("afterbeep.db")

_S = t.telephony_setups
_SN = t.setup_numbers
_U = t.use_cases
_V = t.voicemail_sends
_A = t.send_attempts
_SUP = t.suppressions
_C = t.consents
ACCEPTED = SendStatus.ACCEPTED.value

# Statements on the send path are built once (parameters given at execute): building one per
# call, with its column coercions and cache key, costs more than running it on SQLite.
_SETUP_GET = select(_S).where(_S.c.id == bindparam("id"), _S.c.account_id == bindparam("account_id"))
_SETUP_NUMBERS = select(_SN).where(_SN.c.setup_id == bindparam("setup_id")).order_by(_SN.c.position)
_USE_CASE_GET = select(_U).where(
    _U.c.id == bindparam("id"), _U.c.account_id == bindparam("account_id")
)
_SEND_INSERT = insert(_V)


# -- setups ----------------------------------------------------------------------


def setup_from_row(row: Any, numbers: Sequence[SetupNumber]) -> TelephonySetup:
    headers = row.deposit_headers
    if isinstance(headers, str):
        headers = json.loads(headers)
    return TelephonySetup(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        trunk_host=row.trunk_host,
        trunk_port=row.trunk_port,
        transport=Transport(row.transport),
        username=row.username,
        password_ref=row.password_ref,
        outbound_proxy=row.outbound_proxy,
        from_domain=row.from_domain,
        max_calls_per_second=float(row.max_calls_per_second),
        max_concurrent_calls=row.max_concurrent_calls,
        numbers=tuple(numbers),
        deposit_uri=row.deposit_uri,
        deposit_headers=dict(headers or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _setup_values(setup: TelephonySetup) -> dict[str, Any]:
    return {
        "name": setup.name,
        "trunk_host": setup.trunk_host,
        "trunk_port": setup.trunk_port,
        "transport": setup.transport.value,
        "username": setup.username,
        "password_ref": setup.password_ref,
        "outbound_proxy": setup.outbound_proxy,
        "from_domain": setup.from_domain,
        "max_calls_per_second": setup.max_calls_per_second,
        "max_concurrent_calls": setup.max_concurrent_calls,
        "deposit_uri": setup.deposit_uri,
        "deposit_headers": dict(setup.deposit_headers),
        "updated_at": setup.updated_at,
    }


class SqlTelephonySetupRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def _numbers(self, setup_ids: builtins.list[str]) -> dict[str, tuple[SetupNumber, ...]]:
        found: dict[str, builtins.list[SetupNumber]] = {i: [] for i in setup_ids}
        if len(setup_ids) == 1:
            rows = (await self._conn.execute(_SETUP_NUMBERS, {"setup_id": setup_ids[0]})).all()
            found[setup_ids[0]] = [SetupNumber(r.e164, bool(r.verified)) for r in rows]
        elif setup_ids:
            query = select(_SN).where(_SN.c.setup_id.in_(setup_ids)).order_by(_SN.c.position)
            for row in (await self._conn.execute(query)).all():
                found[row.setup_id].append(SetupNumber(row.e164, bool(row.verified)))
        return {k: tuple(v) for k, v in found.items()}

    async def _write_numbers(self, setup: TelephonySetup) -> None:
        await self._conn.execute(delete(_SN).where(_SN.c.setup_id == setup.id))
        if setup.numbers:
            await self._conn.execute(
                insert(_SN),
                [
                    {
                        "setup_id": setup.id,
                        "e164": n.e164,
                        "account_id": setup.account_id,
                        "verified": n.verified,
                        "position": i,
                    }
                    for i, n in enumerate(setup.numbers)
                ],
            )

    async def add(self, setup: TelephonySetup) -> None:
        values = {
            **_setup_values(setup),
            "id": setup.id,
            "account_id": setup.account_id,
            "created_at": setup.created_at,
        }
        await self._conn.execute(insert(_S).values(**values))
        await self._write_numbers(setup)

    async def _one(self, query: Any, params: dict[str, Any] | None = None) -> TelephonySetup | None:
        row = (await self._conn.execute(query, params)).first()
        if row is None:
            return None
        return setup_from_row(row, (await self._numbers([row.id]))[row.id])

    async def get(self, account_id: str, setup_id: str) -> TelephonySetup | None:
        return await self._one(_SETUP_GET, {"id": setup_id, "account_id": account_id})

    async def get_any(self, setup_id: str) -> TelephonySetup | None:
        return await self._one(select(_S).where(_S.c.id == setup_id))

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[TelephonySetup]:
        query = page_query(select(_S).where(_S.c.account_id == account_id), _S.c.id, cursor, limit)
        rows, next_cursor = split_page((await self._conn.execute(query)).all(), limit)
        numbers = await self._numbers([r.id for r in rows])
        return Page([setup_from_row(r, numbers[r.id]) for r in rows], next_cursor)

    async def update(self, setup: TelephonySetup) -> None:
        await self._conn.execute(
            update(_S)
            .where(_S.c.id == setup.id, _S.c.account_id == setup.account_id)
            .values(**_setup_values(setup))
        )
        await self._write_numbers(setup)

    async def delete(self, account_id: str, setup_id: str) -> bool:
        await self._conn.execute(
            delete(_SN).where(_SN.c.setup_id == setup_id, _SN.c.account_id == account_id)
        )
        result = await self._conn.execute(
            delete(_S).where(_S.c.id == setup_id, _S.c.account_id == account_id)
        )
        return bool(result.rowcount)

    async def in_use(self, account_id: str, setup_id: str) -> bool:
        used = or_(
            exists().where(_U.c.setup_id == setup_id, _U.c.account_id == account_id),
            exists().where(_V.c.setup_id == setup_id, _V.c.account_id == account_id),
        )
        return bool((await self._conn.execute(select(used))).scalar())


# -- use cases -------------------------------------------------------------------


def _hhmm(value: time) -> str:
    return value.strftime("%H:%M")


def use_case_from_row(row: Any) -> UseCase:
    return UseCase(
        id=row.id,
        account_id=row.account_id,
        channel=Channel(row.channel),
        name=row.name,
        description=row.description,
        setup_id=row.setup_id,
        sender_selection=SenderSelection(row.sender_selection),
        sender_number=row.sender_number,
        require_consent=bool(row.require_consent),
        calling_window=CallingWindow(
            time.fromisoformat(row.window_start), time.fromisoformat(row.window_end)
        ),
        max_attempts=row.max_attempts,
        retry_backoff_seconds=row.retry_backoff_seconds,
        recipient_cap=RecipientCap(row.cap_attempts, row.cap_period_hours),
        created_at=row.created_at,
        updated_at=row.updated_at,
        fallback_use_case_id=row.fallback_use_case_id,
        second_call_delay_ms=row.second_call_delay_ms,
        first_call_bound_ms=row.first_call_bound_ms,
    )


def _use_case_values(uc: UseCase) -> dict[str, Any]:
    return {
        "channel": uc.channel.value,
        "name": uc.name,
        "description": uc.description,
        "setup_id": uc.setup_id,
        "sender_selection": uc.sender_selection.value,
        "sender_number": uc.sender_number,
        "require_consent": uc.require_consent,
        "window_start": _hhmm(uc.calling_window.start),
        "window_end": _hhmm(uc.calling_window.end),
        "max_attempts": uc.max_attempts,
        "retry_backoff_seconds": uc.retry_backoff_seconds,
        "cap_attempts": uc.recipient_cap.attempts,
        "cap_period_hours": uc.recipient_cap.period_hours,
        "fallback_use_case_id": uc.fallback_use_case_id,
        "second_call_delay_ms": uc.second_call_delay_ms,
        "first_call_bound_ms": uc.first_call_bound_ms,
        "updated_at": uc.updated_at,
    }


class SqlUseCaseRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, use_case: UseCase) -> None:
        values = {
            **_use_case_values(use_case),
            "id": use_case.id,
            "account_id": use_case.account_id,
            "created_at": use_case.created_at,
        }
        await self._conn.execute(insert(_U).values(**values))

    async def get(self, account_id: str, use_case_id: str) -> UseCase | None:
        params = {"id": use_case_id, "account_id": account_id}
        row = (await self._conn.execute(_USE_CASE_GET, params)).first()
        return use_case_from_row(row) if row else None

    async def get_any(self, use_case_id: str) -> UseCase | None:
        row = (await self._conn.execute(select(_U).where(_U.c.id == use_case_id))).first()
        return use_case_from_row(row) if row else None

    async def list(
        self,
        account_id: str,
        channel: Channel | None,
        setup_id: str | None,
        cursor: str | None,
        limit: int,
    ) -> Page[UseCase]:
        query = select(_U).where(_U.c.account_id == account_id)
        if channel is not None:
            query = query.where(_U.c.channel == channel.value)
        if setup_id is not None:
            query = query.where(_U.c.setup_id == setup_id)
        rows, next_cursor = split_page(
            (await self._conn.execute(page_query(query, _U.c.id, cursor, limit))).all(), limit
        )
        return Page([use_case_from_row(r) for r in rows], next_cursor)

    async def update(self, use_case: UseCase) -> None:
        await self._conn.execute(
            update(_U)
            .where(_U.c.id == use_case.id, _U.c.account_id == use_case.account_id)
            .values(**_use_case_values(use_case))
        )

    async def delete(self, account_id: str, use_case_id: str) -> bool:
        result = await self._conn.execute(
            delete(_U).where(_U.c.id == use_case_id, _U.c.account_id == account_id)
        )
        return bool(result.rowcount)

    async def has_sends(self, account_id: str, use_case_id: str) -> bool:
        query = select(
            exists().where(_V.c.use_case_id == use_case_id, _V.c.account_id == account_id)
        )
        return bool((await self._conn.execute(query)).scalar())

    async def is_fallback(self, account_id: str, use_case_id: str) -> bool:
        query = select(
            exists().where(_U.c.fallback_use_case_id == use_case_id, _U.c.account_id == account_id)
        )
        return bool((await self._conn.execute(query)).scalar())

    async def advance_rr(self, account_id: str, use_case_id: str) -> int:
        """Take the round-robin cursor and move it on, in one statement: the row stays locked
        until the caller's transaction ends, so concurrent senders (and nodes) never share a
        value."""
        c = _U.c
        result = await self._conn.execute(
            update(_U)
            .where(c.id == use_case_id, c.account_id == account_id)
            .values(rr_next=c.rr_next + 1)
            .returning(c.rr_next)
        )
        after = result.scalar_one_or_none()
        return 0 if after is None else int(after) - 1


# -- sends -----------------------------------------------------------------------


def send_from_row(row: Any) -> VoicemailSend:
    return VoicemailSend(
        id=row.id,
        account_id=row.account_id,
        use_case_id=row.use_case_id,
        setup_id=row.setup_id,
        media_id=row.media_id,
        from_e164=row.from_e164,
        to_e164=row.to_e164,
        foreign_id=row.foreign_id,
        metadata=_stored_metadata(row.id, row._mapping["metadata"]),
        send_at=row.send_at,
        status=SendStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        claimed_until=row.claimed_until,
        method=DeliveryMethod(row.method) if row.method else None,
        failure_reason=row.failure_reason,
        skip_reason=row.skip_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        delivered_at=row.delivered_at,
        kind=SendKind(row.kind),
        technique=DropTechnique(row.technique) if row.technique else None,
        answered_by=row.answered_by,
        detection_ms=row.detection_ms,
        beep_ms=row.beep_ms,
        campaign_id=row.campaign_id,
    )


def _stored_metadata(send_id: str, value: Any) -> Mapping[str, Any] | None:
    """The metadata of a stored send as it can be shown: one unreadable value (stored by hand,
    or under older rules) reads as None with a log line, and never fails a list."""
    try:
        if value is UNREADABLE:
            raise ValueError("stored metadata is not decodable JSON")
        if isinstance(value, str):
            value = json.loads(value)
        return readable_metadata(value)
    except (ValueError, RecursionError) as exc:
        log.warning("send %s: metadata shown as null: %s", send_id, exc)
        return None


def send_values(send: VoicemailSend) -> dict[str, Any]:
    """The columns of a send row (the inverse of `send_from_row`)."""
    return {
        "id": send.id,
        "account_id": send.account_id,
        "use_case_id": send.use_case_id,
        "setup_id": send.setup_id,
        "media_id": send.media_id,
        "from_e164": send.from_e164,
        "to_e164": send.to_e164,
        "foreign_id": send.foreign_id,
        "metadata": dict(send.metadata) if send.metadata is not None else None,
        "send_at": send.send_at,
        "status": send.status.value,
        "attempts": send.attempts,
        "next_attempt_at": send.next_attempt_at,
        "claimed_until": send.claimed_until,
        "method": send.method.value if send.method else None,
        "failure_reason": send.failure_reason,
        "skip_reason": send.skip_reason,
        "created_at": send.created_at,
        "updated_at": send.updated_at,
        "delivered_at": send.delivered_at,
        "kind": send.kind.value,
        "technique": send.technique.value if send.technique else None,
        "answered_by": send.answered_by,
        "detection_ms": send.detection_ms,
        "beep_ms": send.beep_ms,
        "campaign_id": send.campaign_id,
    }


def _attempt(row: Any) -> SendAttempt:
    return SendAttempt(
        id=row.id,
        account_id=row.account_id,
        send_id=row.send_id,
        to_e164=row.to_e164,
        number=row.number,
        method=DeliveryMethod(row.method),
        started_at=row.started_at,
        ended_at=row.ended_at,
        sip_code=row.sip_code,
        duration_ms=row.duration_ms,
        outcome=row.outcome,
        reason=row.reason,
    )


def _filters(account_id: str, where: SendFilter) -> builtins.list[Any]:
    conds: builtins.list[Any] = [_V.c.account_id == account_id, _V.c.kind == where.kind.value]
    if where.use_case_id is not None:
        conds.append(_V.c.use_case_id == where.use_case_id)
    if where.setup_id is not None:
        conds.append(_V.c.setup_id == where.setup_id)
    if where.status is not None:
        conds.append(_V.c.status == where.status.value)
    if where.to_e164 is not None:
        conds.append(_V.c.to_e164 == where.to_e164)
    if where.created_after is not None:
        conds.append(_V.c.created_at >= where.created_after)
    if where.created_before is not None:
        conds.append(_V.c.created_at < where.created_before)
    if where.campaign_id is not None:
        conds.append(_V.c.campaign_id == where.campaign_id)
    return conds


class SqlVoicemailSendRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, send: VoicemailSend) -> None:
        await self._conn.execute(_SEND_INSERT, send_values(send))

    async def get(self, account_id: str, send_id: str) -> VoicemailSend | None:
        query = select(_V).where(_V.c.id == send_id, _V.c.account_id == account_id)
        row = (await self._conn.execute(query)).first()
        return send_from_row(row) if row else None

    async def get_any(self, send_id: str) -> VoicemailSend | None:
        row = (await self._conn.execute(select(_V).where(_V.c.id == send_id))).first()
        return send_from_row(row) if row else None

    async def list(
        self, account_id: str, where: SendFilter, cursor: str | None, limit: int
    ) -> Page[VoicemailSend]:
        query = page_query(select(_V).where(*_filters(account_id, where)), _V.c.id, cursor, limit)
        rows, next_cursor = split_page((await self._conn.execute(query)).all(), limit)
        return Page([send_from_row(r) for r in rows], next_cursor)

    async def attempts(self, account_id: str, send_id: str) -> builtins.list[SendAttempt]:
        query = (
            select(_A)
            .where(_A.c.send_id == send_id, _A.c.account_id == account_id)
            .order_by(_A.c.number)
        )
        return [_attempt(r) for r in (await self._conn.execute(query)).all()]

    async def stats(self, account_id: str, where: SendFilter) -> SendStats:
        conds = _filters(account_id, where)
        by_status = select(_V.c.status, func.count()).where(*conds).group_by(_V.c.status)
        shown = RINGLESS_STATUSES if where.kind is SendKind.RINGLESS else DROP_STATUSES
        counts = {s: 0 for s in SendStatus if s in shown}
        for status, count in (await self._conn.execute(by_status)).all():
            counts[SendStatus(status)] = int(count)
        reason = func.coalesce(_V.c.failure_reason, "unknown")
        by_reason = (
            select(reason, func.count())
            .where(*conds, _V.c.status == SendStatus.FAILED.value)
            .group_by(reason)
        )
        reasons = {str(r): int(n) for r, n in (await self._conn.execute(by_reason)).all()}
        return SendStats(counts=counts, failure_reasons=reasons)

    async def cancel(self, account_id: str, send_id: str, now: datetime) -> VoicemailSend | None:
        unclaimed = or_(_V.c.claimed_until.is_(None), _V.c.claimed_until <= now)
        result = await self._conn.execute(
            update(_V)
            .where(
                _V.c.id == send_id,
                _V.c.account_id == account_id,
                _V.c.status == ACCEPTED,
                _V.c.attempts == 0,
                unclaimed,
            )
            .values(
                status=SendStatus.SKIPPED.value,
                skip_reason="cancelled",
                next_attempt_at=None,
                claimed_until=None,
                updated_at=now,
            )
        )
        if not result.rowcount:
            return None
        return await self.get(account_id, send_id)

    async def release_leases(self, now: datetime) -> int:
        """Hand back every live lease on waiting sends: only for a sole claimer starting up
        (SQLite), whose previous life held them all."""
        c = _V.c
        result = await self._conn.execute(
            update(_V)
            .where(c.status == SendStatus.ACCEPTED.value, c.claimed_until > now)
            .values(claimed_until=None)
        )
        return int(result.rowcount or 0)

    async def count_attempts_to(self, account_id: str, to_e164: str, since: datetime) -> int:
        query = select(func.count()).where(
            _A.c.account_id == account_id, _A.c.to_e164 == to_e164, _A.c.started_at >= since
        )
        return int((await self._conn.execute(query)).scalar_one())


# -- suppressions and consents ------------------------------------------------------


def _suppression(row: Any) -> Suppression:
    return Suppression(
        id=row.id, account_id=row.account_id, e164=row.e164, reason=row.reason, created_at=row.created_at
    )


class SqlSuppressionRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, suppression: Suppression) -> bool:
        if await self.by_e164(suppression.account_id, suppression.e164) is not None:
            return False
        try:
            await self._conn.execute(
                insert(_SUP).values(
                    id=suppression.id,
                    account_id=suppression.account_id,
                    e164=suppression.e164,
                    reason=suppression.reason,
                    created_at=suppression.created_at,
                )
            )
        except IntegrityError:
            # A concurrent insert of the same number won the unique constraint.
            return False
        return True

    async def get(self, account_id: str, suppression_id: str) -> Suppression | None:
        query = select(_SUP).where(_SUP.c.id == suppression_id, _SUP.c.account_id == account_id)
        row = (await self._conn.execute(query)).first()
        return _suppression(row) if row else None

    async def by_e164(self, account_id: str, e164: str) -> Suppression | None:
        query = select(_SUP).where(_SUP.c.account_id == account_id, _SUP.c.e164 == e164)
        row = (await self._conn.execute(query)).first()
        return _suppression(row) if row else None

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[Suppression]:
        query = page_query(
            select(_SUP).where(_SUP.c.account_id == account_id), _SUP.c.id, cursor, limit
        )
        rows, next_cursor = split_page((await self._conn.execute(query)).all(), limit)
        return Page([_suppression(r) for r in rows], next_cursor)

    async def delete(self, account_id: str, suppression_id: str) -> bool:
        result = await self._conn.execute(
            delete(_SUP).where(_SUP.c.id == suppression_id, _SUP.c.account_id == account_id)
        )
        return bool(result.rowcount)

    async def is_suppressed(self, account_id: str, e164: str) -> bool:
        return await self.by_e164(account_id, e164) is not None


def _consent(row: Any) -> Consent:
    return Consent(
        id=row.id,
        account_id=row.account_id,
        e164=row.e164,
        source=row.source,
        captured_at=row.captured_at,
        revoked_at=row.revoked_at,
        created_at=row.created_at,
    )


class SqlConsentRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, consent: Consent) -> None:
        await self._conn.execute(
            insert(_C).values(
                id=consent.id,
                account_id=consent.account_id,
                e164=consent.e164,
                source=consent.source,
                captured_at=consent.captured_at,
                revoked_at=consent.revoked_at,
                created_at=consent.created_at,
            )
        )

    async def get(self, account_id: str, consent_id: str) -> Consent | None:
        query = select(_C).where(_C.c.id == consent_id, _C.c.account_id == account_id)
        row = (await self._conn.execute(query)).first()
        return _consent(row) if row else None

    async def list(
        self, account_id: str, e164: str | None, cursor: str | None, limit: int
    ) -> Page[Consent]:
        query = select(_C).where(_C.c.account_id == account_id)
        if e164 is not None:
            query = query.where(_C.c.e164 == e164)
        rows, next_cursor = split_page(
            (await self._conn.execute(page_query(query, _C.c.id, cursor, limit))).all(), limit
        )
        return Page([_consent(r) for r in rows], next_cursor)

    async def revoke(self, account_id: str, consent_id: str, at: datetime) -> bool:
        result = await self._conn.execute(
            update(_C)
            .where(_C.c.id == consent_id, _C.c.account_id == account_id, _C.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return bool(result.rowcount)

    async def current(self, account_id: str, e164: str) -> Consent | None:
        active_first = case((_C.c.revoked_at.is_(None), 0), else_=1)
        query = (
            select(_C)
            .where(_C.c.account_id == account_id, _C.c.e164 == e164)
            .order_by(active_first, _C.c.id.desc())
            .limit(1)
        )
        row = (await self._conn.execute(query)).first()
        return _consent(row) if row else None
