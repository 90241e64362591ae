"""SQL repositories for ring groups, queues and agents' statuses; members are stored as JSON."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Table, case, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from afterbeep.db import tables as t
from afterbeep.db.repos._paging import page_query, split_page
from afterbeep.domain.numbers import Destination, DestKind
from afterbeep.domain.queues import AgentStatus, Queue, QueueMember, QueueSettings, QueueStrategy
from afterbeep.domain.ring_groups import RingGroup, RingGroupMember, RingStrategy
from afterbeep.services.ports import Page

_RG = t.ring_groups
_Q = t.queues
_AS = t.agent_states


def _dest(row: Any, prefix: str) -> Destination | None:
    kind = getattr(row, f"{prefix}_kind")
    return Destination(DestKind(kind), getattr(row, f"{prefix}_id")) if kind else None


def _dest_values(prefix: str, dest: Destination | None) -> dict[str, Any]:
    return {
        f"{prefix}_kind": dest.kind.value if dest is not None else None,
        f"{prefix}_id": dest.id if dest is not None else None,
    }


def _group(row: Any) -> RingGroup:
    return RingGroup(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        strategy=RingStrategy(row.strategy),
        ring_timeout_sec=row.ring_timeout_sec,
        members=tuple(
            RingGroupMember(
                user_id=m.get("user_id"),
                device_id=m.get("device_id"),
                position=int(m.get("position", 0)),
                delay_sec=float(m.get("delay_sec", 0)),
                timeout_sec=None if m.get("timeout_sec") is None else float(m["timeout_sec"]),
            )
            for m in row.members
        ),
        created_at=row.created_at,
        updated_at=row.updated_at,
        moh_media_id=row.moh_media_id,
        exit_dest=_dest(row, "exit_dest"),
        schedule_id=row.schedule_id,
        closed_dest=_dest(row, "closed_dest"),
        holiday_dest=_dest(row, "holiday_dest"),
    )


def _group_values(group: RingGroup) -> dict[str, Any]:
    return {
        "name": group.name,
        "strategy": group.strategy.value,
        "ring_timeout_sec": group.ring_timeout_sec,
        "moh_media_id": group.moh_media_id,
        "members": [
            {
                "user_id": m.user_id,
                "device_id": m.device_id,
                "position": m.position,
                "delay_sec": m.delay_sec,
                "timeout_sec": m.timeout_sec,
            }
            for m in group.members
        ],
        **_dest_values("exit_dest", group.exit_dest),
        "schedule_id": group.schedule_id,
        **_dest_values("closed_dest", group.closed_dest),
        **_dest_values("holiday_dest", group.holiday_dest),
        "updated_at": group.updated_at,
    }


_SETTINGS = (
    "agent_ring_timeout_sec",
    "max_wait_sec",
    "wrap_up_sec",
    "max_no_answer",
    "announce_position",
    "announce_first_sec",
    "announce_interval_sec",
    "max_queued",
    "work_offer_timeout_sec",
    "work_overflow_sec",
    "work_fallback_queue_id",
    "work_ttl_sec",
)
_QUEUE_DESTS = (
    "timeout_dest",
    "abandon_dest",
    "no_agents_dest",
    "queue_full_dest",
    "closed_dest",
    "holiday_dest",
)


def _queue(row: Any) -> Queue:
    settings = QueueSettings(
        QueueStrategy(row.strategy), **{name: getattr(row, name) for name in _SETTINGS}
    )
    return Queue(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        settings=settings,
        members=tuple(QueueMember(m["user_id"], int(m.get("tier_level", 1))) for m in row.members),
        created_at=row.created_at,
        updated_at=row.updated_at,
        moh_media_id=row.moh_media_id,
        language=row.language,
        schedule_id=row.schedule_id,
        **{name: _dest(row, name) for name in _QUEUE_DESTS},
    )


def _queue_values(queue: Queue) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": queue.name,
        "strategy": queue.settings.strategy.value,
        **{name: getattr(queue.settings, name) for name in _SETTINGS},
        "moh_media_id": queue.moh_media_id,
        "language": queue.language,
        "members": [{"user_id": m.user_id, "tier_level": m.tier_level} for m in queue.members],
        "schedule_id": queue.schedule_id,
        "updated_at": queue.updated_at,
    }
    for name in _QUEUE_DESTS:
        values.update(_dest_values(name, getattr(queue, name)))
    return values


class _Crud:
    def __init__(self, conn: AsyncConnection, table: Table) -> None:
        self._conn = conn
        self._t = table

    async def _add(
        self, object_id: str, account_id: str, created: Any, values: Mapping[str, Any]
    ) -> None:
        await self._conn.execute(
            insert(self._t).values(
                **values, id=object_id, account_id=account_id, created_at=created
            )
        )

    async def _get(self, account_id: str, object_id: str) -> Any:
        table = self._t
        query = select(table).where(table.c.id == object_id, table.c.account_id == account_id)
        return (await self._conn.execute(query)).first()

    async def _list(
        self, account_id: str, cursor: str | None, limit: int
    ) -> tuple[list[Any], str | None]:
        table = self._t
        query = page_query(
            select(table).where(table.c.account_id == account_id), table.c.id, cursor, limit
        )
        return split_page((await self._conn.execute(query)).all(), limit)

    async def _update(self, object_id: str, account_id: str, values: Mapping[str, Any]) -> bool:
        table = self._t
        result = await self._conn.execute(
            update(table)
            .where(table.c.id == object_id, table.c.account_id == account_id)
            .values(**values)
        )
        return bool(result.rowcount)

    async def delete(self, account_id: str, object_id: str) -> bool:
        table = self._t
        result = await self._conn.execute(
            delete(table).where(table.c.id == object_id, table.c.account_id == account_id)
        )
        return bool(result.rowcount)


class SqlRingGroupRepo(_Crud):
    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__(conn, _RG)

    async def add(self, group: RingGroup) -> None:
        await self._add(group.id, group.account_id, group.created_at, _group_values(group))

    async def get(self, account_id: str, group_id: str) -> RingGroup | None:
        row = await self._get(account_id, group_id)
        return _group(row) if row else None

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[RingGroup]:
        rows, next_cursor = await self._list(account_id, cursor, limit)
        return Page([_group(r) for r in rows], next_cursor)

    async def update(self, group: RingGroup) -> bool:
        return await self._update(group.id, group.account_id, _group_values(group))


class SqlQueueRepo(_Crud):
    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__(conn, _Q)

    async def add(self, queue: Queue) -> None:
        await self._add(queue.id, queue.account_id, queue.created_at, _queue_values(queue))

    async def get(self, account_id: str, queue_id: str) -> Queue | None:
        row = await self._get(account_id, queue_id)
        return _queue(row) if row else None

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[Queue]:
        rows, next_cursor = await self._list(account_id, cursor, limit)
        return Page([_queue(r) for r in rows], next_cursor)

    async def update(self, queue: Queue) -> bool:
        return await self._update(queue.id, queue.account_id, _queue_values(queue))

    async def member_user_ids(self, account_id: str) -> set[str]:
        query = select(_Q.c.members).where(_Q.c.account_id == account_id)
        return {
            m["user_id"] for row in (await self._conn.execute(query)).all() for m in row.members
        }

    async def statuses(
        self, account_id: str, user_ids: builtins.list[str] | None = None
    ) -> dict[str, AgentStatus]:
        query = select(_AS.c.user_id, _AS.c.status).where(_AS.c.account_id == account_id)
        if user_ids is not None:
            query = query.where(_AS.c.user_id.in_(user_ids))
        rows = (await self._conn.execute(query)).all()
        return {row.user_id: AgentStatus(row.status) for row in rows}

    async def set_status(
        self, account_id: str, user_id: str, status: AgentStatus, now: datetime
    ) -> None:
        values: dict[str, Any] = {"status": status.value, "updated_at": now}
        if status is AgentStatus.AVAILABLE:  # back from a break or offline: a new streak
            values["missed_in_row"] = case(
                (_AS.c.status != AgentStatus.AVAILABLE.value, 0), else_=_AS.c.missed_in_row
            )
        result = await self._conn.execute(
            update(_AS)
            .where(_AS.c.account_id == account_id, _AS.c.user_id == user_id)
            .values(values)
        )
        if not result.rowcount:
            await self._conn.execute(
                insert(_AS).values(
                    account_id=account_id, user_id=user_id, status=status.value, updated_at=now
                )
            )
