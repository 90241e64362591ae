"""Work items, their offers, agents' capacities and tokens on SQL."""

from __future__ import annotations

import builtins
import contextlib
import zlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from afterbeep.db import tables as t
from afterbeep.db.engine import Database
from afterbeep.db.notify import WORK_ITEMS_CHANNEL, notify
from afterbeep.db.repos._paging import page_query, split_page
from afterbeep.domain.queues import AgentStatus
from afterbeep.domain.work_items import (
    OPEN_STATES,
    OfferStatus,
    WorkItem,
    WorkItemState,
    WorkOffer,
)
from afterbeep.services.ports import Page
from afterbeep.services.ports.work_items import AgentRecord, AgentToken

_W = t.work_items
_O = t.work_item_offers
_T = t.agent_tokens
_AS = t.agent_states


def _values(item: WorkItem) -> dict[str, Any]:
    return {
        "queue_id": item.queue_id,
        "channel": item.channel,
        "priority": item.priority,
        "weight": item.weight,
        "state": item.state.value,
        "agent_id": item.agent_id,
        "offer_id": item.offer_id,
        "offer_expires_at": item.offer_expires_at,
        "declined_by": list(item.declined_by),
        "reason": item.reason,
        "notes": item.notes,
        "queued_at": item.queued_at,
        "expires_at": item.expires_at,
        "ended_at": item.ended_at,
        "updated_at": item.updated_at,
    }


def _item(row: Any) -> WorkItem:
    return WorkItem(
        id=row.id,
        account_id=row.account_id,
        voice_call_id=row.voice_call_id,
        queue_id=row.queue_id,
        channel=row.channel,
        priority=row.priority,
        weight=row.weight,
        state=WorkItemState(row.state),
        created_at=row.created_at,
        queued_at=row.queued_at,
        expires_at=row.expires_at,
        updated_at=row.updated_at,
        agent_id=row.agent_id,
        offer_id=row.offer_id,
        offer_expires_at=row.offer_expires_at,
        declined_by=tuple(row.declined_by or ()),
        reason=row.reason,
        notes=row.notes,
        ended_at=row.ended_at,
    )


def _offer(row: Any) -> WorkOffer:
    return WorkOffer(
        id=row.id,
        account_id=row.account_id,
        work_item_id=row.work_item_id,
        agent_id=row.agent_id,
        queue_id=row.queue_id,
        status=OfferStatus(row.status),
        offered_at=row.offered_at,
        expires_at=row.expires_at,
        ended_at=row.ended_at,
    )


def _token(row: Any) -> AgentToken:
    return AgentToken(
        row.id,
        row.account_id,
        row.user_id,
        row.name,
        row.secret_hash,
        row.created_at,
        row.revoked_at,
    )


class SqlWorkItemRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, item: WorkItem) -> None:
        await self._conn.execute(
            insert(_W).values(
                id=item.id,
                account_id=item.account_id,
                voice_call_id=item.voice_call_id,
                created_at=item.created_at,
                **_values(item),
            )
        )

    async def update(self, item: WorkItem) -> None:
        await self._conn.execute(
            update(_W)
            .where(_W.c.id == item.id, _W.c.account_id == item.account_id)
            .values(**_values(item))
        )

    async def get(self, account_id: str, item_id: str) -> WorkItem | None:
        row = (
            await self._conn.execute(
                select(_W).where(_W.c.id == item_id, _W.c.account_id == account_id)
            )
        ).first()
        return _item(row) if row else None

    async def of_voice_call(self, account_id: str, voice_call_id: str) -> builtins.list[WorkItem]:
        query = (
            select(_W)
            .where(_W.c.account_id == account_id, _W.c.voice_call_id == voice_call_id)
            .order_by(_W.c.id)
        )
        return [_item(r) for r in (await self._conn.execute(query)).all()]

    async def open_items(self) -> builtins.list[WorkItem]:
        query = select(_W).where(_W.c.state.in_([s.value for s in OPEN_STATES])).order_by(_W.c.id)
        return [_item(r) for r in (await self._conn.execute(query)).all()]

    async def list(
        self,
        account_id: str,
        queue_id: str | None,
        state: WorkItemState | None,
        cursor: str | None,
        limit: int,
    ) -> Page[WorkItem]:
        query = select(_W).where(_W.c.account_id == account_id)
        if queue_id is not None:
            query = query.where(_W.c.queue_id == queue_id)
        if state is not None:
            query = query.where(_W.c.state == state.value)
        rows = (await self._conn.execute(page_query(query, _W.c.id, cursor, limit))).all()
        items, next_cursor = split_page(rows, limit)
        return Page([_item(r) for r in items], next_cursor)

    async def completed_by(
        self, account_id: str, agent_id: str, limit: int
    ) -> builtins.list[WorkItem]:
        query = (
            select(_W)
            .where(
                _W.c.account_id == account_id,
                _W.c.agent_id == agent_id,
                _W.c.state == WorkItemState.COMPLETED.value,
            )
            .order_by(_W.c.ended_at.desc(), _W.c.id.desc())
            .limit(limit)
        )
        return [_item(r) for r in (await self._conn.execute(query)).all()]

    async def add_offer(self, offer: WorkOffer) -> None:
        await self._conn.execute(
            insert(_O).values(
                id=offer.id,
                account_id=offer.account_id,
                work_item_id=offer.work_item_id,
                agent_id=offer.agent_id,
                queue_id=offer.queue_id,
                status=offer.status.value,
                offered_at=offer.offered_at,
                expires_at=offer.expires_at,
                ended_at=offer.ended_at,
            )
        )

    async def update_offer(self, offer: WorkOffer) -> None:
        await self._conn.execute(
            update(_O)
            .where(_O.c.id == offer.id)
            .values(status=offer.status.value, ended_at=offer.ended_at)
        )

    async def offer(self, offer_id: str) -> WorkOffer | None:
        row = (await self._conn.execute(select(_O).where(_O.c.id == offer_id))).first()
        return _offer(row) if row else None

    async def pending_offers(self) -> builtins.list[WorkOffer]:
        query = select(_O).where(_O.c.status == OfferStatus.PENDING.value).order_by(_O.c.id)
        return [_offer(r) for r in (await self._conn.execute(query)).all()]

    async def routing_memory(self) -> tuple[dict[str, str], dict[tuple[str, str], int]]:
        last = (
            select(_O.c.queue_id, func.max(_O.c.id).label("id")).group_by(_O.c.queue_id).subquery()
        )
        lasts = (
            await self._conn.execute(
                select(_O.c.queue_id, _O.c.agent_id).join(last, _O.c.id == last.c.id)
            )
        ).all()
        accepted = (
            await self._conn.execute(
                select(_O.c.account_id, _O.c.agent_id, func.count())
                .where(_O.c.status == OfferStatus.ACCEPTED.value)
                .group_by(_O.c.account_id, _O.c.agent_id)
            )
        ).all()
        return (
            {r.queue_id: r.agent_id for r in lasts},
            {(r[0], r[1]): int(r[2]) for r in accepted},
        )

    async def offers(self, account_id: str, item_id: str) -> builtins.list[WorkOffer]:
        query = (
            select(_O)
            .where(_O.c.account_id == account_id, _O.c.work_item_id == item_id)
            .order_by(_O.c.offered_at, _O.c.id)
        )
        return [_offer(r) for r in (await self._conn.execute(query)).all()]

    async def agents(self, account_id: str, user_ids: builtins.list[str]) -> dict[str, AgentRecord]:
        query = select(
            _AS.c.user_id, _AS.c.status, _AS.c.capacity, _AS.c.updated_at, _AS.c.idle_since
        ).where(_AS.c.account_id == account_id, _AS.c.user_id.in_(user_ids))
        return {
            r.user_id: AgentRecord(
                r.user_id, AgentStatus(r.status), r.capacity, r.updated_at, r.idle_since
            )
            for r in (await self._conn.execute(query)).all()
        }

    async def mark_idle(self, account_id: str, user_ids: builtins.list[str], now: datetime) -> None:
        at: Any = now if self._conn.dialect.name == "sqlite" else func.clock_timestamp()
        await self._conn.execute(
            update(_AS)
            .where(_AS.c.account_id == account_id, _AS.c.user_id.in_(user_ids))
            .values(idle_since=at)
        )

    async def changed(self, origin: str) -> None:
        await notify(self._conn, WORK_ITEMS_CHANNEL, origin)

    async def set_capacity(
        self, account_id: str, user_id: str, capacity: int | None, now: datetime
    ) -> None:
        done = await self._conn.execute(
            update(_AS)
            .where(_AS.c.account_id == account_id, _AS.c.user_id == user_id)
            .values(capacity=capacity)
        )
        if not done.rowcount:
            await self._conn.execute(
                insert(_AS).values(
                    account_id=account_id,
                    user_id=user_id,
                    status=AgentStatus.OFFLINE.value,
                    capacity=capacity,
                    updated_at=now,
                )
            )

    async def capacities(self, account_id: str) -> dict[str, int | None]:
        query = select(_AS.c.user_id, _AS.c.capacity).where(_AS.c.account_id == account_id)
        return {r.user_id: r.capacity for r in (await self._conn.execute(query)).all()}

    async def add_token(self, token: AgentToken) -> None:
        await self._conn.execute(
            insert(_T).values(
                id=token.id,
                account_id=token.account_id,
                user_id=token.user_id,
                name=token.name,
                secret_hash=token.secret_hash,
                created_at=token.created_at,
                revoked_at=token.revoked_at,
            )
        )

    async def token(self, token_id: str) -> AgentToken | None:
        row = (await self._conn.execute(select(_T).where(_T.c.id == token_id))).first()
        return _token(row) if row else None

    async def tokens(self, account_id: str, user_id: str) -> builtins.list[AgentToken]:
        query = (
            select(_T)
            .where(_T.c.account_id == account_id, _T.c.user_id == user_id)
            .order_by(_T.c.id)
        )
        return [_token(r) for r in (await self._conn.execute(query)).all()]

    async def revoke_token(
        self, account_id: str, user_id: str, token_id: str, now: datetime
    ) -> bool:
        done = await self._conn.execute(
            update(_T)
            .where(
                _T.c.id == token_id,
                _T.c.account_id == account_id,
                _T.c.user_id == user_id,
                _T.c.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        return bool(done.rowcount)


ROUTER_LOCK_KEY = zlib.crc32(b"afterbeep.work_router")  # the advisory lock's key (bigint space)


class SqlRouterLock:
    """The work router's advisory lock on PostgreSQL: a transaction on a connection of its own
    holds `pg_advisory_xact_lock` for the block; a node that dies drops its connection, and
    the lock with it."""

    def __init__(self, db: Database, key: int = ROUTER_LOCK_KEY) -> None:
        self._db = db
        self._key = key

    @contextlib.asynccontextmanager
    async def hold(self, shared: bool = False) -> AsyncIterator[None]:
        take = func.pg_advisory_xact_lock_shared if shared else func.pg_advisory_xact_lock
        async with self._db.engine.connect() as conn, conn.begin():
            await conn.execute(select(take(self._key)))
            yield
