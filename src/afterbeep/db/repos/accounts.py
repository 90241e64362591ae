"""SQL repositories for accounts, API keys and secrets."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from afterbeep.db import tables as t
from afterbeep.domain.accounts import Account, ApiKey

# Built once: looked up on every API request, and a statement object reused keeps its cache key.
_ACCOUNT_FOR_KEY = (
    select(t.accounts)
    .join(t.api_keys, t.api_keys.c.account_id == t.accounts.c.id)
    .where(t.api_keys.c.key_hash == bindparam("key_hash"), t.api_keys.c.revoked_at.is_(None))
)


class SqlAccountRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, account: Account) -> None:
        await self._conn.execute(
            insert(t.accounts).values(id=account.id, name=account.name, created_at=account.created_at)
        )

    async def get(self, account_id: str) -> Account | None:
        row = (await self._conn.execute(select(t.accounts).where(t.accounts.c.id == account_id))).first()
        return Account(id=row.id, name=row.name, created_at=row.created_at) if row else None

    async def add_key(self, key: ApiKey) -> None:
        await self._conn.execute(
            insert(t.api_keys).values(
                id=key.id, account_id=key.account_id, key_hash=key.key_hash, created_at=key.created_at
            )
        )

    async def account_for_key_hash(self, key_hash: str) -> Account | None:
        row = (await self._conn.execute(_ACCOUNT_FOR_KEY, {"key_hash": key_hash})).first()
        return Account(id=row.id, name=row.name, created_at=row.created_at) if row else None


class SqlSecretRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def put(self, account_id: str, ref: str, value: str) -> None:
        now = datetime.now(UTC)
        where = (t.secrets.c.ref == ref) & (t.secrets.c.account_id == account_id)
        result = await self._conn.execute(update(t.secrets).where(where).values(value=value, updated_at=now))
        if result.rowcount == 0:
            await self._conn.execute(
                insert(t.secrets).values(
                    ref=ref, account_id=account_id, value=value, created_at=now, updated_at=now
                )
            )

    async def get(self, account_id: str, ref: str) -> str | None:
        query = select(t.secrets.c.value).where(t.secrets.c.ref == ref, t.secrets.c.account_id == account_id)
        value = (await self._conn.execute(query)).scalar_one_or_none()
        return str(value) if value is not None else None

    async def delete(self, account_id: str, ref: str) -> None:
        await self._conn.execute(
            delete(t.secrets).where(t.secrets.c.ref == ref, t.secrets.c.account_id == account_id)
        )
