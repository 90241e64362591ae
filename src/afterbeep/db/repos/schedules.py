"""SQL repository for schedules; the rules are stored as the contract's JSON."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from afterbeep.db import tables as t
from afterbeep.db.repos._paging import page_query, split_page
from afterbeep.domain.schedules import Schedule, StoredSchedule, parse_rules
from afterbeep.services.ports import Page

_S = t.schedules


def _schedule(row: Any) -> StoredSchedule:
    return StoredSchedule(
        id=row.id,
        account_id=row.account_id,
        schedule=Schedule(name=row.name, timezone=row.timezone, rules=parse_rules(row.rules)),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _values(stored: StoredSchedule) -> dict[str, Any]:
    return {
        "name": stored.schedule.name,
        "timezone": stored.schedule.timezone,
        "rules": [rule.to_dict() for rule in stored.schedule.rules],
        "updated_at": stored.updated_at,
    }


class SqlScheduleRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, schedule: StoredSchedule) -> None:
        await self._conn.execute(
            insert(_S).values(
                **_values(schedule),
                id=schedule.id,
                account_id=schedule.account_id,
                created_at=schedule.created_at,
            )
        )

    async def get(self, account_id: str, schedule_id: str) -> StoredSchedule | None:
        query = select(_S).where(_S.c.id == schedule_id, _S.c.account_id == account_id)
        row = (await self._conn.execute(query)).first()
        return _schedule(row) if row else None

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[StoredSchedule]:
        query = page_query(select(_S).where(_S.c.account_id == account_id), _S.c.id, cursor, limit)
        rows, next_cursor = split_page((await self._conn.execute(query)).all(), limit)
        return Page([_schedule(r) for r in rows], next_cursor)

    async def update(self, schedule: StoredSchedule) -> bool:
        result = await self._conn.execute(
            update(_S)
            .where(_S.c.id == schedule.id, _S.c.account_id == schedule.account_id)
            .values(**_values(schedule))
        )
        return bool(result.rowcount)

    async def delete(self, account_id: str, schedule_id: str) -> bool:
        result = await self._conn.execute(
            delete(_S).where(_S.c.id == schedule_id, _S.c.account_id == account_id)
        )
        return bool(result.rowcount)
