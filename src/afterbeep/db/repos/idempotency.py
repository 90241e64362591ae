"""SQL store behind the Idempotency-Key middleware."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from afterbeep.db import tables as t
from afterbeep.db.engine import Database
from afterbeep.services.ports.idempotency import StoredResponse

PENDING = ""


class SqlIdempotencyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def reserve(self, scope: str, key: str) -> StoredResponse | None:
        where = (t.idempotency_keys.c.scope == scope) & (t.idempotency_keys.c.key == key)
        try:
            async with self._db.begin() as conn:
                row = (await conn.execute(select(t.idempotency_keys).where(where))).first()
                if row is None:
                    await conn.execute(
                        insert(t.idempotency_keys).values(
                            scope=scope, key=key, fingerprint=PENDING, created_at=datetime.now(UTC)
                        )
                    )
                    return None
        except IntegrityError:
            return StoredResponse(fingerprint=PENDING, status_code=None, headers=[], body=b"")
        return StoredResponse(
            fingerprint=row.fingerprint,
            status_code=row.status_code,
            headers=[(str(k), str(v)) for k, v in (row.headers or [])],
            body=bytes(row.body or b""),
        )

    async def complete(
        self, scope: str, key: str, fingerprint: str, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        where = (t.idempotency_keys.c.scope == scope) & (t.idempotency_keys.c.key == key)
        async with self._db.begin() as conn:
            await conn.execute(
                update(t.idempotency_keys)
                .where(where)
                .values(fingerprint=fingerprint, status_code=status, headers=[list(h) for h in headers], body=body)
            )

    async def release(self, scope: str, key: str) -> None:
        where = (t.idempotency_keys.c.scope == scope) & (t.idempotency_keys.c.key == key)
        async with self._db.begin() as conn:
            await conn.execute(delete(t.idempotency_keys).where(where))

    async def sweep(self, created_before: datetime) -> int:
        async with self._db.begin() as conn:
            result = await conn.execute(
                delete(t.idempotency_keys).where(t.idempotency_keys.c.created_at < created_before)
            )
        return int(result.rowcount or 0)
