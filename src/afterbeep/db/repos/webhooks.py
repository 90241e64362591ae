"""SQL repositories for webhooks and the event outbox (filled in by the webhooks work)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection


class SqlWebhookRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn


class SqlEventOutbox:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def publish(self, account_id: str, event: str, data: Mapping[str, Any]) -> None:
        raise NotImplementedError
