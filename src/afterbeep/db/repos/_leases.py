"""Claiming rows of a durable queue under a lease: the SQL the webhook and email outboxes and the
ringless delivery engine share.

A row is due when it has the queue's waiting status (`pending` by default; `accepted` for
voicemail sends), its `next_attempt_at` has come and no live lease holds it.
Claiming stamps `claimed_until`; an attempt is recorded, or a claim released, only while that
exact lease still holds, so a worker that lost its lease cannot overwrite a newer result. On
PostgreSQL `FOR UPDATE SKIP LOCKED` lets several workers and nodes claim at once; SQLite's
single writer (`BEGIN IMMEDIATE`) makes the claim exclusive there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from afterbeep.db import tables as t

PENDING = "pending"


async def claim_due_ids(
    conn: AsyncConnection,
    table: Table,
    now: datetime,
    lease_until: datetime,
    limit: int,
    *,
    status: str = PENDING,
    where: Sequence[ColumnElement[bool]] = (),
) -> list[str]:
    c = table.c
    due = and_(
        c.status == status,
        c.next_attempt_at <= now,
        or_(c.claimed_until.is_(None), c.claimed_until <= now),
        *where,
    )
    query = select(c.id).where(due).order_by(c.next_attempt_at, c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = [row.id for row in (await conn.execute(query)).all()]
    if ids:
        await conn.execute(update(table).where(c.id.in_(ids)).values(claimed_until=lease_until))
    return ids


async def record_attempt(
    conn: AsyncConnection,
    table: Table,
    row_id: str,
    lease_until: datetime,
    values: Mapping[str, Any],
    *,
    status: str = PENDING,
) -> bool:
    """Write an attempt's outcome and drop the lease if it still holds; False when it was lost."""
    c = table.c
    result = await conn.execute(
        update(table)
        .where(c.id == row_id, c.status == status, c.claimed_until == lease_until)
        .values(**values, claimed_until=None)
    )
    return bool(result.rowcount)


async def release(conn: AsyncConnection, table: Table, claims: Iterable[tuple[str, datetime]]) -> None:
    """Give claims back unattempted (row id, lease)."""
    c = table.c
    for row_id, lease_until in claims:
        await conn.execute(
            update(table)
            .where(c.id == row_id, c.claimed_until == lease_until)
            .values(claimed_until=None)
        )


async def next_claimable_at(
    conn: AsyncConnection, table: Table, *, status: str = PENDING
) -> datetime | None:
    """When the earliest waiting row can next be claimed (its due time, or its lease's end)."""
    c = table.c
    leased_later = and_(c.claimed_until.is_not(None), c.claimed_until > c.next_attempt_at)
    claimable_at = case((leased_later, c.claimed_until), else_=c.next_attempt_at)
    query = select(func.min(claimable_at, type_=t.UtcDateTime())).where(c.status == status)
    value = (await conn.execute(query)).scalar_one_or_none()
    return value if isinstance(value, datetime) else None
