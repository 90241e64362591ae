"""Call queues and their agents: who waits, who is offered the next caller, and when to leave.

A queue has seed 003's fields (`strategy`, `agent_ring_timeout_sec`, `max_wait_sec`,
`wrap_up_sec`, `max_no_answer`, the position announcements, hold music, `max_queued` and the
exit destinations); its members are agents (`user_id`) with a `tier_level` (lower tiers are
offered first: a higher tier only when no agent of a lower one can take the call).

An agent has a `status` set through the API (`offline`, `available`, `on_break`) and a `state`
kept by the engine (`waiting`, `offering`, `in_call`, `wrap_up`). It is offered a call only when
available, waiting (wrap-up over) and reachable (a registered device; the call application
reports the agents it found none for). Offer -> answered -> in call -> wrap-up for `wrap_up_sec`
-> waiting. A missed offer counts; `max_no_answer` missed in a row puts the agent `on_break`.

A caller who joins is refused with `queue_full` (`max_queued` callers already wait) or
`no_agents` (no member agent is available and reachable); while waiting, it leaves with
`timeout` after `max_wait_sec`, `no_agents` when every member agent logged out, or `abandon`
when it presses `ABANDON_KEY` (to leave a message). Its position is announced `announce_first_sec`
after joining, then every `announce_interval_sec`.

Everything here is synchronous and does no I/O: the time (`now`, seconds on a monotonic clock)
is passed in, so the tests drive it without an event loop. The `Floor` holds the live state of
one node's queues and agents (agents are shared: one agent may serve several queues).

Several nodes (issue 23) share one line per queue and one hold per agent, stored: the callers
waiting on every node (`WaitingCaller`, in `line_order`: who joined first, then the ticket), and
what holds each agent (an offer, a call, a wrap-up) until a time its node renews. A node offers
its caller only when it is `next_to_offer` in the shared line, and an agent only by claiming its
hold; the node's `Floor` is brought up to the stored state first (`Agent.sync`).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from afterbeep.domain.errors import InvalidInput
from afterbeep.domain.ids import is_id
from afterbeep.domain.numbers import Destination

ABANDON_KEY = "*"  # pressed while waiting: leave the queue for `abandon_dest` (leave a message)
MAX_MEMBERS = 200
MAX_TIER = 9
MAX_SECONDS = 86_400
MAX_WORK_SECONDS = 30 * 86_400  # work items' overflow and time to live
UNREACHABLE_RETRY_SEC = 10.0  # an agent without a registered device is skipped this long


class QueueStrategy(enum.StrEnum):
    LONGEST_IDLE = "longest_idle"
    ROUND_ROBIN = "round_robin"
    RING_ALL = "ring_all"
    FEWEST_CALLS = "fewest_calls"


class AgentStatus(enum.StrEnum):
    OFFLINE = "offline"
    AVAILABLE = "available"
    ON_BREAK = "on_break"


class AgentState(enum.StrEnum):
    WAITING = "waiting"
    OFFERING = "offering"
    IN_CALL = "in_call"
    WRAP_UP = "wrap_up"


class QueueExit(enum.StrEnum):
    TIMEOUT = "timeout"
    ABANDON = "abandon"
    NO_AGENTS = "no_agents"
    QUEUE_FULL = "queue_full"
    CLOSED = "closed"
    HOLIDAY = "holiday"


@dataclass(frozen=True, slots=True)
class QueueMember:
    user_id: str
    tier_level: int = 1


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """What the engine needs of a queue (every field of the stored queue but its identity)."""

    strategy: QueueStrategy = QueueStrategy.LONGEST_IDLE
    agent_ring_timeout_sec: int = 15
    max_wait_sec: int = 300  # 0: no limit
    wrap_up_sec: int = 10
    max_no_answer: int = 3  # 0: never put on break
    announce_position: bool = True
    announce_first_sec: int = 30
    announce_interval_sec: int = 60  # 0: announce once
    max_queued: int = 0  # 0: no limit
    # Work items (domain.work_items): how long an offer waits for the agent, after how long a
    # pending item moves to the fallback queue (0: never), and an item's time to live.
    work_offer_timeout_sec: int = 120
    work_overflow_sec: int = 0
    work_fallback_queue_id: str | None = None
    work_ttl_sec: int = 86_400


@dataclass(frozen=True, slots=True)
class Queue:
    id: str
    account_id: str
    name: str
    settings: QueueSettings
    members: tuple[QueueMember, ...]
    created_at: datetime
    updated_at: datetime
    moh_media_id: str | None = None
    language: str | None = None  # None: the account's
    timeout_dest: Destination | None = None
    abandon_dest: Destination | None = None
    no_agents_dest: Destination | None = None
    queue_full_dest: Destination | None = None
    schedule_id: str | None = None
    closed_dest: Destination | None = None
    holiday_dest: Destination | None = None

    def exit_dest(self, exit: QueueExit) -> Destination | None:
        """Where a caller leaving this way goes (None: hang up); a holiday without its own
        destination uses the closed one."""
        return {
            QueueExit.TIMEOUT: self.timeout_dest,
            QueueExit.ABANDON: self.abandon_dest,
            QueueExit.NO_AGENTS: self.no_agents_dest,
            QueueExit.QUEUE_FULL: self.queue_full_dest,
            QueueExit.CLOSED: self.closed_dest,
            QueueExit.HOLIDAY: self.holiday_dest or self.closed_dest,
        }[exit]


def check_settings(settings: QueueSettings) -> None:
    for name in (
        "agent_ring_timeout_sec",
        "max_wait_sec",
        "wrap_up_sec",
        "max_no_answer",
        "announce_first_sec",
        "announce_interval_sec",
        "max_queued",
    ):
        value = getattr(settings, name)
        if not 0 <= value <= MAX_SECONDS:
            raise InvalidInput(name, f"must be between 0 and {MAX_SECONDS}")
    if settings.agent_ring_timeout_sec < 1:
        raise InvalidInput("agent_ring_timeout_sec", "must be at least 1")
    for name, low, high in (
        ("work_offer_timeout_sec", 1, MAX_SECONDS),
        ("work_overflow_sec", 0, MAX_WORK_SECONDS),
        ("work_ttl_sec", 60, MAX_WORK_SECONDS),
    ):
        if not low <= getattr(settings, name) <= high:
            raise InvalidInput(name, f"must be between {low} and {high}")
    fallback = settings.work_fallback_queue_id
    if fallback is not None and not is_id(fallback, "q"):
        raise InvalidInput("work_fallback_queue_id", "is not a queue id (q_...)")


def check_members(members: Sequence[QueueMember]) -> None:
    if len(members) > MAX_MEMBERS:
        raise InvalidInput("members", f"at most {MAX_MEMBERS} members")
    seen: set[str] = set()
    for index, member in enumerate(members):
        if not is_id(member.user_id, "usr"):
            raise InvalidInput(f"members[{index}].user_id", "is not a user id (usr_...)")
        if member.user_id in seen:
            raise InvalidInput(f"members[{index}].user_id", "is listed twice")
        seen.add(member.user_id)
        if not 0 <= member.tier_level <= MAX_TIER:
            raise InvalidInput(f"members[{index}].tier_level", f"must be between 0 and {MAX_TIER}")


@dataclass(slots=True)
class Agent:
    """One agent's live state on this node (its `status` mirrors the stored one)."""

    user_id: str
    status: AgentStatus = AgentStatus.OFFLINE
    state: AgentState = AgentState.WAITING
    idle_since: float = 0.0  # when it last became free (wrap-up over, or logged in)
    wrap_up_until: float = 0.0
    missed_in_row: int = 0
    calls: int = 0  # calls answered on this node
    offered_ticket: str | None = None
    unreachable_until: float = 0.0
    work_blocked: bool = False  # its work items leave no room for a call (domain.work_items)

    def state_at(self, now: float) -> AgentState:
        if self.state is AgentState.WRAP_UP and now >= self.wrap_up_until:
            self.state = AgentState.WAITING
            self.idle_since = self.wrap_up_until
        return self.state

    def logged_in(self, now: float) -> bool:
        """Available and reachable (whatever it is doing now)."""
        return self.status is AgentStatus.AVAILABLE and now >= self.unreachable_until

    def can_take(self, now: float) -> bool:
        return (
            self.logged_in(now)
            and self.state_at(now) is AgentState.WAITING
            and not self.work_blocked
        )

    def set_status(self, status: AgentStatus, now: float) -> None:
        if status is AgentStatus.AVAILABLE and self.status is not AgentStatus.AVAILABLE:
            self.missed_in_row = 0
            self.unreachable_until = 0.0
            if self.state_at(now) is AgentState.WAITING:
                self.idle_since = now
        self.status = status

    def offer(self, ticket: str, now: float) -> None:
        if not self.can_take(now):
            raise ValueError(f"agent {self.user_id} cannot take a call now")
        self.state = AgentState.OFFERING
        self.offered_ticket = ticket

    def answered(self) -> None:
        self.state = AgentState.IN_CALL
        self.missed_in_row = 0
        self.calls += 1

    def missed(self, max_no_answer: int) -> bool:
        """The offer was not answered in time; True when this put the agent on break."""
        self.state = AgentState.WAITING
        self.offered_ticket = None
        self.missed_in_row += 1
        if max_no_answer and self.missed_in_row >= max_no_answer:
            self.status = AgentStatus.ON_BREAK
            return True
        return False

    def withdrawn(self) -> None:
        """The offer ended without being the agent's fault (the caller left, another agent
        answered first, the agent had no device): it is free again, nothing counted."""
        self.state = AgentState.WAITING
        self.offered_ticket = None

    def unreachable(self, now: float) -> None:
        self.withdrawn()
        self.unreachable_until = now + UNREACHABLE_RETRY_SEC

    def sync(
        self,
        status: AgentStatus,
        held: AgentState | None,
        ticket: str | None,
        held_until: float | None,
        idle_since: float | None,
        now: float,
    ) -> None:
        """Take the state every node sees: the stored status, and what holds the agent
        (`held`: offering, in call or wrap-up until `held_until`; None: free)."""
        self.set_status(status, now)
        if held is not None and held_until is not None and held_until > now:
            self.state = held
            self.offered_ticket = ticket if held is AgentState.OFFERING else None
            if held is AgentState.WRAP_UP:
                self.wrap_up_until = held_until
        elif self.state in (AgentState.OFFERING, AgentState.IN_CALL):
            self.state = AgentState.WAITING
            self.offered_ticket = None
        if idle_since is not None and self.state_at(now) is AgentState.WAITING:
            self.idle_since = idle_since

    def call_ended(self, now: float, wrap_up_sec: float) -> None:
        self.offered_ticket = None
        if wrap_up_sec > 0:
            self.state = AgentState.WRAP_UP
            self.wrap_up_until = now + wrap_up_sec
        else:
            self.state = AgentState.WAITING
            self.idle_since = now


