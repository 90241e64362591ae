"""The queue line and agents' holds of every node, in the database (`SharedFloor`).

Waiting callers are rows of `queue_callers`; an agent's hold is columns of its `agent_states`
row, claimed by a conditional UPDATE (free, or its hold expired): on PostgreSQL the row lock
taken by the UPDATE makes a second claimer wait and then find it held, so two nodes never offer
the same agent. On SQLite (one process) the single writer does the same.

What the strategies and statistics keep is stored too (`queue_tallies`, and an agent's missed
streak and calls): a claim first bumps its queue's offer count, on the condition that it is the
count its node saw when it chose (the row lock orders two claims of one queue; the second, made
on a stale view, gets nothing and its node looks again). Callers are ordered by the database's
clock (`clock_timestamp()`), never a node's; so are leases: a hold or a caller's row lives until
the database's time when it was taken or renewed plus the lease, and its expiry is compared in
SQL with the database's time, so the nodes' clocks need not agree. (On SQLite, one process, the
node's clock is the only one: it is used as given.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Interval

from afterbeep.db import tables as t
from afterbeep.db.engine import Database
from afterbeep.db.notify import AGENT_STATE_CHANNEL, notify
from afterbeep.domain.clock import Clock, SystemClock
from afterbeep.domain.queues import AgentState, AgentStatus, WaitingCaller
from afterbeep.services.ports.queues import Look, QueueTally, StoredAgent

_C = t.queue_callers
_AS = t.agent_states
_T = t.queue_tallies
_FREE = {"held_state": None, "held_ticket": None, "held_node": None, "held_until": None}
_COUNTED = ("abandoned", "timed_out")


class _NoneGot(Exception):
    """A claim got no agent: what it wrote (the queue's offer count) is rolled back."""


class SqlQueueFloor:
    def __init__(self, db: Database, node_id: str, clock: Clock | None = None) -> None:
        self._db = db
        self.node_id = node_id
        self._clock = clock or SystemClock()  # SQLite only

    def _db_now(self) -> ColumnElement[Any]:
        if self._db.is_sqlite:  # one process: its clock is the only one
            return func.strftime("%Y-%m-%d %H:%M:%f", "now")
        return func.clock_timestamp()

    def _now(self) -> ColumnElement[Any]:
        """Now, for leases: the database's clock (on SQLite, the node's)."""
        if self._db.is_sqlite:
            return literal(self._clock.now(), t.UtcDateTime())
        return func.clock_timestamp()

    def _until(self, lease: timedelta) -> ColumnElement[Any]:
        """`lease` from now, on the database's clock (on SQLite, the node's)."""
        if self._db.is_sqlite:
            return literal(self._clock.now() + lease, t.UtcDateTime())
        return func.clock_timestamp() + literal(lease, Interval())

    async def _tell(self, conn: AsyncConnection, account_id: str, *user_ids: str) -> None:
        """The other nodes hear at commit that these agents' stored state changed."""
        for user_id in user_ids:
            await notify(conn, AGENT_STATE_CHANNEL, f"{self.node_id} {account_id} {user_id}")

    async def status_changed(self, account_id: str, user_id: str) -> None:
        async with self._db.begin() as conn:
            await self._tell(conn, account_id, user_id)

    async def join(
        self, account_id: str, queue_id: str, ticket: str, lease: timedelta, waited: float = 0.0
    ) -> datetime:
        joined: ColumnElement[Any] = self._db_now()
        if waited > 0 and not self._db.is_sqlite:
            joined = joined - literal(timedelta(seconds=waited), Interval())
        async with self._db.begin() as conn:
            at = (
                await conn.execute(
                    insert(_C)
                    .values(
                        ticket=ticket,
                        queue_id=queue_id,
                        account_id=account_id,
                        node_id=self.node_id,
                        joined_at=joined,
                        offered=False,
                        expires_at=self._until(lease),
                    )
                    .returning(_C.c.joined_at)
                )
            ).scalar_one()
            await self._tally_row(conn, account_id, queue_id)
        assert isinstance(at, datetime)
        return at

    async def _tally_row(self, conn: AsyncConnection, account_id: str, queue_id: str) -> None:
        values = {
            "queue_id": queue_id,
            "account_id": account_id,
            "offers": 0,
            "answered": 0,
            "abandoned": 0,
            "timed_out": 0,
        }
        make = sqlite_insert if self._db.is_sqlite else pg_insert
        await conn.execute(make(_T).values(**values).on_conflict_do_nothing())

    async def look(
        self,
        account_id: str,
        queue_id: str,
        user_ids: Sequence[str],
        lease: timedelta,
        ticket: str | None = None,
    ) -> Look:
        async with self._db.begin() as conn:
            if ticket is not None:
                await conn.execute(
                    update(_C)
                    .where(_C.c.ticket == ticket, _C.c.node_id == self.node_id)
                    .values(expires_at=self._until(lease))
                )
            await conn.execute(
                delete(_C).where(_C.c.queue_id == queue_id, _C.c.expires_at <= self._now())
            )
            rows = (
                await conn.execute(
                    select(_C.c.ticket, _C.c.joined_at, _C.c.offered).where(
                        _C.c.queue_id == queue_id
                    )
                )
            ).all()
            tally = (await conn.execute(select(_T).where(_T.c.queue_id == queue_id))).first()
            at = await self._at(conn)
            stored = await self._agents(conn, account_id, user_ids, at)
        waiting = [WaitingCaller(r.ticket, r.joined_at, bool(r.offered)) for r in rows]
        counts = QueueTally()
        if tally is not None:
            counts = QueueTally(
                tally.offers, tally.last_offered, tally.answered, tally.abandoned, tally.timed_out
            )
        return Look(waiting, stored, counts, at)

    async def _at(self, conn: AsyncConnection) -> datetime:
        """The database's time (the reference of what is read in this transaction)."""
        if self._db.is_sqlite:
            return self._clock.now()
        at = (await conn.execute(select(func.clock_timestamp()))).scalar_one()
        assert isinstance(at, datetime)
        return at

    async def agents(self, account_id: str, user_ids: Sequence[str]) -> dict[str, StoredAgent]:
        async with self._db.begin() as conn:
            return await self._agents(conn, account_id, user_ids, await self._at(conn))

    async def _agents(
        self, conn: AsyncConnection, account_id: str, user_ids: Sequence[str], at: datetime
    ) -> dict[str, StoredAgent]:
        live = and_(_AS.c.held_state.is_not(None), _AS.c.held_until > self._now())
        agents = (
            await conn.execute(
                select(_AS, live.label("held_live")).where(
                    _AS.c.account_id == account_id, _AS.c.user_id.in_(user_ids)
                )
            )
        ).all()
        return {
            r.user_id: StoredAgent(
                r.user_id,
                AgentStatus(r.status),
                AgentState(r.held_state) if r.held_live else None,
                r.held_ticket,
                r.held_until,
                r.idle_since,
                r.missed_in_row,
                r.calls,
                at,
            )
            for r in agents
        }

    async def claim(
        self,
        account_id: str,
        queue_id: str,
        user_ids: Sequence[str],
        ticket: str,
        lease: timedelta,
        offers_seen: int,
    ) -> list[str]:
        got = []
        try:
            async with self._db.begin() as conn:
                await self._tally_row(conn, account_id, queue_id)
                counted = await conn.execute(
                    update(_T)
                    .where(_T.c.queue_id == queue_id, _T.c.offers == offers_seen)
                    .values(offers=_T.c.offers + 1)
                )
                if not counted.rowcount:
                    return []
                for user_id in user_ids:
                    result = await conn.execute(
                        update(_AS)
                        .where(
                            _AS.c.account_id == account_id,
                            _AS.c.user_id == user_id,
                            _AS.c.status == AgentStatus.AVAILABLE.value,
                            or_(_AS.c.held_state.is_(None), _AS.c.held_until <= self._now()),
                        )
                        .values(
                            held_state=AgentState.OFFERING.value,
                            held_ticket=ticket,
                            held_node=self.node_id,
                            held_until=self._until(lease),
                        )
                    )
                    if result.rowcount:
                        got.append(user_id)
                if not got:
                    raise _NoneGot
                await self._tell(conn, account_id, *got)
                await conn.execute(
                    update(_T).where(_T.c.queue_id == queue_id).values(last_offered=got[-1])
                )
                await conn.execute(update(_C).where(_C.c.ticket == ticket).values(offered=True))
        except _NoneGot:
            return []
        return got

    async def release(
        self,
        account_id: str,
        user_id: str,
        ticket: str,
        *,
        still_offered: bool,
        missed: bool = False,
        max_no_answer: int = 0,
        now: datetime | None = None,
    ) -> int | None:
        streak = None
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
            if missed:
                agent = (_AS.c.account_id == account_id) & (_AS.c.user_id == user_id)
                streak = (
                    await conn.execute(
                        update(_AS)
                        .where(agent)
                        .values(missed_in_row=_AS.c.missed_in_row + 1)
                        .returning(_AS.c.missed_in_row)
                    )
                ).scalar_one_or_none()
                if streak is not None and max_no_answer and streak >= max_no_answer:
                    on_break: dict[str, Any] = {"status": AgentStatus.ON_BREAK.value}
                    if now is not None:
                        on_break["updated_at"] = now
                    await conn.execute(
                        update(_AS)
                        .where(agent, _AS.c.status == AgentStatus.AVAILABLE.value)
                        .values(**on_break)
                    )
            if not still_offered:
                await conn.execute(update(_C).where(_C.c.ticket == ticket).values(offered=False))
            await self._tell(conn, account_id, user_id)
        return streak

    async def answered(
        self,
        account_id: str,
        queue_id: str,
        user_id: str,
        ticket: str,
        others: Sequence[str],
        lease: timedelta,
    ) -> None:
        async with self._db.begin() as conn:
            await conn.execute(
                update(_AS)
                .where(_AS.c.account_id == account_id, _AS.c.user_id == user_id)
                .values(
                    held_state=AgentState.IN_CALL.value,
                    held_ticket=ticket,
                    held_node=self.node_id,
                    held_until=self._until(lease),
                    missed_in_row=0,
                    calls=_AS.c.calls + 1,
                )
            )
            await conn.execute(
                update(_T).where(_T.c.queue_id == queue_id).values(answered=_T.c.answered + 1)
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
            await self._tell(conn, account_id, user_id, *others)

    async def call_ended(self, account_id: str, user_id: str, wrap_up: timedelta) -> None:
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
                    held_until=self._until(wrap_up),
                    idle_since=self._until(wrap_up),
                )
            )
            await self._tell(conn, account_id, user_id)

    async def left(self, queue_id: str, ticket: str, counted: str | None = None) -> None:
        async with self._db.begin() as conn:
            if counted in _COUNTED:
                column = _T.c[counted]
                await conn.execute(
                    update(_T).where(_T.c.queue_id == queue_id).values({column: column + 1})
                )
            await conn.execute(
                update(_AS)
                .where(
                    _AS.c.held_ticket == ticket,
                    _AS.c.held_state == AgentState.OFFERING.value,
                )
                .values(**_FREE)
            )
            await conn.execute(delete(_C).where(_C.c.ticket == ticket))

    async def renew(self, lease: timedelta) -> None:
        async with self._db.begin() as conn:
            await conn.execute(
                update(_C)
                .where(_C.c.node_id == self.node_id, _C.c.expires_at > self._now())
                .values(expires_at=self._until(lease))
            )
            await conn.execute(
                update(_AS)
                .where(
                    _AS.c.held_node == self.node_id,
                    _AS.c.held_until > self._now(),
                    _AS.c.held_state.in_([AgentState.OFFERING.value, AgentState.IN_CALL.value]),
                )
                .values(held_until=self._until(lease))
            )
