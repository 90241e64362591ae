"""Queues: the account's queues and agents (`QueueService`), and the live queue engine
(`QueueEngine`) the queue call application runs against.

The engine keeps who waits and what every agent is doing in this process's memory (one
`domain.queues.Floor` per node, owned by the server); only agents' statuses are stored, so a
status set through the API reaches every node when its next caller joins. Callers waiting on
different nodes of a cluster do not see each other yet (a later issue).
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

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
    check_members,
    check_settings,
)
from afterbeep.services.ports import Page, UnitOfWork, UnitOfWorkFactory
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
    on; `clock` dates stored statuses. Every method is called from the event loop's thread."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._now = monotonic
        self.floor = Floor()
        self._handed: dict[str, set[str]] = {}  # ticket -> agents whose offer it was given
        # Told the user id when an agent's status changes or its call ends (the work router).
        self.agent_listeners: list[Callable[[str], None]] = []

    def monotonic(self) -> float:
        return self._now()

    def _agent_changed(self, user_id: str) -> None:
        for listener in self.agent_listeners:
            listener(user_id)

    def line(self, queue: Queue) -> QueueLine:
        return self.floor.line(queue)

    async def load_statuses(self, queue: Queue) -> None:
        """Bring the members' statuses up to date from the database (set on any node)."""
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

    def join(self, queue: Queue, ticket: str) -> QueueExit | None:
        """The caller joins the queue, or is refused (`queue_full`, `no_agents`)."""
        line = self.floor.line(queue)
        now = self._now()
        refused = line.admit(self.floor.agents, now)
        if refused is None:
            line.join(ticket, now)
            self._handed[ticket] = set()
        return refused

    def step(self, queue: Queue, ticket: str) -> Step:
        line = self.floor.line(queue)
        now = self._now()
        exit = line.exit_due(ticket, self.floor.agents, now)
        if exit is not None:
            return Step(exit=exit)
        self.floor.dispatch(now)
        handed = self._handed.setdefault(ticket, set())
        offered = line.caller(ticket).offered_to
        new = tuple(a for a in offered if a not in handed)
        handed.update(new)
        position = line.position(ticket) if line.announcement_due(ticket, now) else None
        return Step(position=position, offer=new)

    def answered(self, queue: Queue, ticket: str, user_id: str) -> None:
        self._handed.pop(ticket, None)
        self.floor.answered(self.floor.line(queue), ticket, user_id)

    async def missed(self, queue: Queue, ticket: str, user_id: str) -> None:
        """The agent let the offer ring out; after `max_no_answer` in a row it goes on break
        (stored, so the API shows it)."""
        self._handed.get(ticket, set()).discard(user_id)
        if self.floor.missed(self.floor.line(queue), ticket, user_id):
            async with self._uow() as uow:
                await uow.queues.set_status(
                    queue.account_id, user_id, AgentStatus.ON_BREAK, self._clock.now()
                )

    def offer_failed(self, queue: Queue, ticket: str, user_id: str) -> None:
        """The agent could not be rung (no registered device): skipped, not counted."""
        self._handed.get(ticket, set()).discard(user_id)
        self.floor.unreachable(self.floor.line(queue), ticket, user_id, self._now())

    def left(
        self, queue: Queue, ticket: str, exit: QueueExit | None, *, hung_up: bool = False
    ) -> None:
        """The caller left unanswered (an exit, or it hung up): nothing of it stays."""
        self._handed.pop(ticket, None)
        self.floor.left(self.floor.line(queue), ticket, exit, hung_up=hung_up)

    def call_ended(self, queue: Queue, user_id: str) -> None:
        self.floor.call_ended(user_id, self._now(), queue.settings.wrap_up_sec)
        self._agent_changed(user_id)

    def status_changed(self, user_id: str, status: AgentStatus) -> None:
        self.floor.agent(user_id).set_status(status, self._now())
        self._agent_changed(user_id)

    def stats(self, queue: Queue) -> Stats:
        return self.floor.line(queue).stats(self.floor.agents, self._now())

    def agent_state(self, user_id: str) -> tuple[AgentState, int, int]:
        agent = self.floor.agents.get(user_id)
        if agent is None:
            return AgentState.WAITING, 0, 0
        return agent.state_at(self._now()), agent.missed_in_row, agent.calls


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
            line = self.engine.floor.lines.get(queue_id)
            if line is not None and line.callers:
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
