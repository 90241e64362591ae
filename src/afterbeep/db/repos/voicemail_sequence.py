"""SQL repositories of the seed 002 sequence: deliveries (a durable queue under leases, see
`_leases`), their recorded requests and answers, and connectors."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from afterbeep.db import tables as t
from afterbeep.db.repos import _leases as leases
from afterbeep.db.repos._paging import page_query, split_page
from afterbeep.domain.connectors import Connector
from afterbeep.domain.voicemail_sequence import Delivery, DeliveryStatus, Exchange, Step
from afterbeep.services.ports import Page
from afterbeep.services.ports.voicemail_sequence import ClaimedDelivery

_D = t.cc_deliveries
_X = t.cc_exchanges
_C = t.cc_connectors

_PROGRESS = (
    "status",
    "attempts",
    "next_attempt_at",
    "voice_call_id",
    "routed",
    "transcript_note",
    "last_error",
    "updated_at",
)


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row.id,
        account_id=row.account_id,
        message_id=row.message_id,
        mailbox_id=row.mailbox_id,
        queue_id=row.queue_id,
        connector_id=row.connector_id,
        call_center_id=row.call_center_id,
        vendor_call_key=row.vendor_call_key,
        status=DeliveryStatus(row.status),
        steps_done=tuple(Step(step) for step in row.steps_done or ()),
        attempts=int(row.attempts),
        next_attempt_at=row.next_attempt_at,
        transcript_wait_until=row.transcript_wait_until,
        voice_call_id=row.voice_call_id,
        routed=row.routed,
        transcript_note=row.transcript_note,
        last_error=row.last_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _progress(delivery: Delivery) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(delivery, name) for name in _PROGRESS}
    values["status"] = delivery.status.value
    values["steps_done"] = [step.value for step in delivery.steps_done]
    return values


def _exchange(row: Any) -> Exchange:
    return Exchange(
        step=Step(row.step),
        method=row.method,
        path=row.path,
        request=row.request,
        status=row.status,
        answer=row.answer,
        error=row.error,
        at=row.at,
        attempt=int(row.attempt),
    )


class SqlDeliveryRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add_if_absent(self, delivery: Delivery) -> bool:
        values = {
            "id": delivery.id,
            "account_id": delivery.account_id,
            "message_id": delivery.message_id,
            "mailbox_id": delivery.mailbox_id,
            "queue_id": delivery.queue_id,
            "connector_id": delivery.connector_id,
            "call_center_id": delivery.call_center_id,
            "vendor_call_key": delivery.vendor_call_key,
            "transcript_wait_until": delivery.transcript_wait_until,
            "created_at": delivery.created_at,
            **_progress(delivery),
        }
        key = [_D.c.message_id]
        statement: Any
        if self._conn.dialect.name == "postgresql":
            statement = postgresql.insert(_D).values(values).on_conflict_do_nothing(index_elements=key)
        else:
            statement = sqlite.insert(_D).values(values).on_conflict_do_nothing(index_elements=key)
        result = await self._conn.execute(statement)
        return bool(result.rowcount)

    async def get(self, account_id: str, delivery_id: str) -> Delivery | None:
        query = select(_D).where(_D.c.id == delivery_id, _D.c.account_id == account_id)
        row = (await self._conn.execute(query)).first()
        return _delivery(row) if row else None

    async def list(
        self,
        account_id: str,
        *,
        status: DeliveryStatus | None,
        message_id: str | None,
        cursor: str | None,
        limit: int,
    ) -> Page[Delivery]:
        query = select(_D).where(_D.c.account_id == account_id)
        if status is not None:
            query = query.where(_D.c.status == status.value)
        if message_id is not None:
            query = query.where(_D.c.message_id == message_id)
        rows, next_cursor = split_page(
            (await self._conn.execute(page_query(query, _D.c.id, cursor, limit))).all(), limit
        )
        return Page([_delivery(row) for row in rows], next_cursor)

    async def claim_due(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> builtins.list[ClaimedDelivery]:
        ids = await leases.claim_due_ids(self._conn, _D, now, lease_until, limit)
        if not ids:
            return []
        query = select(_D).where(_D.c.id.in_(ids)).order_by(_D.c.next_attempt_at, _D.c.id)
        rows = (await self._conn.execute(query)).all()
        return [ClaimedDelivery(_delivery(row), lease_until) for row in rows]

    async def save(
        self, claim: ClaimedDelivery, delivery: Delivery, *, lease_until: datetime | None
    ) -> bool:
        values = {**_progress(delivery), "claimed_until": lease_until}
        result = await self._conn.execute(
            update(_D)
            .where(
                _D.c.id == delivery.id,
                _D.c.status == DeliveryStatus.PENDING.value,
                _D.c.claimed_until == claim.lease_until,
            )
            .values(**values)
        )
        return bool(result.rowcount)

    async def extend(self, claim: ClaimedDelivery, lease_until: datetime) -> bool:
        result = await self._conn.execute(
            update(_D)
            .where(
                _D.c.id == claim.delivery.id,
                _D.c.status == DeliveryStatus.PENDING.value,
                _D.c.claimed_until == claim.lease_until,
            )
            .values(claimed_until=lease_until)
        )
        return bool(result.rowcount)

    async def release(self, claims: builtins.list[ClaimedDelivery]) -> None:
        await leases.release(self._conn, _D, ((c.delivery.id, c.lease_until) for c in claims))

    async def release_all(self) -> int:
        result = await self._conn.execute(
            update(_D)
            .where(_D.c.status == DeliveryStatus.PENDING.value, _D.c.claimed_until.is_not(None))
            .values(claimed_until=None)
        )
        return int(result.rowcount)

    async def next_wakeup(self) -> datetime | None:
        return await leases.next_claimable_at(self._conn, _D)

    async def hasten(self, account_id: str, message_id: str, now: datetime) -> bool:
        result = await self._conn.execute(
            update(_D)
            .where(
                _D.c.account_id == account_id,
                _D.c.message_id == message_id,
                _D.c.status == DeliveryStatus.PENDING.value,
                _D.c.next_attempt_at > now,
                _D.c.attempts == 0,  # waiting for the transcript, not backing off a failure
            )
            .values(next_attempt_at=now)
        )
        return bool(result.rowcount)

    async def add_exchanges(
        self, account_id: str, delivery_id: str, exchanges: builtins.list[Exchange]
    ) -> None:
        if not exchanges:
            return
        await self._conn.execute(
            insert(_X),
            [
                {
                    "account_id": account_id,
                    "delivery_id": delivery_id,
                    "step": x.step.value,
                    "attempt": x.attempt,
                    "method": x.method,
                    "path": x.path[:600],
                    "request": x.request,
                    "status": x.status,
                    "answer": x.answer,
                    "error": x.error[:500] if x.error else None,
                    "at": x.at,
                }
                for x in exchanges
            ],
        )

    async def exchanges(self, account_id: str, delivery_id: str) -> builtins.list[Exchange]:
        query = (
            select(_X)
            .where(_X.c.account_id == account_id, _X.c.delivery_id == delivery_id)
            .order_by(_X.c.id)
        )
        return [_exchange(row) for row in (await self._conn.execute(query)).all()]


_CONNECTOR_FIELDS = (
    "name",
    "base_url",
    "call_center_api_name",
    "org_id",
    "audience",
    "provider_name",
    "fallback_queue",
    "key_ref",
)


def _connector(row: Any) -> Connector:
    return Connector(
        id=row.id,
        account_id=row.account_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        **{name: getattr(row, name) for name in _CONNECTOR_FIELDS},
    )


class SqlConnectorRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, connector: Connector) -> None:
        await self._conn.execute(
            insert(_C).values(
                id=connector.id,
                account_id=connector.account_id,
                created_at=connector.created_at,
                updated_at=connector.updated_at,
                **{name: getattr(connector, name) for name in _CONNECTOR_FIELDS},
            )
        )

    async def get(self, account_id: str, connector_id: str) -> Connector | None:
        query = select(_C).where(_C.c.id == connector_id, _C.c.account_id == account_id)
        row = (await self._conn.execute(query)).first()
        return _connector(row) if row else None

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[Connector]:
        query = page_query(select(_C).where(_C.c.account_id == account_id), _C.c.id, cursor, limit)
        rows, next_cursor = split_page((await self._conn.execute(query)).all(), limit)
        return Page([_connector(row) for row in rows], next_cursor)

    async def update(self, connector: Connector) -> None:
        await self._conn.execute(
            update(_C)
            .where(_C.c.id == connector.id, _C.c.account_id == connector.account_id)
            .values(
                updated_at=connector.updated_at,
                **{name: getattr(connector, name) for name in _CONNECTOR_FIELDS},
            )
        )

    async def delete(self, account_id: str, connector_id: str) -> bool:
        result = await self._conn.execute(
            _C.delete().where(_C.c.id == connector_id, _C.c.account_id == account_id)
        )
        return bool(result.rowcount)

    async def mailboxes_using(self, account_id: str, connector_id: str) -> builtins.list[str]:
        m = t.mailboxes.c
        query = select(m.id).where(m.account_id == account_id, m.connector_id == connector_id)
        return [row.id for row in (await self._conn.execute(query)).all()]
