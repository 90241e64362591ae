"""SQL repositories for accounts, API keys and secrets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

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


_K = t.api_keys


def _account(row: Any) -> Account:
    return Account(
        id=row.id,
        name=row.name,
        created_at=row.created_at,
        timezone=row.timezone,
        language=row.language,
        allow_device_outbound=bool(getattr(row, "allow_device_outbound", False)),
        device_outbound_setup_id=getattr(row, "device_outbound_setup_id", None),
    )


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        account_id=row.account_id,
        key_hash=row.key_hash,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


class SqlAccountRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, account: Account) -> None:
        await self._conn.execute(
            insert(t.accounts).values(
                id=account.id,
                name=account.name,
                created_at=account.created_at,
                timezone=account.timezone,
                language=account.language,
            )
        )

    async def update_settings(self, account_id: str, timezone: str, language: str) -> None:
        await self._conn.execute(
            update(t.accounts)
            .where(t.accounts.c.id == account_id)
            .values(timezone=timezone, language=language)
        )

    async def set_device_outbound(self, account_id: str, allowed: bool) -> None:
        await self._conn.execute(
            update(t.accounts)
            .where(t.accounts.c.id == account_id)
            .values(allow_device_outbound=allowed)
        )

    async def set_device_outbound_setup(self, account_id: str, setup_id: str | None) -> None:
        await self._conn.execute(
            update(t.accounts)
            .where(t.accounts.c.id == account_id)
            .values(device_outbound_setup_id=setup_id)
        )

    async def get(self, account_id: str) -> Account | None:
        row = (await self._conn.execute(select(t.accounts).where(t.accounts.c.id == account_id))).first()
        return _account(row) if row else None

    async def add_key(self, key: ApiKey) -> None:
        await self._conn.execute(
            insert(t.api_keys).values(
                id=key.id, account_id=key.account_id, key_hash=key.key_hash, created_at=key.created_at
            )
        )

    async def account_for_key_hash(self, key_hash: str) -> Account | None:
        row = (await self._conn.execute(_ACCOUNT_FOR_KEY, {"key_hash": key_hash})).first()
        return _account(row) if row else None

    async def lock(self, account_id: str) -> Account | None:
        query = select(t.accounts).where(t.accounts.c.id == account_id).with_for_update()
        row = (await self._conn.execute(query)).first()
        return _account(row) if row else None

    async def get_key(self, key_id: str) -> ApiKey | None:
        row = (await self._conn.execute(select(_K).where(_K.c.id == key_id))).first()
        return _key(row) if row else None

    async def active_keys(self, account_id: str) -> list[ApiKey]:
        query = (
            select(_K)
            .where(_K.c.account_id == account_id, _K.c.revoked_at.is_(None))
            .order_by(_K.c.created_at, _K.c.id)
        )
        return [_key(r) for r in await self._conn.execute(query)]

    async def revoke_key(self, key_id: str, now: datetime) -> bool:
        result = await self._conn.execute(
            update(_K).where(_K.c.id == key_id, _K.c.revoked_at.is_(None)).values(revoked_at=now)
        )
        return bool(result.rowcount)

    async def touch_key(self, key_id: str, now: datetime) -> None:
        await self._conn.execute(update(_K).where(_K.c.id == key_id).values(last_used_at=now))

    async def erase(self, account_id: str) -> dict[str, int]:
        # Children before parents (rows of one account refer only to rows of that account).
        removed: dict[str, int] = {}
        for table in reversed(t.metadata.sorted_tables):
            if table is t.accounts or "account_id" not in table.c:
                continue
            result = await self._conn.execute(delete(table).where(table.c.account_id == account_id))
            if result.rowcount:
                removed[table.name] = int(result.rowcount)
        # Idempotency records are scoped by the account id.
        result = await self._conn.execute(
            delete(t.idempotency_keys).where(t.idempotency_keys.c.scope == account_id)
        )
        if result.rowcount:
            removed[t.idempotency_keys.name] = int(result.rowcount)
        result = await self._conn.execute(delete(t.accounts).where(t.accounts.c.id == account_id))
        removed[t.accounts.name] = int(result.rowcount)
        return removed


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
