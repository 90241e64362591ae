"""SQL repositories for mailboxes and messages (filled in by the mailboxes work)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection


class SqlMailboxRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn


class SqlMessageRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