def choose_agents(
    settings: QueueSettings,
    members: Sequence[QueueMember],
    agents: Mapping[str, Agent],
    now: float,
    *,
    last_offered: str | None = None,
    skip: Iterable[str] = (),
) -> list[str]:
    """The agents to offer the next caller to (empty: none can take it): from the lowest tier
    with a free agent, every one (`ring_all`) or one: idle longest (`longest_idle`), fewest
    calls then idle longest (`fewest_calls`), or the next in member order after `last_offered`
    (`round_robin`). Ties go to the member listed first. `skip`: agents who already missed
    this caller."""
    skipped = set(skip)
    free = [
        (index, m)
        for index, m in enumerate(members)
        if m.user_id not in skipped
        and (agent := agents.get(m.user_id)) is not None
        and agent.can_take(now)
    ]
    if not free:
        return []
    tier = min(m.tier_level for _, m in free)
    pool = [(index, m) for index, m in free if m.tier_level == tier]
    strategy = settings.strategy
    if strategy is QueueStrategy.RING_ALL:
        return [m.user_id for _, m in pool]
    if strategy is QueueStrategy.LONGEST_IDLE:
        _, best = min(pool, key=lambda p: (agents[p[1].user_id].idle_since, p[0]))
        return [best.user_id]
    if strategy is QueueStrategy.FEWEST_CALLS:
        _, best = min(
            pool,
            key=lambda p: (agents[p[1].user_id].calls, agents[p[1].user_id].idle_since, p[0]),
        )
        return [best.user_id]
    order = [m.user_id for m in members]
    start = order.index(last_offered) + 1 if last_offered in order else 0
    _, best = min(pool, key=lambda p: ((p[0] - start) % len(order), p[0]))
    return [best.user_id]


