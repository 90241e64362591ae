"""Work items: a routed voice call waiting in a queue for an agent (seed 002, TaskRouter's model).

States: `pending` -> `reserved` (offered to one agent, for the queue's offer timeout) ->
`assigned` (accepted) -> `wrapping` (optional: the agent writes up) -> `completed`; or
`canceled` with a reason from any open state. A declined or timed-out offer puts the item back
to `pending`; the agent is remembered as a decliner and the item goes to the next agent. When
every eligible agent (a queue member whose status is `available`) has declined, the set resets.

Capacity: an agent holds `capacity` units (default `DEFAULT_CAPACITY`); an item weighs its
channel's weight (`DEFAULT_WEIGHTS`: a voicemail 3, a callback 5, a live call 10) and holds it
while reserved, assigned or wrapping. A live queue call the agent is offered, in or wrapping up
counts as `LIVE_CALL_WEIGHT`, and the live queue engine offers no call to an agent whose items
leave less than that free (`live_call_blocked`).

Order: pending items by priority (1 highest), then age (creation), then id. Agent choice: from
the lowest tier with an eligible agent that has room, per the queue's strategy: `longest_idle`
(and `ring_all`, which has no meaning for items), `fewest_calls` (fewest items and live calls
handled), `round_robin` (the next member after the last one offered); ties go to the agent idle
longest, then to the member listed first.

Timers: an offer not answered by its expiry times out; a pending item that waited the queue's
`work_overflow_sec` moves to its `work_fallback_queue_id`; an open item past its time to live
(set when it is created from the first queue's `work_ttl_sec`) is canceled "TTL exceeded".

Pure: no I/O, the time is passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from afterbeep.domain.errors import Conflict, InvalidInput
from afterbeep.domain.queues import AgentStatus, QueueMember, QueueSettings, QueueStrategy

DEFAULT_CAPACITY = 10
MAX_CAPACITY = 1000
LIVE_CALL_WEIGHT = 10
DEFAULT_WEIGHTS: Mapping[str, int] = {"voicemail": 3, "callback": 5, "call": LIVE_CALL_WEIGHT}
MIN_PRIORITY, MAX_PRIORITY = 1, 100
MAX_WEIGHT = MAX_CAPACITY
TTL_REASON = "TTL exceeded"
MAX_NOTES = 4000
MAX_REASON = 200


class WorkItemState(enum.StrEnum):
    PENDING = "pending"
    RESERVED = "reserved"
    ASSIGNED = "assigned"
    WRAPPING = "wrapping"
    COMPLETED = "completed"
    CANCELED = "canceled"


OPEN_STATES = frozenset(
    {WorkItemState.PENDING, WorkItemState.RESERVED, WorkItemState.ASSIGNED, WorkItemState.WRAPPING}
)
HOLDING_STATES = frozenset({WorkItemState.RESERVED, WorkItemState.ASSIGNED, WorkItemState.WRAPPING})


class OfferStatus(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    TIMED_OUT = "timed_out"
    RESCINDED = "rescinded"  # the item was canceled, or the service restarted while it rang


@dataclass(frozen=True, slots=True)
class WorkItem:
    id: str
    account_id: str
    voice_call_id: str
    queue_id: str
    channel: str
    priority: int
    weight: int
    state: WorkItemState
    created_at: datetime
    queued_at: datetime  # entered its current queue (overflow counts from here)
    expires_at: datetime  # time to live
    updated_at: datetime
    agent_id: str | None = None
    offer_id: str | None = None
    offer_expires_at: datetime | None = None
    declined_by: tuple[str, ...] = ()
    reason: str | None = None
    notes: str | None = None
    ended_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def holds(self) -> int:
        """Capacity units the item holds of its agent now."""
        return self.weight if self.state in HOLDING_STATES else 0


@dataclass(frozen=True, slots=True)
class WorkOffer:
    id: str
    account_id: str
    work_item_id: str
    agent_id: str
    queue_id: str
    status: OfferStatus
    offered_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None


def default_weight(channel: str) -> int:
    return DEFAULT_WEIGHTS.get(channel, LIVE_CALL_WEIGHT)


def check_priority_weight(priority: int, weight: int) -> None:
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidInput("priority", f"must be between {MIN_PRIORITY} and {MAX_PRIORITY}")
    if not 1 <= weight <= MAX_WEIGHT:
        raise InvalidInput("weight", f"must be between 1 and {MAX_WEIGHT}")


def check_capacity(capacity: int) -> None:
    if not 0 <= capacity <= MAX_CAPACITY:
        raise InvalidInput("capacity", f"must be between 0 and {MAX_CAPACITY}")


def new_item(
    item_id: str,
    account_id: str,
    voice_call_id: str,
    queue_id: str,
    settings: QueueSettings,
    now: datetime,
    *,
    channel: str,
    priority: int,
    weight: int | None,
) -> WorkItem:
    weight = default_weight(channel) if weight is None else weight
    check_priority_weight(priority, weight)
    return WorkItem(
        id=item_id,
        account_id=account_id,
        voice_call_id=voice_call_id,
        queue_id=queue_id,
        channel=channel,
        priority=priority,
        weight=weight,
        state=WorkItemState.PENDING,
        created_at=now,
        queued_at=now,
        expires_at=now + timedelta(seconds=settings.work_ttl_sec),
        updated_at=now,
    )


def _refuse(item: WorkItem, action: str) -> Conflict:
    return Conflict(
        f"work item {item.id!r} is {item.state.value}: cannot {action}", "work-item-state"
    )


def offer(
    item: WorkItem,
    agent_id: str,
    offer_id: str,
    settings: QueueSettings,
    now: datetime,
    *,
    reset: bool,
) -> tuple[WorkItem, WorkOffer]:
    """Reserve the pending item for `agent_id`; `reset`: the decliners were all forgotten."""
    if item.state is not WorkItemState.PENDING:
        raise _refuse(item, "offer")
    expires = now + timedelta(seconds=settings.work_offer_timeout_sec)
    made = WorkOffer(
        offer_id,
        item.account_id,
        item.id,
        agent_id,
        item.queue_id,
        OfferStatus.PENDING,
        now,
        expires,
    )
    reserved = replace(
        item,
        state=WorkItemState.RESERVED,
        agent_id=agent_id,
        offer_id=offer_id,
        offer_expires_at=expires,
        declined_by=() if reset else item.declined_by,
        updated_at=now,
    )
    return reserved, made


def _offer_of(item: WorkItem, pending: WorkOffer) -> None:
    if (
        item.state is not WorkItemState.RESERVED
        or item.offer_id != pending.id
        or pending.status is not OfferStatus.PENDING
    ):
        raise Conflict(f"offer {pending.id!r} is no longer open", "offer-closed")


def accept(item: WorkItem, pending: WorkOffer, now: datetime) -> tuple[WorkItem, WorkOffer]:
    _offer_of(item, pending)
    if item.offer_expires_at is not None and now >= item.offer_expires_at:
        raise Conflict(f"offer {pending.id!r} has expired", "offer-closed")
    assigned = replace(
        item, state=WorkItemState.ASSIGNED, offer_id=None, offer_expires_at=None, updated_at=now
    )
    return assigned, replace(pending, status=OfferStatus.ACCEPTED, ended_at=now)


def _back(
    item: WorkItem, pending: WorkOffer, status: OfferStatus, now: datetime, *, remember: bool
) -> tuple[WorkItem, WorkOffer]:
    _offer_of(item, pending)
    declined = item.declined_by
    if remember and pending.agent_id not in declined:
        declined = (*declined, pending.agent_id)
    back = replace(
        item,
        state=WorkItemState.PENDING,
        agent_id=None,
        offer_id=None,
        offer_expires_at=None,
        declined_by=declined,
        updated_at=now,
    )
    return back, replace(pending, status=status, ended_at=now)


def decline(item: WorkItem, pending: WorkOffer, now: datetime) -> tuple[WorkItem, WorkOffer]:
    return _back(item, pending, OfferStatus.DECLINED, now, remember=True)


def time_out(item: WorkItem, pending: WorkOffer, now: datetime) -> tuple[WorkItem, WorkOffer]:
    return _back(item, pending, OfferStatus.TIMED_OUT, now, remember=True)


def rescind(item: WorkItem, pending: WorkOffer, now: datetime) -> tuple[WorkItem, WorkOffer]:
    """The offer is withdrawn through no fault of the agent (a restart): pending again."""
    return _back(item, pending, OfferStatus.RESCINDED, now, remember=False)


def wrap_up(item: WorkItem, now: datetime) -> WorkItem:
    if item.state is not WorkItemState.ASSIGNED:
        raise _refuse(item, "wrap up")
    return replace(item, state=WorkItemState.WRAPPING, updated_at=now)


def complete(item: WorkItem, notes: str | None, now: datetime) -> WorkItem:
    if item.state not in (WorkItemState.ASSIGNED, WorkItemState.WRAPPING):
        raise _refuse(item, "complete")
    if notes is not None and len(notes) > MAX_NOTES:
        raise InvalidInput("notes", f"at most {MAX_NOTES} characters")
    return replace(item, state=WorkItemState.COMPLETED, notes=notes, ended_at=now, updated_at=now)


def cancel(item: WorkItem, reason: str, now: datetime) -> WorkItem:
    if not item.open:
        raise _refuse(item, "cancel")
    return replace(
        item,
        state=WorkItemState.CANCELED,
        reason=reason[:MAX_REASON],
        offer_id=None,
        offer_expires_at=None,
        ended_at=now,
        updated_at=now,
    )


def move(item: WorkItem, queue_id: str, now: datetime) -> WorkItem:
    """Overflow: the pending item starts again in `queue_id` (its time to live is kept)."""
    if item.state is not WorkItemState.PENDING:
        raise _refuse(item, "move")
    return replace(item, queue_id=queue_id, queued_at=now, declined_by=(), updated_at=now)


class Due(enum.StrEnum):
    TTL = "ttl"
    OFFER_TIMEOUT = "offer_timeout"
    OVERFLOW = "overflow"


def _overflow_at(item: WorkItem, settings: QueueSettings) -> datetime | None:
    if (
        item.state is WorkItemState.PENDING
        and settings.work_overflow_sec > 0
        and settings.work_fallback_queue_id
        and settings.work_fallback_queue_id != item.queue_id
    ):
        return item.queued_at + timedelta(seconds=settings.work_overflow_sec)
    return None


def due(item: WorkItem, settings: QueueSettings, now: datetime) -> Due | None:
    """What the timer must do to the item now (None: nothing)."""
    if not item.open:
        return None
    if now >= item.expires_at:
        return Due.TTL
    if (
        item.state is WorkItemState.RESERVED
        and item.offer_expires_at is not None
        and now >= item.offer_expires_at
    ):
        return Due.OFFER_TIMEOUT
    overflow = _overflow_at(item, settings)
    if overflow is not None and now >= overflow:
        return Due.OVERFLOW
    return None


def next_deadline(item: WorkItem, settings: QueueSettings) -> datetime | None:
    if not item.open:
        return None
    times = [item.expires_at]
    if item.state is WorkItemState.RESERVED and item.offer_expires_at is not None:
        times.append(item.offer_expires_at)
    overflow = _overflow_at(item, settings)
    if overflow is not None:
        times.append(overflow)
    return min(times)


@dataclass(slots=True)
class AgentLoad:
    """One agent as the router sees it: its status, capacity, the units its items and live
    calls hold, when it was last idle, and how much work it has handled."""

    user_id: str
    status: AgentStatus
    capacity: int = DEFAULT_CAPACITY
    load: int = 0
    idle_since: datetime | None = None
    handled: int = 0

    @property
    def free(self) -> int:
        return self.capacity - self.load

    def room_for(self, weight: int) -> bool:
        return self.status is AgentStatus.AVAILABLE and self.free >= weight


def live_call_blocked(capacity: int, item_load: int) -> bool:
    """The live queue engine must not offer a call: the items leave less than a call's weight."""
    return item_load > 0 and capacity - item_load < LIVE_CALL_WEIGHT


