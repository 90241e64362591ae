"""SQL repository of wrong PINs at the phone menu."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from afterbeep.db import tables as t
from afterbeep.domain.pin_lockout import PinFailures

_P = t.mailbox_pin_failures


class SqlPinFailureRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, mailbox_id: str, source: str) -> PinFailures | None:
        query = select(_P).where(_P.c.mailbox_id == mailbox_id, _P.c.source == source)
        row = (await self._conn.execute(query)).first()
        if row is None:
            return None
        return PinFailures(
            mailbox_id, source, row.failures, row.window_start, row.locked_until, row.lockouts
        )

    async def put(self, record: PinFailures) -> None:
        values = {
            "failures": record.failures,
            "window_start": record.window_start,
            "locked_until": record.locked_until,
            "lockouts": record.lockouts,
        }
        dialect = postgresql if self._conn.dialect.name == "postgresql" else sqlite
        statement: Any = (
            dialect.insert(_P)
            .values(mailbox_id=record.mailbox_id, source=record.source, **values)
            .on_conflict_do_update(index_elements=[_P.c.mailbox_id, _P.c.source], set_=values)
        )
        await self._conn.execute(statement)

    async def clear(self, mailbox_id: str, source: str) -> None:
        await self._conn.execute(
            delete(_P).where(_P.c.mailbox_id == mailbox_id, _P.c.source == source)
        )

    async def clear_mailbox(self, mailbox_id: str) -> None:
        await self._conn.execute(delete(_P).where(_P.c.mailbox_id == mailbox_id))