@dataclass(slots=True)
class Caller:
    ticket: str
    joined_at: float
    next_announcement: float | None
    offered_to: tuple[str, ...] = ()
    tried: set[str] = field(default_factory=set)


def first_announcement(settings: QueueSettings, joined_at: float) -> float | None:
    if not settings.announce_position:
        return None
    return joined_at + settings.announce_first_sec


def following_announcement(settings: QueueSettings, previous: float) -> float | None:
    if settings.announce_interval_sec <= 0:
        return None
    return previous + settings.announce_interval_sec


@dataclass(frozen=True, slots=True)
class WaitingCaller:
    """A caller waiting in a queue as every node sees it (`offered`: an offer of it rings)."""

    ticket: str
    joined_at: datetime
    offered: bool = False


def line_order(waiting: Iterable[WaitingCaller]) -> list[WaitingCaller]:
    """First come first served across nodes; callers who joined at the same instant by ticket."""
    return sorted(waiting, key=lambda w: (w.joined_at, w.ticket))


def position_in(waiting: Sequence[WaitingCaller], ticket: str) -> int | None:
    """1 for the next caller to be served (`waiting` in `line_order`); None: not in the line."""
    for index, caller in enumerate(waiting):
        if caller.ticket == ticket:
            return index + 1
    return None


