"""SQL repositories for webhook subscriptions and the durable event outbox (`webhook_deliveries`).

`SqlEventOutbox.publish` writes one pending delivery row per subscribed webhook inside the
caller's transaction, so an event is queued if and only if the change that caused it commits.

Claiming (`SqlWebhookRepo.claim_due`) is safe with several dispatchers: on PostgreSQL the due
rows are picked with `SELECT ... FOR UPDATE SKIP LOCKED` and stamped with a `claimed_until`
lease in the same transaction, so concurrent claimers get disjoint rows and the rows of a
crashed dispatcher become claimable again when the lease runs out. On SQLite every transaction
is `BEGIN IMMEDIATE` (one writer), which makes the same claim exclusive.

In-process wake-ups: `publish` marks the pooled connection, and a pool `checkin` listener (the
connection comes back only after COMMIT or ROLLBACK has finished) calls the watchers, so a
dispatcher never looks for a row before it is visible. SQLAlchemy Core has no after-commit hook.
"""

from __future__ import annotations

import builtins
import json
import weakref
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, event, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import Pool

from afterbeep.db import tables as t
from afterbeep.db.repos import _leases as leases
from afterbeep.db.repos._paging import page_query, split_page
from afterbeep.domain.clock import iso
from afterbeep.domain.ids import new_id
from afterbeep.domain.webhooks import AttemptOutcome, Delivery, DeliveryStatus, Webhook
from afterbeep.services.ports import Page
from afterbeep.services.ports.events import ClaimedDelivery

_W = t.webhooks
_D = t.webhook_deliveries
_PUBLISHED = "afterbeep.published"
_PENDING = DeliveryStatus.PENDING.value
# Built once: every accepted send publishes (see `_SETUP_GET` in `ringless`).
_SUBSCRIBERS = (
    select(_W.c.id, _W.c.events).where(_W.c.account_id == bindparam("account_id")).order_by(_W.c.id)
)
_CLAIMED = (  # built once: every poll that claims
    select(_D, _W.c.url, _W.c.secret)
    .join(_W, _W.c.id == _D.c.webhook_id)
    .where(_D.c.id.in_(bindparam("b_ids", expanding=True)))
    .order_by(_D.c.next_attempt_at, _D.c.id)
)

Watcher = Callable[[], None]
_watchers: weakref.WeakKeyDictionary[Pool, list[Watcher]] = weakref.WeakKeyDictionary()


def _webhook(row: Any) -> Webhook:
    return Webhook(
        id=row.id,
        account_id=row.account_id,
        url=row.url,
        events=tuple(row.events),
        secret=row.secret,
        created_at=row.created_at,
    )


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row.id,
        account_id=row.account_id,
        webhook_id=row.webhook_id,
        event_id=row.event_id,
        event=row.event,
        payload=row.payload,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def take_published(info: dict[Any, Any]) -> bool:
    """Whether a unit of work published an event (and forget it): for connections that are not
    checked in to the watched pool (`DirectConnection`), whose caller fires `notify_published`."""
    return bool(info.pop(_PUBLISHED, False))


def notify_published(pool: Pool) -> None:
    for watcher in list(_watchers.get(pool, ())):
        watcher()


def _watch_pool(pool: Pool, callback: Watcher) -> Watcher:
    if pool not in _watchers:
        _watchers[pool] = []
        pool_ref = weakref.ref(pool)

        def on_checkin(_dbapi_conn: Any, record: Any) -> None:
            if record is None or not record.info.pop(_PUBLISHED, False):
                return
            owner = pool_ref()
            for watcher in list(_watchers.get(owner, ())) if owner is not None else ():
                watcher()

        event.listen(pool, "checkin", on_checkin)
    _watchers[pool].append(callback)

    def unwatch() -> None:
        callbacks = _watchers.get(pool)
        if callbacks and callback in callbacks:
            callbacks.remove(callback)

    return unwatch


class SqlWebhookRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, webhook: Webhook) -> None:
        await self._conn.execute(
            insert(_W).values(
                id=webhook.id,
                account_id=webhook.account_id,
                url=webhook.url,
                events=list(webhook.events),
                secret=webhook.secret,
                created_at=webhook.created_at,
            )
        )

    async def get(self, account_id: str, webhook_id: str) -> Webhook | None:
        query = select(_W).where(_W.c.id == webhook_id, _W.c.account_id == account_id)
        row = (await self._conn.execute(query)).first()
        return _webhook(row) if row else None

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[Webhook]:
        query = page_query(select(_W).where(_W.c.account_id == account_id), _W.c.id, cursor, limit)
        rows, next_cursor = split_page((await self._conn.execute(query)).all(), limit)
        return Page([_webhook(r) for r in rows], next_cursor)

    async def delete(self, account_id: str, webhook_id: str) -> bool:
        await self._conn.execute(
            delete(_D).where(_D.c.webhook_id == webhook_id, _D.c.account_id == account_id)
        )
        result = await self._conn.execute(
            delete(_W).where(_W.c.id == webhook_id, _W.c.account_id == account_id)
        )
        return bool(result.rowcount)

    async def deliveries(
        self, account_id: str, webhook_id: str, cursor: str | None, limit: int
    ) -> Page[Delivery]:
        base = select(_D).where(_D.c.webhook_id == webhook_id, _D.c.account_id == account_id)
        found = (await self._conn.execute(page_query(base, _D.c.id, cursor, limit))).all()
        rows, next_cursor = split_page(found, limit)
        return Page([_delivery(r) for r in rows], next_cursor)

    async def claim_due(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> builtins.list[ClaimedDelivery]:
        ids = await leases.claim_due_ids(self._conn, _D, now, lease_until, limit)
        if not ids:
            return []
        rows = (await self._conn.execute(_CLAIMED, {"b_ids": ids})).all()
        return [ClaimedDelivery(_delivery(r), r.url, r.secret, lease_until) for r in rows]

    async def record_attempt(
        self, claimed: ClaimedDelivery, outcome: AttemptOutcome, now: datetime
    ) -> bool:
        return await leases.record_attempt(
            self._conn,
            _D,
            claimed.delivery.id,
            claimed.lease_until,
            {
                "status": outcome.status.value,
                "attempts": outcome.attempts,
                "next_attempt_at": outcome.next_attempt_at,
                "last_status_code": outcome.last_status_code,
                "last_error": outcome.last_error,
                "updated_at": now,
            },
        )

    async def release(self, claims: builtins.list[ClaimedDelivery]) -> None:
        await leases.release(self._conn, _D, ((c.delivery.id, c.lease_until) for c in claims))

    async def next_wakeup(self) -> datetime | None:
        return await leases.next_claimable_at(self._conn, _D)

    def watch_published(self, callback: Watcher) -> Watcher:
        return _watch_pool(self._conn.engine.sync_engine.pool, callback)


class SqlEventOutbox:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def publish(self, account_id: str, event: str, data: Mapping[str, Any]) -> None:
        rows = (await self._conn.execute(_SUBSCRIBERS, {"account_id": account_id})).all()
        targets = [row.id for row in rows if event in (row.events or ())]
        if not targets:
            return
        # The port carries no clock: rows are due now by the wall clock.
        now = datetime.now(UTC)
        event_id = new_id("evt")
        payload = json.dumps(
            {"id": event_id, "type": event, "created_at": iso(now), "data": dict(data)},
            separators=(",", ":"),
            default=str,
        )
        await self._conn.execute(
            insert(_D),
            [
                {
                    "id": new_id("whd"),
                    "account_id": account_id,
                    "webhook_id": webhook_id,
                    "event_id": event_id,
                    "event": event,
                    "payload": payload,
                    "status": _PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "last_status_code": None,
                    "last_error": None,
                    "claimed_until": None,
                    "created_at": now,
                    "updated_at": now,
                }
                for webhook_id in targets
            ],
        )
        self._conn.info[_PUBLISHED] = True
