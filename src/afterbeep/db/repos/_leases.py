"""Claiming rows of a durable queue under a lease: the SQL the webhook and email outboxes and the
ringless delivery engine share.

A row is due when it has the queue's waiting status (`pending` by default; `accepted` for
voicemail sends), its `next_attempt_at` has come and no live lease holds it.
Claiming stamps `claimed_until`; an attempt is recorded, or a claim released, only while that
exact lease still holds, so a worker that lost its lease cannot overwrite a newer result. On
PostgreSQL `FOR UPDATE SKIP LOCKED` lets several workers and nodes claim at once; SQLite's
single writer (`BEGIN IMMEDIATE`) makes the claim exclusive there.

Every worker polls these, so the statements are built once per table and status, with bound
parameters (building a select costs more than running it); a claim with extra conditions
(`where`) builds its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import (
    Integer,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from afterbeep.db import tables as t

PENDING = "pending"


class _Statements(NamedTuple):
    """One queue's poll, built once. Binds: ``b_now``, ``b_limit``, ``b_ids``, ``b_id`` and
    ``b_lease_until`` (not columns' names: an update's own binds are)."""

    due: Select[Any]
    due_locked: Select[Any]  # PostgreSQL: FOR UPDATE SKIP LOCKED
    claim: Update
    release: Update
    next_claimable: Select[Any]


def _due(
    table: Table, status: str, now: Any, where: Sequence[ColumnElement[bool]]
) -> ColumnElement[bool]:
    c = table.c
    return and_(
        c.status == status,
        c.next_attempt_at <= now,
        or_(c.claimed_until.is_(None), c.claimed_until <= now),
        *where,
    )


@cache
def _statements(table: Table, status: str) -> _Statements:
    c = table.c
    due = (
        select(c.id)
        .where(_due(table, status, bindparam("b_now"), ()))
        .order_by(c.next_attempt_at, c.id)
        .limit(bindparam("b_limit", type_=Integer))
    )
    leased_later = and_(c.claimed_until.is_not(None), c.claimed_until > c.next_attempt_at)
    claimable_at = case((leased_later, c.claimed_until), else_=c.next_attempt_at)
    return _Statements(
        due=due,
        due_locked=due.with_for_update(skip_locked=True),
        claim=update(table)
        .where(c.id.in_(bindparam("b_ids", expanding=True)))
        .values(claimed_until=bindparam("b_lease_until")),
        release=update(table)
        .where(c.id == bindparam("b_id"), c.claimed_until == bindparam("b_lease_until"))
        .values(claimed_until=None),
        next_claimable=select(func.min(claimable_at, type_=t.UtcDateTime())).where(
            c.status == status
        ),
    )


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
    built = _statements(table, status)
    postgresql = conn.dialect.name == "postgresql"
    if where:
        c = table.c
        query = select(c.id).where(_due(table, status, now, where))
        query = query.order_by(c.next_attempt_at, c.id).limit(limit)
        rows = await conn.execute(query.with_for_update(skip_locked=True) if postgresql else query)
    else:
        query = built.due_locked if postgresql else built.due
        rows = await conn.execute(query, {"b_now": now, "b_limit": limit})
    ids = [row.id for row in rows.all()]
    if ids:
        await conn.execute(built.claim, {"b_ids": ids, "b_lease_until": lease_until})
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
    statement = _statements(table, PENDING).release  # the same whatever the status
    for row_id, lease_until in claims:
        await conn.execute(statement, {"b_id": row_id, "b_lease_until": lease_until})


async def next_claimable_at(
    conn: AsyncConnection, table: Table, *, status: str = PENDING
) -> datetime | None:
    """When the earliest waiting row can next be claimed (its due time, or its lease's end)."""
    value = (await conn.execute(_statements(table, status).next_claimable)).scalar_one_or_none()
    return value if isinstance(value, datetime) else None