def next_to_offer(waiting: Sequence[WaitingCaller]) -> str | None:
    """The caller the next free agent goes to: the first in line with no offer ringing."""
    return next((w.ticket for w in waiting if not w.offered), None)


@dataclass(frozen=True, slots=True)
class Offer:
    ticket: str
    agents: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Stats:
    waiting: int
    longest_wait_sec: float
    agents_by_state: Mapping[str, int]  # `offline`/`on_break` by status, else by state
    abandoned: int
    answered: int
    timed_out: int


class QueueLine:
    """The callers waiting in one queue, first come first served, and its counters."""

    def __init__(self, queue_id: str, settings: QueueSettings, members: Sequence[QueueMember]):
        self.queue_id = queue_id
        self.settings = settings
        self.members = tuple(members)
        self.callers: list[Caller] = []
        self.last_offered: str | None = None
        self.abandoned = 0
        self.answered = 0
        self.timed_out = 0

    def configure(self, settings: QueueSettings, members: Sequence[QueueMember]) -> None:
        self.settings = settings
        self.members = tuple(members)

    def caller(self, ticket: str) -> Caller:
        for caller in self.callers:
            if caller.ticket == ticket:
                return caller
        raise KeyError(ticket)

    def position(self, ticket: str) -> int:
        """1 for the next caller to be served."""
        return [c.ticket for c in self.callers].index(ticket) + 1

    def anyone_logged_in(self, agents: Mapping[str, Agent], now: float) -> bool:
        return any(
            (agent := agents.get(m.user_id)) is not None and agent.logged_in(now)
            for m in self.members
        )

    def admit(self, agents: Mapping[str, Agent], now: float) -> QueueExit | None:
        """Why a new caller cannot join (None: it can)."""
        if self.settings.max_queued and len(self.callers) >= self.settings.max_queued:
            return QueueExit.QUEUE_FULL
        if not self.anyone_logged_in(agents, now):
            return QueueExit.NO_AGENTS
        return None

    def join(self, ticket: str, now: float) -> Caller:
        caller = Caller(ticket, now, first_announcement(self.settings, now))
        self.callers.append(caller)
        return caller

    def exit_due(self, ticket: str, agents: Mapping[str, Agent], now: float) -> QueueExit | None:
        """Whether a waiting caller must leave now (not while one of its offers rings)."""
        caller = self.caller(ticket)
        if caller.offered_to:
            return None
        max_wait = self.settings.max_wait_sec
        if max_wait and now - caller.joined_at >= max_wait:
            return QueueExit.TIMEOUT
        if not self.anyone_logged_in(agents, now):
            return QueueExit.NO_AGENTS
        return None

    def announcement_due(self, ticket: str, now: float) -> bool:
        """True once per announcement time reached (the next one is then scheduled)."""
        caller = self.caller(ticket)
        due = caller.next_announcement
        if due is None or now < due:
            return False
        following = following_announcement(self.settings, due)
        while following is not None and following <= now:
            following = following_announcement(self.settings, following)
        caller.next_announcement = following
        return True

    def dispatch(self, agents: Mapping[str, Agent], now: float) -> list[Offer]:
        """Offer waiting callers, in order, to free agents; the agents chosen are `offering`."""
        offers = []
        for caller in self.callers:
            if caller.offered_to:
                continue
            chosen = self.choose_for(caller.ticket, agents, now)
            if not chosen:
                break  # nobody free: later callers wait behind this one
            offers.append(self.offer(caller.ticket, chosen, agents, now))
        return offers

    def choose_for(self, ticket: str, agents: Mapping[str, Agent], now: float) -> list[str]:
        """The agents to offer the caller to now (empty: none free). A caller whose every free
        agent already missed it is offered to them again."""
        caller = self.caller(ticket)
        chosen = choose_agents(
            self.settings,
            self.members,
            agents,
            now,
            last_offered=self.last_offered,
            skip=caller.tried,
        )
        if not chosen and caller.tried:
            caller.tried.clear()
            chosen = choose_agents(
                self.settings, self.members, agents, now, last_offered=self.last_offered
            )
        return chosen

    def offer(
        self, ticket: str, chosen: Sequence[str], agents: Mapping[str, Agent], now: float
    ) -> Offer:
        """The caller is offered to `chosen` (agents who can take it): they are `offering`."""
        caller = self.caller(ticket)
        for user_id in chosen:
            agents[user_id].offer(ticket, now)
        caller.offered_to = tuple(chosen)
        self.last_offered = chosen[-1]
        return Offer(ticket, tuple(chosen))

    def offer_ended(self, ticket: str, user_id: str) -> None:
        """One agent of the caller's offer is done ringing (answered or not)."""
        caller = self.caller(ticket)
        caller.offered_to = tuple(a for a in caller.offered_to if a != user_id)

    def missed(self, ticket: str, user_id: str) -> None:
        self.offer_ended(ticket, user_id)
        self.caller(ticket).tried.add(user_id)

    def leave(self, ticket: str, exit: QueueExit | None = None, *, hung_up: bool = False) -> None:
        """The caller is gone: answered (`exit` None), left by an exit, or hung up."""
        self.callers = [c for c in self.callers if c.ticket != ticket]
        if hung_up or exit is QueueExit.ABANDON:
            self.abandoned += 1
        elif exit is QueueExit.TIMEOUT:
            self.timed_out += 1
        elif exit is None:
            self.answered += 1

    def stats(self, agents: Mapping[str, Agent], now: float) -> Stats:
        by_state: Counter[str] = Counter(
            dict.fromkeys([AgentStatus.OFFLINE, AgentStatus.ON_BREAK, *AgentState], 0)
        )
        for member in self.members:
            agent = agents.get(member.user_id)
            if agent is None or agent.status is AgentStatus.OFFLINE:
                by_state[AgentStatus.OFFLINE.value] += 1
            elif agent.status is AgentStatus.ON_BREAK:
                by_state[AgentStatus.ON_BREAK.value] += 1
            else:
                by_state[agent.state_at(now).value] += 1
        longest = max((now - c.joined_at for c in self.callers), default=0.0)
        return Stats(
            len(self.callers),
            longest,
            dict(by_state),
            self.abandoned,
            self.answered,
            self.timed_out,
        )