@dataclass(frozen=True, slots=True)
class Choice:
    agent_id: str | None
    reset: bool  # every eligible agent had declined: the decliners are forgotten


def choose_agent(
    item: WorkItem,
    strategy: QueueStrategy,
    members: Sequence[QueueMember],
    agents: Mapping[str, AgentLoad],
    *,
    last_offered: str | None = None,
) -> Choice:
    eligible = [
        (index, m)
        for index, m in enumerate(members)
        if (a := agents.get(m.user_id)) is not None and a.status is AgentStatus.AVAILABLE
    ]
    declined = set(item.declined_by)
    reset = bool(eligible) and all(m.user_id in declined for _, m in eligible)
    if reset:
        declined = set()
    pool = [
        (index, m)
        for index, m in eligible
        if m.user_id not in declined and agents[m.user_id].room_for(item.weight)
    ]
    if not pool:
        return Choice(None, reset)
    tier = min(m.tier_level for _, m in pool)
    pool = [(index, m) for index, m in pool if m.tier_level == tier]

    def idle(p: tuple[int, QueueMember]) -> tuple[datetime, int]:
        since = agents[p[1].user_id].idle_since or datetime.min.replace(tzinfo=None)
        return (since.replace(tzinfo=None), p[0])

    if strategy is QueueStrategy.FEWEST_CALLS:
        _, best = min(pool, key=lambda p: (agents[p[1].user_id].handled, *idle(p)))
    elif strategy is QueueStrategy.ROUND_ROBIN:
        order = [m.user_id for m in members]
        start = order.index(last_offered) + 1 if last_offered in order else 0
        _, best = min(pool, key=lambda p: ((p[0] - start) % len(order), *idle(p)))
    else:  # longest_idle, and ring_all (an item goes to one agent at a time)
        _, best = min(pool, key=idle)
    return Choice(best.user_id, reset)


