"""SQL repository for phone numbers (filled in by the numbers work)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection


class SqlNumberRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
