"""The queue line and agents' holds of every node, in the database (`SharedFloor`).

Waiting callers are rows of `queue_callers`; an agent's hold is columns of its `agent_states`
row, claimed by a conditional UPDATE (free, or its hold expired): on PostgreSQL the row lock
taken by the UPDATE makes a second claimer wait and then find it held, so two nodes never offer
the same agent. On SQLite (one process) the single writer does the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, insert, or_, select, update

from afterbeep.db import tables as t
from afterbeep.db.engine import Database
from afterbeep.domain.queues import AgentState, AgentStatus, WaitingCaller
from afterbeep.services.ports.queues import StoredAgent

_C = t.queue_callers
_AS = t.agent_states
_FREE = {"held_state": None, "held_ticket": None, "held_node": None, "held_until": None}


class SqlQueueFloor:
    def __init__(self, db: Database, node_id: str) -> None:
        self._db = db
        self.node_id = node_id

    async def join(
        self, account_id: str, queue_id: str, ticket: str, joined_at: datetime, until: datetime
    ) -> None:
        async with self._db.begin() as conn:
            await conn.execute(
                insert(_C).values(
                    ticket=ticket,
                    queue_id=queue_id,
                    account_id=account_id,
                    node_id=self.node_id,
                    joined_at=joined_at,
                    offered=False,
                    expires_at=until,
                )
            )

    async def look(
        self,
        account_id: str,
        queue_id: str,
        user_ids: Sequence[str],
        now: datetime,
        until: datetime,
        ticket: str | None = None,
    ) -> tuple[list[WaitingCaller], dict[str, StoredAgent]]:
        async with self._db.begin() as conn:
            if ticket is not None:
                await conn.execute(
                    update(_C)
                    .where(_C.c.ticket == ticket, _C.c.node_id == self.node_id)
                    .values(expires_at=until)
                )
            await conn.execute(delete(_C).where(_C.c.queue_id == queue_id, _C.c.expires_at <= now))
            rows = (
                await conn.execute(
                    select(_C.c.ticket, _C.c.joined_at, _C.c.offered).where(
                        _C.c.queue_id == queue_id
                    )
                )
            ).all()
            agents = (
                await conn.execute(
                    select(_AS).where(_AS.c.account_id == account_id, _AS.c.user_id.in_(user_ids))
                )
            ).all()
        waiting = [WaitingCaller(r.ticket, r.joined_at, bool(r.offered)) for r in rows]
        stored = {
            r.user_id: StoredAgent(
                r.user_id,
                AgentStatus(r.status),
                AgentState(r.held_state) if r.held_state and r.held_until > now else None,
                r.held_ticket,
                r.held_until,
                r.idle_since,
            )
            for r in agents
        }
        return waiting, stored

    async def claim(
        self,
        account_id: str,
        user_ids: Sequence[str],
        ticket: str,
        now: datetime,
        until: datetime,
    ) -> list[str]:
        got = []
        async with self._db.begin() as conn:
            for user_id in user_ids:
                result = await conn.execute(
                    update(_AS)
                    .where(
                        _AS.c.account_id == account_id,
                        _AS.c.user_id == user_id,
                        _AS.c.status == AgentStatus.AVAILABLE.value,
                        or_(_AS.c.held_state.is_(None), _AS.c.held_until <= now),
                    )
                    .values(
                        held_state=AgentState.OFFERING.value,
                        held_ticket=ticket,
                        held_node=self.node_id,
                        held_until=until,
                    )
                )
                if result.rowcount:
                    got.append(user_id)
            if got:
                await conn.execute(update(_C).where(_C.c.ticket == ticket).values(offered=True))
        return got

    async def release(
        self, account_id: str, user_id: str, ticket: str, *, still_offered: bool
    ) -> None:
        async with self._db.begin() as conn:
            await conn.execute(
                update(_AS)
                .where(
                    _AS.c.account_id == account_id,
                    _AS.c.user_id == user_id,
                    _AS.c.held_ticket == ticket,
                    _AS.c.held_state == AgentState.OFFERING.value,
                )
                .values(**_FREE)
            )
            if not still_offered:
                await conn.execute(update(_C).where(_C.c.ticket == ticket).values(offered=False))

    async def answered(
        self, account_id: str, user_id: str, ticket: str, others: Sequence[str], until: datetime
    ) -> None:
        async with self._db.begin() as conn:
            await conn.execute(
                update(_AS)
                .where(_AS.c.account_id == account_id, _AS.c.user_id == user_id)
                .values(
                    held_state=AgentState.IN_CALL.value,
                    held_ticket=ticket,
                    held_node=self.node_id,
                    held_until=until,
                )
            )
            if others:
                await conn.execute(
                    update(_AS)
                    .where(
                        _AS.c.account_id == account_id,
                        _AS.c.user_id.in_(others),
                        _AS.c.held_ticket == ticket,
                    )
                    .values(**_FREE)
                )
            await conn.execute(delete(_C).where(_C.c.ticket == ticket))

    async def call_ended(self, account_id: str, user_id: str, wrap_up_until: datetime) -> None:
        async with self._db.begin() as conn:
            await conn.execute(
                update(_AS)
                .where(
                    _AS.c.account_id == account_id,
                    _AS.c.user_id == user_id,
                    _AS.c.held_node == self.node_id,
                    _AS.c.held_state == AgentState.IN_CALL.value,
                )
                .values(
                    held_state=AgentState.WRAP_UP.value,
                    held_until=wrap_up_until,
                    idle_since=wrap_up_until,
                )
            )

    async def left(self, ticket: str) -> None:
        async with self._db.begin() as conn:
            await conn.execute(
                update(_AS)
                .where(
                    _AS.c.held_ticket == ticket,
                    _AS.c.held_state == AgentState.OFFERING.value,
                )
                .values(**_FREE)
            )
            await conn.execute(delete(_C).where(_C.c.ticket == ticket))

    async def renew(self, now: datetime, until: datetime) -> None:
        async with self._db.begin() as conn:
            await conn.execute(
                update(_C)
                .where(_C.c.node_id == self.node_id, _C.c.expires_at > now)
                .values(expires_at=until)
            )
            await conn.execute(
                update(_AS)
                .where(
                    _AS.c.held_node == self.node_id,
                    _AS.c.held_until > now,
                    _AS.c.held_state.in_([AgentState.OFFERING.value, AgentState.IN_CALL.value]),
                )
                .values(held_until=until)
            )
