"""SQL repository for the media library (filled in by the media work)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection


class SqlMediaRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
