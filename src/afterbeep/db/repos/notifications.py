"""SQL repository for the email outbox (`email_outbox`) and the mailbox-full flag.

Claiming works as for webhook deliveries (`afterbeep.db.repos.webhooks`): on PostgreSQL due rows
are picked with `SELECT ... FOR UPDATE SKIP LOCKED` and stamped with a `claimed_until` lease in
the same transaction; on SQLite every transaction is `BEGIN IMMEDIATE`, which makes the claim
exclusive. Queueing is `INSERT ... ON CONFLICT (dedupe_key) DO NOTHING`, so a retried deposit
never queues a second email.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from afterbeep.db import tables as t
from afterbeep.db.repos import _leases as leases
from afterbeep.db.repos._paging import page_query, split_page
from afterbeep.services.ports import Page
from afterbeep.services.ports.notifications import (
    ClaimedNotification,
    Notification,
    NotificationKind,
    NotificationOutcome,
    NotificationStatus,
)

_E = t.email_outbox
_B = t.mailboxes
_CLEAR_FULL_NOTIFIED = (  # built once: every deposit
    update(_B)
    .where(
        _B.c.id == bindparam("b_mailbox_id"),  # not a column's name (the update's own binds)
        _B.c.account_id == bindparam("b_account_id"),
        _B.c.full_notified_at.is_not(None),
    )
    .values(full_notified_at=None)
)
_CLAIMED = (  # built once: every poll that claims
    select(_E)
    .where(_E.c.id.in_(bindparam("b_ids", expanding=True)))
    .order_by(_E.c.next_attempt_at, _E.c.id)
)


def _notification(row: Any) -> Notification:
    return Notification(
        id=row.id,
        account_id=row.account_id,
        kind=NotificationKind(row.kind),
        mailbox_id=row.mailbox_id,
        message_id=row.message_id,
        dedupe_key=row.dedupe_key,
        to_addr=row.to_addr,
        status=NotificationStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class SqlNotificationRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def enqueue(self, notification: Notification) -> bool:
        n = notification
        values = {
            "id": n.id,
            "account_id": n.account_id,
            "kind": n.kind.value,
            "mailbox_id": n.mailbox_id,
            "message_id": n.message_id,
            "dedupe_key": n.dedupe_key,
            "to_addr": n.to_addr,
            "status": n.status.value,
            "attempts": n.attempts,
            "next_attempt_at": n.next_attempt_at,
            "claimed_until": None,
            "last_error": n.last_error,
            "created_at": n.created_at,
            "updated_at": n.updated_at,
        }
        statement: Any
        if self._conn.dialect.name == "postgresql":
            statement = postgresql.insert(_E).values(values)
        else:
            statement = sqlite.insert(_E).values(values)
        statement = statement.on_conflict_do_nothing(index_elements=[_E.c.dedupe_key])
        result = await self._conn.execute(statement)
        return bool(result.rowcount)

    async def get(self, account_id: str, notification_id: str) -> Notification | None:
        query = select(_E).where(_E.c.id == notification_id, _E.c.account_id == account_id)
        row = (await self._conn.execute(query)).first()
        return _notification(row) if row else None

    async def get_by_dedupe_key(self, dedupe_key: str) -> Notification | None:
        row = (await self._conn.execute(select(_E).where(_E.c.dedupe_key == dedupe_key))).first()
        return _notification(row) if row else None

    async def list(
        self,
        account_id: str,
        *,
        mailbox_id: str | None,
        status: NotificationStatus | None,
        cursor: str | None,
        limit: int,
    ) -> Page[Notification]:
        query = select(_E).where(_E.c.account_id == account_id)
        if mailbox_id is not None:
            query = query.where(_E.c.mailbox_id == mailbox_id)
        if status is not None:
            query = query.where(_E.c.status == status.value)
        found = (await self._conn.execute(page_query(query, _E.c.id, cursor, limit))).all()
        rows, next_cursor = split_page(found, limit)
        return Page([_notification(r) for r in rows], next_cursor)

    async def claim_due(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> builtins.list[ClaimedNotification]:
        ids = await leases.claim_due_ids(self._conn, _E, now, lease_until, limit)
        if not ids:
            return []
        rows = (await self._conn.execute(_CLAIMED, {"b_ids": ids})).all()
        return [ClaimedNotification(_notification(r), lease_until) for r in rows]

    async def record_attempt(
        self, claimed: ClaimedNotification, outcome: NotificationOutcome, now: datetime
    ) -> bool:
        return await leases.record_attempt(
            self._conn,
            _E,
            claimed.notification.id,
            claimed.lease_until,
            {
                "status": outcome.status.value,
                "attempts": outcome.attempts,
                "next_attempt_at": outcome.next_attempt_at,
                "last_error": outcome.last_error,
                "updated_at": now,
            },
        )

    async def release(self, claims: builtins.list[ClaimedNotification]) -> None:
        await leases.release(self._conn, _E, ((c.notification.id, c.lease_until) for c in claims))

    async def next_wakeup(self) -> datetime | None:
        return await leases.next_claimable_at(self._conn, _E)

    async def hasten(self, dedupe_key: str, now: datetime) -> bool:
        result = await self._conn.execute(
            update(_E)
            .where(
                _E.c.dedupe_key == dedupe_key,
                _E.c.status == NotificationStatus.PENDING.value,
                _E.c.attempts == 0,
                _E.c.next_attempt_at > now,
            )
            .values(next_attempt_at=now, updated_at=now)
        )
        return bool(result.rowcount)

    async def mark_full_notified(self, account_id: str, mailbox_id: str, now: datetime) -> bool:
        result = await self._conn.execute(
            update(_B)
            .where(
                _B.c.id == mailbox_id,
                _B.c.account_id == account_id,
                _B.c.full_notified_at.is_(None),
            )
            .values(full_notified_at=now)
        )
        return bool(result.rowcount)

    async def clear_full_notified(self, account_id: str, mailbox_id: str) -> bool:
        params = {"b_mailbox_id": mailbox_id, "b_account_id": account_id}
        result = await self._conn.execute(_CLEAR_FULL_NOTIFIED, params)
        return bool(result.rowcount)
