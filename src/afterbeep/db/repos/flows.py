"""SQL repository for call flows (`flows`) and their saved graphs (`flow_versions`)."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from afterbeep.db import tables as t
from afterbeep.db.repos._paging import page_query, split_page
from afterbeep.services.ports import Page
from afterbeep.services.ports.flows import Flow, FlowVersion

_F = t.flows
_V = t.flow_versions


def _flow(row: Any) -> Flow:
    return Flow(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _graph(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    return {"nodes": [], "edges": []}


def _speech(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


class SqlFlowRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, version: FlowVersion) -> None:
        flow = version.flow
        await self._conn.execute(
            insert(_F).values(
                id=flow.id,
                account_id=flow.account_id,
                name=flow.name,
                version=version.version,
                created_at=flow.created_at,
                updated_at=flow.updated_at,
            )
        )
        await self._conn.execute(
            insert(_V).values(
                flow_id=flow.id,
                version=version.version,
                graph=version.graph,
                speech=version.speech,
                created_at=version.created_at,
            )
        )

    async def get(self, account_id: str, flow_id: str) -> Flow | None:
        query = select(_F).where(_F.c.id == flow_id, _F.c.account_id == account_id)
        row = (await self._conn.execute(query)).first()
        return _flow(row) if row else None

    async def get_version(self, account_id: str, flow_id: str, version: int) -> FlowVersion | None:
        flow = await self.get(account_id, flow_id)
        if flow is None:
            return None
        query = select(_V).where(_V.c.flow_id == flow_id, _V.c.version == version)
        row = (await self._conn.execute(query)).first()
        if row is None:
            return None
        return FlowVersion(
            flow, row.version, _graph(row.graph), row.created_at, _speech(row.speech)
        )

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[Flow]:
        query = page_query(select(_F).where(_F.c.account_id == account_id), _F.c.id, cursor, limit)
        rows, next_cursor = split_page((await self._conn.execute(query)).all(), limit)
        return Page([_flow(r) for r in rows], next_cursor)

    async def add_version(
        self,
        account_id: str,
        flow_id: str,
        name: str,
        graph: dict[str, Any],
        now: datetime,
        speech: dict[str, str] | None = None,
    ) -> int | None:
        # The UPDATE takes the row's lock first, so concurrent saves number their versions in turn.
        bumped = await self._conn.execute(
            update(_F)
            .where(_F.c.id == flow_id, _F.c.account_id == account_id)
            .values(version=_F.c.version + 1, name=name, updated_at=now)
            .returning(_F.c.version)
        )
        version = bumped.scalar_one_or_none()
        if version is None:
            return None
        await self._conn.execute(
            insert(_V).values(
                flow_id=flow_id, version=version, graph=graph, speech=speech or {}, created_at=now
            )
        )
        return int(version)

    async def delete(self, account_id: str, flow_id: str) -> bool:
        if await self.get(account_id, flow_id) is None:
            return False
        await self._conn.execute(delete(_V).where(_V.c.flow_id == flow_id))
        result = await self._conn.execute(
            delete(_F).where(_F.c.id == flow_id, _F.c.account_id == account_id)
        )
        return bool(result.rowcount)

    async def current_versions_mentioning(
        self, account_id: str, text: str
    ) -> builtins.list[FlowVersion]:
        query = (
            select(_F, _V.c.graph, _V.c.speech, _V.c.created_at.label("version_created_at"))
            .join(_V, (_V.c.flow_id == _F.c.id) & (_V.c.version == _F.c.version))
            .where(
                _F.c.account_id == account_id,
                or_(
                    cast(_V.c.graph, String).contains(text, autoescape=True),
                    cast(_V.c.speech, String).contains(text, autoescape=True),
                ),
            )
        )
        return [
            FlowVersion(
                _flow(row),
                row.version,
                _graph(row.graph),
                row.version_created_at,
                _speech(row.speech),
            )
            for row in (await self._conn.execute(query)).all()
        ]

    async def existing_media(self, account_id: str, ids: Iterable[str]) -> builtins.set[str]:
        wanted = sorted(set(ids))
        if not wanted:
            return set()
        query = select(t.media.c.id).where(
            t.media.c.account_id == account_id, t.media.c.id.in_(wanted)
        )
        return set((await self._conn.execute(query)).scalars())

    async def existing_mailboxes(self, account_id: str, ids: Iterable[str]) -> builtins.set[str]:
        wanted = sorted(set(ids))
        if not wanted:
            return set()
        query = select(t.mailboxes.c.id).where(
            t.mailboxes.c.account_id == account_id, t.mailboxes.c.id.in_(wanted)
        )
        return set((await self._conn.execute(query)).scalars())

    async def existing_schedules(self, account_id: str, ids: Iterable[str]) -> builtins.set[str]:
        wanted = sorted(set(ids))
        if not wanted:
            return set()
        query = select(t.schedules.c.id).where(
            t.schedules.c.account_id == account_id, t.schedules.c.id.in_(wanted)
        )
        return set((await self._conn.execute(query)).scalars())