def by_priority_then_age(items: Iterable[WorkItem]) -> list[WorkItem]:
    return sorted(items, key=lambda i: (i.priority, i.created_at, i.id))


@dataclass(frozen=True, slots=True)
class Assignment:
    item_id: str
    agent_id: str
    reset: bool


@dataclass(slots=True)
class Round:
    """One dispatch round's memory: the last agent offered per queue (round robin)."""

    last_offered: dict[str, str] = field(default_factory=dict)


def dispatch(
    pending: Iterable[WorkItem],
    queues: Mapping[str, tuple[QueueSettings, Sequence[QueueMember]]],
    agents: Mapping[str, AgentLoad],
    memory: Round,
) -> list[Assignment]:
    """Which pending items go to which agents now. `agents` is updated as items are given out
    (their load and `handled`), so one round never fills an agent past its capacity. An item
    that no agent can take waits; items after it in other queues (or lighter ones) still go."""
    chosen: list[Assignment] = []
    for item in by_priority_then_age(pending):
        if item.state is not WorkItemState.PENDING or item.queue_id not in queues:
            continue
        settings, members = queues[item.queue_id]
        pick = choose_agent(
            item,
            settings.strategy,
            members,
            agents,
            last_offered=memory.last_offered.get(item.queue_id),
        )
        if pick.agent_id is None:
            continue
        agent = agents[pick.agent_id]
        agent.load += item.weight
        memory.last_offered[item.queue_id] = pick.agent_id
        chosen.append(Assignment(item.id, pick.agent_id, pick.reset))
    return chosen
