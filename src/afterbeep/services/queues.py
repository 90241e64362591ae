"""Queues: the account's queues and agents (`QueueService`), and the live queue engine
(`QueueEngine`) the queue call application runs against.

The engine keeps who waits and what every agent is doing in this process's memory (one
`domain.queues.Floor` per node, owned by the server); agents' statuses are stored, so a status
set through the API reaches every node when its next caller joins. With a `SharedFloor` (a node
of a cluster, issue 23) the stored state is the authority: waiting callers are rows every node
sees (positions and the head of the line are the same everywhere), an agent is offered only once
its node claimed the agent's stored hold (no double offer across nodes or queues), and a node
renews its rows and holds (`HOLD_LEASE`, on the database's clock): those of a node that died
expire. What the strategies
and statistics keep (round robin's position, agents' calls and missed streaks, the counts of
answered, abandoned and timed-out callers) is stored too and changed in the same transactions.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import Conflict, InvalidInput, NotFound
from afterbeep.domain.flows import RefKind
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.numbers import Destination, DestKind
from afterbeep.domain.queues import (
    AgentState,
    AgentStatus,
    Floor,
    Queue,
    QueueExit,
    QueueLine,
    QueueMember,
    QueueSettings,
    Stats,
    WaitingCaller,
    check_members,
    check_settings,
    line_order,
    next_to_offer,
    position_in,
)
from afterbeep.services.ports import Page, UnitOfWork, UnitOfWorkFactory
from afterbeep.services.ports.queues import QueueTally, SharedFloor, StoredAgent
from afterbeep.services.ports.ring_groups import UserLookup
from afterbeep.services.ring_groups import (
    UNSET,
    Unset,
    check_common,
    destination_users,
    pick,
    unknown_reference,
)

__all__ = ["UNSET", "AgentView", "QueueChanges", "QueueEngine", "QueueService", "Step"]

log = logging.getLogger("afterbeep.queue")

HOLD_LEASE = timedelta(seconds=30)  # a caller's row, an offer's or a call's hold, once renewed
RENEW_EVERY_SEC = 10.0

_DESTS = (
    "timeout_dest",
    "abandon_dest",
    "no_agents_dest",
    "queue_full_dest",
    "closed_dest",
    "holiday_dest",
)


@dataclass(frozen=True, slots=True)
class QueueChanges:
    name: str | Unset = UNSET
    settings: dict[str, object] | Unset = UNSET  # QueueSettings fields given
    members: Sequence[QueueMember] | Unset = UNSET
    moh_media_id: str | Unset | None = UNSET
    language: str | Unset | None = UNSET
    schedule_id: str | Unset | None = UNSET
    dests: dict[str, Destination | None] | Unset = UNSET  # by field prefix (`timeout_dest`)


@dataclass(frozen=True, slots=True)
class AgentView:
    user_id: str
    status: AgentStatus
    state: AgentState
    missed_in_row: int
    calls: int
    queue_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Step:
    """What a waiting caller does next: leave (`exit`), hear its `position` announced, and
    ring the agents of `offer` (new this step)."""

    exit: QueueExit | None = None
    position: int | None = None
    offer: tuple[str, ...] = ()


class QueueEngine:
    """The live queues of this node. `monotonic` is the time in seconds the domain rules run
    on; `clock` dates stored statuses and the shared rows. Every method is called from the
    event loop's thread."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        monotonic: Callable[[], float] = time.monotonic,
        shared: SharedFloor | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._now = monotonic
        self.shared = shared
        self.floor = Floor()
        self._handed: dict[str, set[str]] = {}  # ticket -> agents whose offer it was given
        self._seen: dict[str, list[WaitingCaller]] = {}  # queue -> its shared line, last look
        self._seen_at: dict[str, datetime] = {}  # queue -> the database's time at its last look
        self._tally: dict[str, QueueTally] = {}  # queue -> its stored tally, last look
        self._renewer: asyncio.Task[None] | None = None
        # Told the user id when an agent's status changes or its call ends (the work router).
        self.agent_listeners: list[Callable[[str], None]] = []
        self._told: set[tuple[str, str]] = set()  # agents changed elsewhere, being read again
        self._reads: set[asyncio.Task[None]] = set()

    def monotonic(self) -> float:
        return self._now()

    def _agent_changed(self, user_id: str) -> None:
        for listener in self.agent_listeners:
            listener(user_id)

    def line(self, queue: Queue) -> QueueLine:
        return self.floor.line(queue)

    async def load_statuses(self, queue: Queue) -> None:
        """Bring the members' statuses up to date from the database (set on any node); with a
        shared floor, what holds them and the shared line too."""
        if self.shared is not None:
            await self._look(queue)
            return
        async with self._uow() as uow:
            stored = await uow.queues.statuses(queue.account_id, [m.user_id for m in queue.members])
        now = self._now()
        self.floor.line(queue)
        for member in queue.members:
            self.floor.agent(member.user_id).set_status(
                stored.get(member.user_id, AgentStatus.OFFLINE), now
            )

    def logged_in(self, queue: Queue) -> list[str]:
        now = self._now()
        self.floor.line(queue)
        return [m.user_id for m in queue.members if self.floor.agent(m.user_id).logged_in(now)]

    def unreachable(self, user_id: str) -> None:
        """The agent has no registered device: it is skipped for a while (not a missed offer)."""
        self.floor.agent(user_id).unreachable(self._now())

    async def join(self, queue: Queue, ticket: str) -> QueueExit | None:
        """The caller joins the queue, or is refused (`queue_full`, `no_agents`)."""
        line = self.floor.line(queue)
        if self.shared is not None:
            waiting = await self._look(queue)
            if queue.settings.max_queued and len(waiting) >= queue.settings.max_queued:
                return QueueExit.QUEUE_FULL
        now = self._now()
        refused = line.admit(self.floor.agents, now)
        if refused is None:
            line.join(ticket, now)
            self._handed[ticket] = set()
            if self.shared is not None:
                await self.shared.join(queue.account_id, queue.id, ticket, HOLD_LEASE)
        return refused

    async def step(self, queue: Queue, ticket: str) -> Step:
        line = self.floor.line(queue)
        shared_position: int | None = None
        if self.shared is not None:
            shared_position = await self._offer_shared(queue, line, ticket)
        now = self._now()
        exit = line.exit_due(ticket, self.floor.agents, now)
        if exit is not None:
            return Step(exit=exit)
        if self.shared is None:
            self.floor.dispatch(now)
        handed = self._handed.setdefault(ticket, set())
        offered = line.caller(ticket).offered_to
        new = tuple(a for a in offered if a not in handed)
        handed.update(new)
        position = None
        if line.announcement_due(ticket, now):
            position = shared_position or line.position(ticket)
        return Step(position=position, offer=new)

    async def _offer_shared(self, queue: Queue, line: QueueLine, ticket: str) -> int | None:
        """Look at the shared line; when this caller is the next to offer, claim the agents
        the strategy chooses (those another node holds meanwhile are not offered). Its
        position in the shared line."""
        assert self.shared is not None
        waiting = await self._look(queue, ticket)
        caller = line.caller(ticket)
        now = self._now()
        if position_in(waiting, ticket) is None:  # its row expired (this node stalled): back
            joined = await self.shared.join(
                queue.account_id, queue.id, ticket, HOLD_LEASE, now - caller.joined_at
            )
            waiting = line_order([*waiting, WaitingCaller(ticket, joined)])
        if not caller.offered_to and next_to_offer(waiting) == ticket:
            chosen = line.choose_for(ticket, self.floor.agents, now)
            if chosen:
                seen = self._tally.get(queue.id, QueueTally()).offers
                got = await self.shared.claim(
                    queue.account_id, queue.id, chosen, ticket, HOLD_LEASE, seen
                )
                if got:
                    line.offer(ticket, got, self.floor.agents, now)
        return position_in(waiting, ticket)

    async def _look(self, queue: Queue, ticket: str | None = None) -> list[WaitingCaller]:
        """The shared line of `queue` (in order), its members brought up to the stored state."""
        assert self.shared is not None
        look = await self.shared.look(
            queue.account_id, queue.id, [m.user_id for m in queue.members], HOLD_LEASE, ticket
        )
        line = self.floor.line(queue)
        line.last_offered = look.tally.last_offered
        now = self._now()
        for member in queue.members:
            self._sync(member.user_id, look.agents.get(member.user_id), look.at, now)
        self._tally[queue.id] = look.tally
        self._seen_at[queue.id] = look.at
        ordered = self._seen[queue.id] = line_order(look.waiting)
        return ordered

    def _sync(self, user_id: str, row: StoredAgent | None, db_now: datetime, now: float) -> None:
        """`row`'s times are on the database's clock, `db_now` its time when read."""

        def local(at: datetime | None) -> float | None:
            return None if at is None else now - (db_now - at).total_seconds()

        agent = self.floor.agent(user_id)
        if row is None:
            agent.sync(AgentStatus.OFFLINE, None, None, None, None, now)
            return
        agent.sync(
            row.status, row.held, row.ticket, local(row.held_until), local(row.idle_since), now
        )
        agent.missed_in_row, agent.calls = row.missed_in_row, row.calls

    async def refresh_agents(self, account_id: str, user_ids: Sequence[str]) -> None:
        """With a shared floor, bring these agents up to their stored state (the API's view)."""
        if self.shared is None or not user_ids:
            return
        stored = await self.shared.agents(account_id, user_ids)
        now = self._now()
        for user_id in user_ids:
            row = stored.get(user_id)
            self._sync(user_id, row, row.at if row and row.at else self._clock.now(), now)

    async def answered(self, queue: Queue, ticket: str, user_id: str) -> None:
        self._handed.pop(ticket, None)
        others = self.floor.answered(self.floor.line(queue), ticket, user_id)
        if self.shared is not None:
            await self.shared.answered(
                queue.account_id, queue.id, user_id, ticket, others, HOLD_LEASE
            )

    async def missed(self, queue: Queue, ticket: str, user_id: str) -> None:
        """The agent let the offer ring out; after `max_no_answer` in a row it goes on break
        (stored, so the API shows it)."""
        self._handed.get(ticket, set()).discard(user_id)
        line = self.floor.line(queue)
        on_break = self.floor.missed(line, ticket, user_id)
        if self.shared is not None:  # the stored streak counts the misses of every node
            still = bool(line.caller(ticket).offered_to)
            streak = await self.shared.release(
                queue.account_id,
                user_id,
                ticket,
                still_offered=still,
                missed=True,
                max_no_answer=queue.settings.max_no_answer,
                now=self._clock.now(),
            )
            agent = self.floor.agent(user_id)
            agent.missed_in_row = streak or 0
            max_no_answer = queue.settings.max_no_answer
            on_break = bool(max_no_answer) and agent.missed_in_row >= max_no_answer
            if on_break:
                agent.status = AgentStatus.ON_BREAK
            return
        if on_break:
            async with self._uow() as uow:
                await uow.queues.set_status(
                    queue.account_id, user_id, AgentStatus.ON_BREAK, self._clock.now()
                )

    async def offer_failed(self, queue: Queue, ticket: str, user_id: str) -> None:
        """The agent could not be rung (no registered device): skipped, not counted."""
        self._handed.get(ticket, set()).discard(user_id)
        line = self.floor.line(queue)
        self.floor.unreachable(line, ticket, user_id, self._now())
        await self._release(queue, line, ticket, user_id)

    async def _release(self, queue: Queue, line: QueueLine, ticket: str, user_id: str) -> None:
        if self.shared is not None:
            still = bool(line.caller(ticket).offered_to)
            await self.shared.release(queue.account_id, user_id, ticket, still_offered=still)

    async def left(
        self, queue: Queue, ticket: str, exit: QueueExit | None, *, hung_up: bool = False
    ) -> None:
        """The caller left unanswered (an exit, or it hung up): nothing of it stays."""
        self._handed.pop(ticket, None)
        self.floor.left(self.floor.line(queue), ticket, exit, hung_up=hung_up)
        if self.shared is not None:
            counted = (
                "abandoned"
                if hung_up or exit is QueueExit.ABANDON
                else "timed_out"
                if exit is QueueExit.TIMEOUT
                else None
            )
            await self.shared.left(queue.id, ticket, counted)

    async def call_ended(self, queue: Queue, user_id: str) -> None:
        wrap_up = queue.settings.wrap_up_sec
        self.floor.call_ended(user_id, self._now(), wrap_up)
        if self.shared is not None:
            await self.shared.call_ended(queue.account_id, user_id, timedelta(seconds=wrap_up))
        self._agent_changed(user_id)

    def status_changed(self, user_id: str, status: AgentStatus) -> None:
        self.floor.agent(user_id).set_status(status, self._now())
        self._agent_changed(user_id)

    async def tell_status(self, account_id: str, user_id: str) -> None:
        """With a shared floor, the other nodes hear of the agent's new status at once."""
        if self.shared is not None:
            await self.shared.status_changed(account_id, user_id)

    def notified(self, payload: str) -> None:
        """Another node changed an agent's stored state ("<node> <account> <user>"): read it
        again, then tell the listeners (the work router routes again)."""
        node, _, rest = payload.partition(" ")
        account_id, _, user_id = rest.partition(" ")
        if self.shared is None or node == self.shared.node_id or not user_id:
            return
        key = (account_id, user_id)
        if key in self._told:  # already being read: that read sees this change too
            return
        self._told.add(key)
        task = asyncio.get_running_loop().create_task(self._read_told(key))
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)

    async def _read_told(self, key: tuple[str, str]) -> None:
        await asyncio.sleep(0)  # notifications of one commit arrive together
        self._told.discard(key)
        try:
            await self.refresh_agents(key[0], [key[1]])
        except Exception:  # the next look reads it anyway
            log.exception("reading an agent changed on another node failed")
            return
        self._agent_changed(key[1])

    def stats(self, queue: Queue) -> Stats:
        stats = self.floor.line(queue).stats(self.floor.agents, self._now())
        seen = self._seen.get(queue.id)
        if self.shared is None or seen is None:
            return stats
        at = self._seen_at[queue.id]  # the database's clock, that of `joined_at`
        longest = max(((at - w.joined_at).total_seconds() for w in seen), default=0.0)
        tally = self._tally.get(queue.id, QueueTally())
        return replace(
            stats,
            waiting=len(seen),
            longest_wait_sec=max(0.0, longest),
            answered=tally.answered,
            abandoned=tally.abandoned,
            timed_out=tally.timed_out,
        )

    async def anyone_waiting(self, account_id: str, queue_id: str) -> bool:
        """Whether callers wait in the queue (on any node, with a shared floor)."""
        line = self.floor.lines.get(queue_id)
        if line is not None and line.callers:
            return True
        if self.shared is None:
            return False
        look = await self.shared.look(account_id, queue_id, [], HOLD_LEASE)
        return bool(look.waiting)

    def agent_state(self, user_id: str) -> tuple[AgentState, int, int]:
        agent = self.floor.agents.get(user_id)
        if agent is None:
            return AgentState.WAITING, 0, 0
        return agent.state_at(self._now()), agent.missed_in_row, agent.calls

    async def renew(self) -> None:
        """This node's callers and holds live another `HOLD_LEASE`."""
        if self.shared is not None:
            await self.shared.renew(HOLD_LEASE)

    def start(self, every: float = RENEW_EVERY_SEC) -> None:
        """With a shared floor, renew this node's rows every `every` seconds until `stop`."""
        if self.shared is not None and self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_loop(every), name="queue-renewer")

    async def _renew_loop(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.renew()
            except Exception:  # the database may be back at the next round
                log.exception("renewing this node's queue rows failed")

    async def stop(self) -> None:
        task, self._renewer = self._renewer, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for read in list(self._reads):
            read.cancel()
        await asyncio.gather(*self._reads, return_exceptions=True)


class QueueService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        engine: QueueEngine,
        users: UserLookup | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self.engine = engine
        self._users = users

    async def create(
        self,
        account_id: str,
        name: str,
        settings: QueueSettings,
        members: Sequence[QueueMember] = (),
        moh_media_id: str | None = None,
        language: str | None = None,
        schedule_id: str | None = None,
        dests: dict[str, Destination | None] | None = None,
    ) -> Queue:
        now = self._clock.now()
        given = dests or {}
        queue = Queue(
            id=new_id("q"),
            account_id=account_id,
            name=name,
            settings=settings,
            members=tuple(members),
            created_at=now,
            updated_at=now,
            moh_media_id=moh_media_id,
            language=language,
            schedule_id=schedule_id,
            timeout_dest=given.get("timeout_dest"),
            abandon_dest=given.get("abandon_dest"),
            no_agents_dest=given.get("no_agents_dest"),
            queue_full_dest=given.get("queue_full_dest"),
            closed_dest=given.get("closed_dest"),
            holiday_dest=given.get("holiday_dest"),
        )
        async with self._uow() as uow:
            await self._check(uow, queue)
            await uow.queues.add(queue)
        return queue

    async def get(self, account_id: str, queue_id: str) -> Queue:
        _check_id(queue_id)
        async with self._uow() as uow:
            found = await uow.queues.get(account_id, queue_id)
        if found is None:
            raise NotFound("queue", queue_id)
        return found

    async def list(
        self, account_id: str, cursor: str | None = None, limit: int = 50
    ) -> Page[Queue]:
        async with self._uow() as uow:
            return await uow.queues.list(account_id, cursor, limit)

    async def update(self, account_id: str, queue_id: str, changes: QueueChanges) -> Queue:
        _check_id(queue_id)
        async with self._uow() as uow:
            current = await uow.queues.get(account_id, queue_id)
            if current is None:
                raise NotFound("queue", queue_id)
            settings = current.settings
            if not isinstance(changes.settings, Unset):
                settings = replace(settings, **changes.settings)  # type: ignore[arg-type]
            dests = {} if isinstance(changes.dests, Unset) else changes.dests
            queue = replace(
                current,
                name=pick(changes.name, current.name),
                settings=settings,
                members=tuple(pick(changes.members, current.members)),
                moh_media_id=pick(changes.moh_media_id, current.moh_media_id),
                language=pick(changes.language, current.language),
                schedule_id=pick(changes.schedule_id, current.schedule_id),
                updated_at=self._clock.now(),
                timeout_dest=dests.get("timeout_dest", current.timeout_dest),
                abandon_dest=dests.get("abandon_dest", current.abandon_dest),
                no_agents_dest=dests.get("no_agents_dest", current.no_agents_dest),
                queue_full_dest=dests.get("queue_full_dest", current.queue_full_dest),
                closed_dest=dests.get("closed_dest", current.closed_dest),
                holiday_dest=dests.get("holiday_dest", current.holiday_dest),
            )
            await self._check(uow, queue)
            if not await uow.queues.update(queue):
                raise NotFound("queue", queue_id)
        return queue

    async def delete(self, account_id: str, queue_id: str) -> None:
        """Refused (`Conflict`, `queue-in-use`) while a number or a flow leads to it, or
        callers wait in it on this node."""
        _check_id(queue_id)
        async with self._uow() as uow:
            users = await destination_users(
                uow, account_id, DestKind.QUEUE, RefKind.QUEUE, queue_id
            )
            if users:
                raise Conflict(
                    f"queue {queue_id!r} is used by {' and '.join(users)}", "queue-in-use"
                )
            teams = await uow.mailboxes.in_queue(account_id, queue_id)
            if teams:
                raise Conflict(
                    f"queue {queue_id!r} gets the messages of mailboxes {', '.join(sorted(teams)[:5])}",
                    "queue-in-use",
                )
            if await self.engine.anyone_waiting(account_id, queue_id):
                raise Conflict(f"callers are waiting in queue {queue_id!r}", "queue-in-use")
            if not await uow.queues.delete(account_id, queue_id):
                raise NotFound("queue", queue_id)
        self.engine.floor.lines.pop(queue_id, None)

    async def stats(self, account_id: str, queue_id: str) -> Stats:
        queue = await self.get(account_id, queue_id)
        await self.engine.load_statuses(queue)
        return self.engine.stats(queue)

    async def agents(self, account_id: str) -> builtins.list[AgentView]:
        """Every queue member of the account and every agent with a stored status."""
        async with self._uow() as uow:
            statuses = await uow.queues.statuses(account_id)
            queues = await _all_queues(uow, account_id)
        await self.engine.refresh_agents(account_id, builtins.list(statuses))
        by_user: dict[str, list[str]] = {user_id: [] for user_id in statuses}
        if self._users is not None:
            for user_id in await self._users.agent_ids(account_id):
                by_user.setdefault(user_id, [])
        for queue in queues:
            for member in queue.members:
                by_user.setdefault(member.user_id, []).append(queue.id)
        return [
            self._view(user_id, statuses.get(user_id, AgentStatus.OFFLINE), by_user[user_id])
            for user_id in sorted(by_user)
        ]

    async def agent(self, account_id: str, user_id: str) -> AgentView:
        await self._check_agent(account_id, user_id)
        async with self._uow() as uow:
            statuses = await uow.queues.statuses(account_id, [user_id])
            queues = await _all_queues(uow, account_id)
        await self.engine.refresh_agents(account_id, [user_id])
        queue_ids = [q.id for q in queues if any(m.user_id == user_id for m in q.members)]
        if user_id not in statuses and not queue_ids and self._users is None:
            raise NotFound("agent", user_id)
        return self._view(user_id, statuses.get(user_id, AgentStatus.OFFLINE), queue_ids)

    async def set_status(self, account_id: str, user_id: str, status: AgentStatus) -> AgentView:
        await self._check_agent(account_id, user_id)
        async with self._uow() as uow:
            await uow.queues.set_status(account_id, user_id, status, self._clock.now())
            queues = await _all_queues(uow, account_id)
        self.engine.status_changed(user_id, status)
        await self.engine.tell_status(account_id, user_id)
        queue_ids = [q.id for q in queues if any(m.user_id == user_id for m in q.members)]
        return self._view(user_id, status, queue_ids)

    def _view(self, user_id: str, status: AgentStatus, queue_ids: builtins.list[str]) -> AgentView:
        state, missed, calls = self.engine.agent_state(user_id)
        return AgentView(user_id, status, state, missed, calls, tuple(queue_ids))

    async def _check_agent(self, account_id: str, user_id: str) -> None:
        if not is_id(user_id, "usr"):
            raise NotFound("agent", user_id[:40])
        if self._users is not None and not await self._users.is_agent(account_id, user_id):
            raise NotFound("agent", user_id)

    async def _check(self, uow: UnitOfWork, queue: Queue) -> None:
        if not queue.name.strip():
            raise InvalidInput("name", "must not be empty")
        check_settings(queue.settings)
        check_members(queue.members)
        fallback = queue.settings.work_fallback_queue_id
        if fallback is not None:
            if fallback == queue.id:
                raise InvalidInput("work_fallback_queue_id", "must be another queue")
            if await uow.queues.get(queue.account_id, fallback) is None:
                raise unknown_reference("work_fallback_queue_id", "queue")
        if self._users is not None:
            for index, member in enumerate(queue.members):
                if not await self._users.is_agent(queue.account_id, member.user_id):
                    raise unknown_reference(f"members[{index}].user_id", "agent user")
        await check_common(
            uow,
            queue.account_id,
            self._users,
            queue.moh_media_id,
            queue.schedule_id,
            {name: getattr(queue, name) for name in _DESTS},
        )


async def _all_queues(uow: UnitOfWork, account_id: str) -> list[Queue]:
    found: list[Queue] = []
    cursor = None
    while True:
        page = await uow.queues.list(account_id, cursor, 200)
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def _check_id(queue_id: str) -> None:
    if not is_id(queue_id, "q"):
        raise NotFound("queue", queue_id[:40])
