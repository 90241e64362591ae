"""SQL repository for phone numbers."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, delete, exists, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from afterbeep.db import tables as t
from afterbeep.db.repos._paging import page_query, split_page
from afterbeep.domain.numbers import DestKind, Number, NumberStatus
from afterbeep.services.ports import Page

_N = t.numbers
_BY_E164 = select(_N).where(_N.c.e164 == bindparam("e164"))  # built once: every call
# Where each destination kind lives; kinds without a table cannot be referenced yet.
_DEST_TABLES: dict[DestKind, Table] = {
    DestKind.VOICEMAIL: t.mailboxes,
    DestKind.FLOW: t.flows,
    DestKind.USER: t.users,
}
_DEST_TABLES |= {DestKind.RING_GROUP: t.ring_groups, DestKind.QUEUE: t.queues}


def _kind(value: str | None) -> DestKind | None:
    return DestKind(value) if value else None


def _number(row: Any) -> Number:
    return Number(
        id=row.id,
        account_id=row.account_id,
        e164=row.e164,
        dest_kind=DestKind(row.dest_kind),
        dest_id=row.dest_id,
        schedule_id=row.schedule_id,
        closed_dest_kind=_kind(row.closed_dest_kind),
        closed_dest_id=row.closed_dest_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        holiday_dest_kind=_kind(row.holiday_dest_kind),
        holiday_dest_id=row.holiday_dest_id,
        status=NumberStatus(row.status),
        allow_anonymous=bool(row.allow_anonymous),
    )


def _values(number: Number) -> dict[str, Any]:
    return {
        "e164": number.e164,
        "dest_kind": number.dest_kind.value,
        "dest_id": number.dest_id,
        "schedule_id": number.schedule_id,
        "closed_dest_kind": number.closed_dest_kind.value if number.closed_dest_kind else None,
        "closed_dest_id": number.closed_dest_id,
        "holiday_dest_kind": number.holiday_dest_kind.value if number.holiday_dest_kind else None,
        "holiday_dest_id": number.holiday_dest_id,
        "status": number.status.value,
        "allow_anonymous": number.allow_anonymous,
        "updated_at": number.updated_at,
    }


class SqlNumberRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, number: Number) -> bool:
        if await self.by_e164(number.e164) is not None:
            return False
        values = {
            **_values(number),
            "id": number.id,
            "account_id": number.account_id,
            "created_at": number.created_at,
        }
        try:
            await self._conn.execute(insert(_N).values(**values))
        except IntegrityError:
            # A concurrent insert of the same number won the unique constraint.
            return False
        return True

    async def get(self, account_id: str, number_id: str) -> Number | None:
        row = (
            await self._conn.execute(
                select(_N).where(_N.c.id == number_id, _N.c.account_id == account_id)
            )
        ).first()
        return _number(row) if row else None

    async def by_e164(self, e164: str) -> Number | None:
        row = (await self._conn.execute(_BY_E164, {"e164": e164})).first()
        return _number(row) if row else None

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[Number]:
        query = page_query(select(_N).where(_N.c.account_id == account_id), _N.c.id, cursor, limit)
        rows, next_cursor = split_page((await self._conn.execute(query)).all(), limit)
        return Page([_number(r) for r in rows], next_cursor)

    async def update(self, number: Number) -> bool:
        holder = await self.by_e164(number.e164)
        if holder is not None and holder.id != number.id:
            return False
        try:
            await self._conn.execute(
                update(_N)
                .where(_N.c.id == number.id, _N.c.account_id == number.account_id)
                .values(**_values(number))
            )
        except IntegrityError:
            return False
        return True

    async def delete(self, account_id: str, number_id: str) -> bool:
        result = await self._conn.execute(
            delete(_N).where(_N.c.id == number_id, _N.c.account_id == account_id)
        )
        return bool(result.rowcount)

    async def destination_exists(self, account_id: str, kind: DestKind, dest_id: str) -> bool:
        table = _DEST_TABLES.get(kind)
        if table is None:
            return False
        query = select(exists().where(table.c.id == dest_id, table.c.account_id == account_id))
        return bool((await self._conn.execute(query)).scalar())

    async def numbers_pointing_to(
        self, account_id: str, dest_kind: DestKind, dest_id: str
    ) -> builtins.list[Number]:
        kind = dest_kind.value
        direct = (_N.c.dest_kind == kind) & (_N.c.dest_id == dest_id)
        closed = (_N.c.closed_dest_kind == kind) & (_N.c.closed_dest_id == dest_id)
        holiday = (_N.c.holiday_dest_kind == kind) & (_N.c.holiday_dest_id == dest_id)
        query = (
            select(_N)
            .where(_N.c.account_id == account_id, or_(direct, closed, holiday))
            .order_by(_N.c.id)
        )
        return [_number(r) for r in (await self._conn.execute(query)).all()]

    async def numbers_using_schedule(
        self, account_id: str, schedule_id: str
    ) -> builtins.list[Number]:
        query = (
            select(_N)
            .where(_N.c.account_id == account_id, _N.c.schedule_id == schedule_id)
            .order_by(_N.c.id)
        )
        return [_number(r) for r in (await self._conn.execute(query)).all()]


_VS = t.verified_senders
_SN = t.setup_numbers


class SqlVerifiedSenderRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def holder(self, e164: str) -> str | None:
        row = (await self._conn.execute(select(_VS.c.account_id).where(_VS.c.e164 == e164))).first()
        return str(row.account_id) if row else None

    async def add(self, account_id: str, e164: str, now: datetime) -> bool:
        try:
            await self._conn.execute(
                insert(_VS).values(e164=e164, account_id=account_id, verified_at=now)
            )
        except IntegrityError:
            # Verified meanwhile by a concurrent transaction; the caller raises, rolling back.
            return False
        await self._mirror(account_id, e164, verified=True)
        return True

    async def remove(self, account_id: str, e164: str) -> bool:
        result = await self._conn.execute(
            delete(_VS).where(_VS.c.e164 == e164, _VS.c.account_id == account_id)
        )
        await self._mirror(account_id, e164, verified=False)
        return bool(result.rowcount)

    async def verified_among(self, account_id: str, e164s: Iterable[str]) -> set[str]:
        wanted = list(e164s)
        if not wanted:
            return set()
        query = select(_VS.c.e164).where(_VS.c.account_id == account_id, _VS.c.e164.in_(wanted))
        return {str(r.e164) for r in await self._conn.execute(query)}

    async def _mirror(self, account_id: str, e164: str, *, verified: bool) -> None:
        await self._conn.execute(
            update(_SN)
            .where(_SN.c.account_id == account_id, _SN.c.e164 == e164)
            .values(verified=verified)
        )