class Floor:
    """Every queue line and agent of one node: the state the queue engine keeps in memory."""

    def __init__(self) -> None:
        self.agents: dict[str, Agent] = {}
        self.lines: dict[str, QueueLine] = {}

    def agent(self, user_id: str) -> Agent:
        found = self.agents.get(user_id)
        if found is None:
            found = self.agents[user_id] = Agent(user_id)
        return found

    def line(self, queue: Queue) -> QueueLine:
        """The queue's line, its settings and members brought up to date."""
        line = self.lines.get(queue.id)
        if line is None:
            line = self.lines[queue.id] = QueueLine(queue.id, queue.settings, queue.members)
        else:
            line.configure(queue.settings, queue.members)
        for member in queue.members:
            self.agent(member.user_id)
        return line

    def dispatch(self, now: float) -> list[Offer]:
        return [offer for line in self.lines.values() for offer in line.dispatch(self.agents, now)]

    def answered(self, line: QueueLine, ticket: str, user_id: str) -> list[str]:
        """`user_id` answered `ticket`: the caller leaves the line, the other agents offered
        it (ring_all) are free again; returns those."""
        caller = line.caller(ticket)
        others = [a for a in caller.offered_to if a != user_id]
        for other in others:
            self.agents[other].withdrawn()
        caller.offered_to = ()
        self.agents[user_id].answered()
        line.leave(ticket)
        return others

    def missed(self, line: QueueLine, ticket: str, user_id: str) -> bool:
        """`user_id` let the offer of `ticket` ring out; True when it went on break."""
        line.missed(ticket, user_id)
        return self.agents[user_id].missed(line.settings.max_no_answer)

    def unreachable(self, line: QueueLine, ticket: str, user_id: str, now: float) -> None:
        line.offer_ended(ticket, user_id)
        self.agents[user_id].unreachable(now)

    def left(
        self, line: QueueLine, ticket: str, exit: QueueExit | None, *, hung_up: bool = False
    ) -> None:
        """The caller left without being answered: its offers are withdrawn, nothing stays."""
        try:
            caller = line.caller(ticket)
        except KeyError:
            return
        for user_id in caller.offered_to:
            agent = self.agents.get(user_id)
            if agent is not None and agent.offered_ticket == ticket:
                agent.withdrawn()
        line.leave(ticket, exit, hung_up=hung_up)

    def call_ended(self, user_id: str, now: float, wrap_up_sec: float) -> None:
        self.agent(user_id).call_ended(now, wrap_up_sec)
