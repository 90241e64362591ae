"""The work router: routed voice calls become work items offered to agents (issue 18).

`WorkItemService` implements `contact_center.WorkRouter` (the Telephony API calls `place`,
`clear` and `voice_call_changed`) and the agents' side (offers, accept, decline, wrap up,
complete, a live feed of events). The rules are `domain.work_items`; this keeps the open items
of every account in memory, and writes every change to the database before it is announced
(webhooks go through the event outbox in the same transaction; the agents' feeds after the
commit). A timer task wakes at the next offer timeout, overflow or time to live.

Alone, the router keeps the open items in memory, loaded from the database on start (an offer
that was ringing when the service died is withdrawn and the item offered again). In a cluster
(issue 23, `shared`: a `RouterLock`) every node routes: each change (placing, accepting,
declining, completing an item, a timer round) is made under one advisory lock across the nodes,
on the open items and pending offers read again from the database first, so two nodes never
offer one item twice nor fill an agent past its capacity, and an offer made on one node is
accepted or declined on another. Each change is announced to the other nodes at its commit
(`changed`: PostgreSQL NOTIFY), and a node told (`notified`) reads the items and offers again
at once, tells its agents' feeds the offers made and items changed elsewhere and takes on
their timers; it also polls every `SHARED_POLL_SEC`, the fallback for a lost notification. An
offer that was ringing when a node died is left to its timeout (a node starting does not know
it is dead). "Idle longest" is the stored `idle_since` of each agent (set on the database's
clock, under the lock, when its last item ends; also when a live call's wrap-up ends), the
same on every node.

Capacity is shared with live queue calls through the `QueueEngine`: a live call the agent is
offered, in or wrapping up counts as a live call's weight here, and the engine offers no call
to an agent whose items leave less than that free (`Agent.work_blocked`).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from afterbeep.domain import work_items as rules
from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import Conflict, InvalidInput, NotFound, Unavailable
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.queues import AgentState, AgentStatus, Queue, QueueSettings
from afterbeep.domain.work_items import (
    AgentLoad,
    Due,
    OfferStatus,
    Round,
    WorkItem,
    WorkItemState,
    WorkOffer,
)
from afterbeep.services.contact_center import (
    CallbackRequest,
    Callbacks,
    CallbackStatus,
    Channel,
    VoiceCallReader,
    VoiceCallSummary,
    WorkPlacement,
    WorkRequest,
    WorkRouter,
)
from afterbeep.services.messages import message_audio_link
from afterbeep.services.ports import Page, UnitOfWorkFactory
from afterbeep.services.ports.ring_groups import UserLookup
from afterbeep.services.ports.work_items import AgentRecord, AgentToken, RouterLock
from afterbeep.services.queues import QueueEngine

log = logging.getLogger("afterbeep.work_items")

OFFERED = "work_item.offered"
ACCEPTED = "work_item.accepted"
DECLINED = "work_item.declined"
TIMED_OUT = "work_item.timed_out"
COMPLETED = "work_item.completed"
CANCELED = "work_item.canceled"
UPDATED = "work_item.updated"  # the agent's feed only: the voice call's transcript or recording
WRAPPING = "work_item.wrapping"  # the agent's feed only
FEED_MAX = 1000  # events waiting for one slow feed reader; past it the feed is closed
RECORDING_LINK_SECONDS = 900
_MESSAGE_ID = re.compile(r"msg_[0-9a-hjkmnp-tv-z]{26}")
_LIVE_BUSY = frozenset({AgentState.OFFERING, AgentState.IN_CALL, AgentState.WRAP_UP})
_OFFER_ENDS = {
    OfferStatus.ACCEPTED: ACCEPTED,
    OfferStatus.DECLINED: DECLINED,
    OfferStatus.TIMED_OUT: TIMED_OUT,
    OfferStatus.RESCINDED: CANCELED,
}
SHARED_POLL_SEC = 5.0  # in a cluster: how often a node looks for due items other nodes placed

AgentKey = tuple[str, str]  # (account_id, user_id)


@dataclass(frozen=True, slots=True)
class FeedEvent:
    event: str
    item: WorkItem
    offer: WorkOffer | None = None


@dataclass(frozen=True, slots=True)
class WorkItemView:
    """An item as its agent sees it: the open offer, the voice call, a signed recording link."""

    item: WorkItem
    offer: WorkOffer | None
    call: VoiceCallSummary | None
    recording_url: str | None


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    account_id: str
    user_id: str
    token_id: str


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: AgentToken
    secret: str  # shown once


@dataclass(slots=True)
class _Batch:
    added: list[WorkItem] = field(default_factory=list)
    items: list[WorkItem] = field(default_factory=list)
    new_offers: list[WorkOffer] = field(default_factory=list)
    offers: list[WorkOffer] = field(default_factory=list)
    events: list[FeedEvent] = field(default_factory=list)


def _payload(event: FeedEvent) -> dict[str, object]:
    item = event.item
    data: dict[str, object] = {
        "work_item_id": item.id,
        "voice_call_id": item.voice_call_id,
        "queue_id": item.queue_id,
        "state": item.state.value,
        "channel": item.channel,
        "priority": item.priority,
        "agent_id": event.offer.agent_id if event.offer is not None else item.agent_id,
    }
    if event.offer is not None:
        data["offer_id"] = event.offer.id
    if item.reason is not None:
        data["reason"] = item.reason
    return data


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class WorkItemService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        *,
        queue_engine: QueueEngine | None = None,
        voice_calls: Callable[[], VoiceCallReader | None] = lambda: None,
        callbacks: Callable[[], Callbacks | None] = lambda: None,
        users: UserLookup | None = None,
        public_url: str = "",
        secret_key: Callable[[], bytes] = lambda: b"",
        reads: UnitOfWorkFactory | None = None,
    ) -> None:
        self._uow = uow
        self._reads = reads or uow  # look-ups that must not queue behind writes
        self._clock = clock
        self._engine = queue_engine
        self._voice_calls = voice_calls
        self._callbacks = callbacks
        self._users = users
        self._public_url = public_url
        self._secret_key = secret_key
        self._items: dict[str, WorkItem] = {}  # open items
        self._offers: dict[str, WorkOffer] = {}  # pending offers
        self._queues: dict[str, Queue] = {}  # as read by the last dispatch
        self._capacity: dict[AgentKey, int] = {}
        self._idle: dict[AgentKey, datetime] = {}
        self._handled: Counter[AgentKey] = Counter()
        self._round = Round()
        self._feeds: dict[AgentKey, set[asyncio.Queue[FeedEvent | None]]] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._poked = False  # woken to route
        self._heard = False  # woken by another node's change
        self._task: asyncio.Task[None] | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._loaded = False
        self.shared: RouterLock | None = None  # a cluster's nodes route in turn (issue 23)
        self.origin = secrets.token_hex(8)  # names this router's change notifications
        self.notifications = 0  # change notifications from other nodes taken (tests, benchmark)
        if queue_engine is not None:
            queue_engine.agent_listeners.append(self._agent_changed)

    @property
    def callbacks(self) -> Callbacks | None:
        return self._callbacks()

    # -- life cycle -------------------------------------------------------------------------

    async def load(self) -> None:
        """Take the open items from the database; an offer in flight is withdrawn (its agent
        may never have seen it) and the item offered again."""
        if self._loaded:
            return
        async with self._lock:
            if self._loaded:
                return
            if self.shared is not None:
                async with self.shared.hold():
                    await self._refresh()
                    self._loaded = True
                    await self._dispatch()
                return
            now = self._clock.now()
            batch = _Batch()
            async with self._uow() as uow:
                stored = await uow.work_items.open_items()
                for item in stored:
                    if item.state is WorkItemState.RESERVED and item.offer_id is not None:
                        pending = await uow.work_items.offer(item.offer_id)
                        if pending is not None and pending.status is OfferStatus.PENDING:
                            item, pending = rules.rescind(item, pending, now)
                            batch.offers.append(pending)
                            batch.items.append(item)
                    self._items[item.id] = item
            await self._save(batch)
            self._loaded = True
            log.info("work router: %d open work items loaded", len(self._items))
            await self._dispatch()

    async def start(self) -> None:
        await self.load()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="work-router")

    async def stop(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.close_feeds()

    def close_feeds(self) -> None:
        """End every agent's event stream (the HTTP server is stopping)."""
        for feeds in list(self._feeds.values()):
            for feed in list(feeds):
                if feed.full():  # the reader is far behind: it ends sooner
                    feed.get_nowait()
                feed.put_nowait(None)

    def wake(self) -> None:
        self._poke()

    def _poke(self) -> None:
        """Route (a timer round) now."""
        self._poked = True
        self._wake.set()

    def notified(self, origin: str) -> None:
        """Another node changed items or offers: read them again now (that node routed)."""
        if origin != self.origin:
            self.notifications += 1
            self._heard = True
            self._wake.set()

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """This node's turn to change items; in a cluster, every node's turn, on the items as
        stored."""
        async with self._lock:
            if self.shared is None:
                yield
                return
            async with self.shared.hold():
                await self._refresh()
                yield

    async def _catch_up(self) -> None:
        """What other nodes changed, read (this node's feeds told) under the router's lock
        held shared: a view no node changes meanwhile. Routes nothing (the node that made the
        change routed)."""
        assert self.shared is not None
        async with self._lock, self.shared.hold(shared=True):
            await self._refresh(memory=False)

    async def _refresh(self, memory: bool = True) -> None:
        """The open items, pending offers and (`memory`) strategies' memory as stored (another
        node may have changed them); this node's agents' feeds are told the offers made and the
        items changed elsewhere."""
        async with self._reads() as uow:
            repo = uow.work_items
            items = {i.id: i for i in await repo.open_items()}
            offers = {o.id: o for o in await repo.pending_offers()}
            if memory:
                last_offered, handled = await repo.routing_memory()
            else:
                last_offered, handled = self._round.last_offered, dict(self._handled)
            for account_id, queue_id in {(i.account_id, i.queue_id) for i in items.values()}:
                if queue_id not in self._queues:
                    queue = await uow.queues.get(account_id, queue_id)
                    if queue is not None:
                        self._queues[queue_id] = queue
            ended = [await repo.offer(o) for o in self._offers if o not in offers]
            closed = [
                await repo.get(i.account_id, i.id)
                for i in self._items.values()
                if i.id not in items
            ]
        events = []
        told: set[str] = set()
        for offer in ended:  # answered, timed out or withdrawn on another node
            if offer is None:
                continue
            kind = _OFFER_ENDS.get(offer.status)
            item = items.get(offer.work_item_id) or self._items.get(offer.work_item_id)
            if kind is not None and item is not None:
                events.append(FeedEvent(kind, item, offer))
                told.add(item.id)
        for gone in closed:  # completed or canceled on another node
            if gone is not None and gone.id not in items and gone.id not in told:
                kind = COMPLETED if gone.state is WorkItemState.COMPLETED else CANCELED
                events.append(FeedEvent(kind, gone))
                told.add(gone.id)
        for item in items.values():
            before = self._items.get(item.id)
            made = offers.get(item.offer_id or "")
            if made is not None and made.id not in self._offers:
                events.append(FeedEvent(OFFERED, item, made))
            elif before is not None and before != item and item.id not in told:
                events.append(FeedEvent(UPDATED, item, made))
        keys = {
            (i.account_id, i.agent_id)
            for i in (*self._items.values(), *items.values())
            if i.agent_id is not None
        }
        before_loads = {key: self._item_load(key) for key in keys}
        self._items, self._offers = items, offers
        self._round.last_offered, self._handled = last_offered, Counter(handled)
        self._loads_changed([k for k in keys if self._item_load(k) != before_loads[k]])
        self._announce(events)

    def _loads_changed(self, keys: Iterable[AgentKey]) -> None:
        now = self._clock.now()
        for key in keys:
            load = self._item_load(key)
            if load == 0:
                self._idle[key] = now
            if self._engine is not None:
                capacity = self._capacity.get(key, rules.DEFAULT_CAPACITY)
                self._engine.floor.agent(key[1]).work_blocked = rules.live_call_blocked(
                    capacity, load
                )

    async def _run(self) -> None:
        while True:
            deadline = self.next_deadline()
            timeout = None
            if deadline is not None:
                timeout = max(0.0, (deadline - self._clock.now()).total_seconds())
            if self.shared is not None:
                timeout = SHARED_POLL_SEC if timeout is None else min(timeout, SHARED_POLL_SEC)
            timed_out = False
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                timed_out = True
            self._wake.clear()
            poked, self._poked = self._poked, False
            heard, self._heard = self._heard, False
            try:
                if poked or timed_out:
                    await self.run_due()
                elif heard:
                    await self._catch_up()
                # else: a new item's timers, taken on by the loop
            except Exception:  # a database hiccup must not end routing; next wake retries
                log.exception("work router: a timer round failed")
                await asyncio.sleep(1.0)

    def _agent_changed(self, user_id: str) -> None:
        """The live queue engine changed an agent (status, a call ended, on this node or, in a
        cluster, another): route again, and again when its wrap-up is over. In a cluster, only
        when items wait (memory follows the other nodes' changes; the poll covers a lost one):
        each hold a live queue call takes or frees on any node lands here."""
        if self.shared is None or any(
            i.state is WorkItemState.PENDING for i in self._items.values()
        ):
            self._poke()
        if self._engine is None:
            return
        agent = self._engine.floor.agents.get(user_id)
        if agent is None or agent.state is not AgentState.WRAP_UP:
            return
        delay = max(0.0, agent.wrap_up_until - self._engine.monotonic()) + 0.05
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._timers.discard(handle)
            self._poke()

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    # -- the WorkRouter port ----------------------------------------------------------------

    async def place(self, request: WorkRequest) -> WorkPlacement:
        await self.load()
        async with self._guard():
            for item in await self._of_call(request.account_id, request.voice_call_id):
                if item.state is not WorkItemState.CANCELED:
                    return WorkPlacement(item.id, item.queue_id, item.agent_id, False)
            async with self._reads() as uow:
                queue = await uow.queues.get(request.account_id, request.queue_id)
            if queue is None:
                raise NotFound("queue", request.queue_id)
            item = rules.new_item(
                new_id("wi"),
                request.account_id,
                request.voice_call_id,
                queue.id,
                queue.settings,
                self._clock.now(),
                channel=request.channel.value,
                priority=request.priority,
                weight=request.weight,
            )
            self._queues[queue.id] = queue
            # Created and (when an agent can take it) offered in one transaction.
            await self._dispatch(added=item)
            log.info("work item %s placed in queue %s", item.id, queue.id)
            placed = self._items.get(item.id, item)
        self._wake.set()  # its timers (it is routed)
        return WorkPlacement(placed.id, placed.queue_id, placed.agent_id, True)

    async def clear(self, account_id: str, voice_call_id: str, reason: str) -> bool:
        await self.load()
        async with self._guard():
            found = [
                i
                for i in self._items.values()
                if i.account_id == account_id and i.voice_call_id == voice_call_id
            ]
            if not found:
                return False
            batch = _Batch()
            for item in found:
                self._cancel_into(batch, item, reason or "cleared")
            await self._save(batch)
            await self._dispatch()
        return True

    async def voice_call_changed(self, account_id: str, voice_call_id: str) -> None:
        for item in list(self._items.values()):
            if (
                item.account_id == account_id
                and item.voice_call_id == voice_call_id
                and item.agent_id is not None
            ):
                self._announce([FeedEvent(UPDATED, item, self._offers.get(item.offer_id or ""))])

    async def _of_call(self, account_id: str, voice_call_id: str) -> builtins.list[WorkItem]:
        async with self._reads() as uow:
            return await uow.work_items.of_voice_call(account_id, voice_call_id)

    # -- operators --------------------------------------------------------------------------

    async def route(
        self,
        account_id: str,
        voice_call_id: str,
        queue_id: str,
        *,
        channel: str,
        priority: int,
        weight: int | None,
    ) -> WorkPlacement:
        """An operator routes a voice call into a queue (as omniFlow does)."""
        if not is_id(voice_call_id, "vc"):
            raise InvalidInput("voice_call_id", "is not a voice call id (vc_...)")
        if not is_id(queue_id, "q"):
            raise NotFound("queue", queue_id[:40])
        reader = self._voice_calls()
        if reader is not None and await reader.summary(account_id, voice_call_id) is None:
            raise NotFound("voice call", voice_call_id)
        rules.check_priority_weight(priority, weight or 1)
        return await self.place(
            WorkRequest(account_id, voice_call_id, queue_id, Channel(channel), priority, weight)
        )

    async def list(
        self,
        account_id: str,
        queue_id: str | None,
        state: WorkItemState | None,
        cursor: str | None,
        limit: int,
    ) -> Page[WorkItem]:
        async with self._reads() as uow:
            return await uow.work_items.list(account_id, queue_id, state, cursor, limit)

    async def get(self, account_id: str, item_id: str) -> tuple[WorkItem, builtins.list[WorkOffer]]:
        if not is_id(item_id, "wi"):
            raise NotFound("work item", item_id[:40])
        async with self._reads() as uow:
            item = await uow.work_items.get(account_id, item_id)
            if item is None:
                raise NotFound("work item", item_id)
            return item, await uow.work_items.offers(account_id, item_id)

    async def completed_by(
        self, account_id: str, user_id: str, limit: int
    ) -> builtins.list[WorkItem]:
        """The items the agent completed, most recent first (the console's list)."""
        async with self._reads() as uow:
            return await uow.work_items.completed_by(account_id, user_id, limit)

    async def set_capacity(self, account_id: str, user_id: str, capacity: int | None) -> None:
        if capacity is not None:
            rules.check_capacity(capacity)
        async with self._uow() as uow:
            await uow.work_items.set_capacity(account_id, user_id, capacity, self._clock.now())
        key = (account_id, user_id)
        self._capacity[key] = rules.DEFAULT_CAPACITY if capacity is None else capacity
        if self._engine is not None:
            self._engine.floor.agent(user_id).work_blocked = rules.live_call_blocked(
                self._capacity[key], self._item_load(key)
            )
        self._poke()

    async def capacities(self, account_id: str) -> dict[str, int]:
        async with self._reads() as uow:
            stored = await uow.work_items.capacities(account_id)
        return {
            user_id: rules.DEFAULT_CAPACITY if c is None else c for user_id, c in stored.items()
        }

    # -- agents' tokens ---------------------------------------------------------------------

    async def create_token(self, account_id: str, user_id: str, name: str) -> IssuedToken:
        await self._check_agent(account_id, user_id)
        if len(name) > 200:
            raise InvalidInput("name", "at most 200 characters")
        token_id = new_id("atk")
        secret = f"{token_id}.{secrets.token_urlsafe(32)}"
        token = AgentToken(
            token_id, account_id, user_id, name, hash_secret(secret), self._clock.now()
        )
        async with self._uow() as uow:
            await uow.work_items.add_token(token)
        return IssuedToken(token, secret)

    async def tokens(self, account_id: str, user_id: str) -> builtins.list[AgentToken]:
        await self._check_agent(account_id, user_id)
        async with self._uow() as uow:
            return await uow.work_items.tokens(account_id, user_id)

    async def revoke_token(self, account_id: str, user_id: str, token_id: str) -> None:
        if not is_id(token_id, "atk"):
            raise NotFound("agent token", token_id[:40])
        async with self._uow() as uow:
            done = await uow.work_items.revoke_token(
                account_id, user_id, token_id, self._clock.now()
            )
        if not done:
            raise NotFound("agent token", token_id)

    async def authenticate(self, secret: str) -> AgentIdentity | None:
        token_id, dot, _ = secret.partition(".")
        if not dot or not is_id(token_id, "atk"):
            return None
        async with self._reads() as uow:
            token = await uow.work_items.token(token_id)
        if token is None or token.revoked_at is not None:
            return None
        if not hmac.compare_digest(token.secret_hash, hash_secret(secret)):
            return None
        return AgentIdentity(token.account_id, token.user_id, token.id)

    async def _check_agent(self, account_id: str, user_id: str) -> None:
        if not is_id(user_id, "usr"):
            raise NotFound("agent", user_id[:40])
        if self._users is not None and not await self._users.is_agent(account_id, user_id):
            raise NotFound("agent", user_id)

    # -- agents -----------------------------------------------------------------------------

    def agent_offers(self, account_id: str, user_id: str) -> builtins.list[WorkOffer]:
        return sorted(
            (
                o
                for o in self._offers.values()
                if o.account_id == account_id and o.agent_id == user_id
            ),
            key=lambda o: (o.offered_at, o.id),
        )

    def open_offer_events(self, account_id: str, user_id: str) -> builtins.list[FeedEvent]:
        """The agent's open offers, as the events that made them (a feed's first events)."""
        return [
            FeedEvent(OFFERED, self._items[o.work_item_id], o)
            for o in self.agent_offers(account_id, user_id)
            if o.work_item_id in self._items
        ]

    def agent_items(self, account_id: str, user_id: str) -> builtins.list[WorkItem]:
        """The items the agent holds (offered, accepted, wrapping), oldest first."""
        return sorted(
            (
                i
                for i in self._items.values()
                if i.account_id == account_id and i.agent_id == user_id
            ),
            key=lambda i: (i.created_at, i.id),
        )

    async def agent_item(self, account_id: str, user_id: str, item_id: str) -> WorkItem:
        # In a cluster, memory may lag what another node did: the stored item is the truth.
        item = None if self.shared is not None else self._items.get(item_id)
        if item is None and is_id(item_id, "wi"):
            async with self._reads() as uow:
                item = await uow.work_items.get(account_id, item_id)
        if item is None or item.account_id != account_id or item.agent_id != user_id:
            raise NotFound("work item", item_id[:40])
        return item

    def offer(self, offer_id: str) -> WorkOffer | None:
        return self._offers.get(offer_id)

    async def _agent_offer(self, account_id: str, user_id: str, offer_id: str) -> WorkOffer:
        pending = self._offers.get(offer_id)
        if pending is not None and pending.account_id == account_id and pending.agent_id == user_id:
            return pending
        if is_id(offer_id, "wio"):
            async with self._reads() as uow:
                stored = await uow.work_items.offer(offer_id)
            if (
                stored is not None
                and stored.account_id == account_id
                and stored.agent_id == user_id
            ):
                raise Conflict(f"offer {offer_id!r} is {stored.status.value}", "offer-closed")
        raise NotFound("offer", offer_id[:40])

    async def accept(self, account_id: str, user_id: str, offer_id: str) -> WorkItem:
        await self.load()
        async with self._guard():
            pending = await self._agent_offer(account_id, user_id, offer_id)
            item = self._items[pending.work_item_id]
            now = self._clock.now()
            if rules.due(item, self._settings(item), now) is not None:
                await self._run_due(now)
                self._poke()
                pending = await self._agent_offer(account_id, user_id, offer_id)
            item, closed = rules.accept(item, pending, now)
            self._handled[(account_id, user_id)] += 1
            await self._save(
                _Batch(items=[item], offers=[closed], events=[FeedEvent(ACCEPTED, item, closed)])
            )
        return item

    async def decline(self, account_id: str, user_id: str, offer_id: str) -> WorkItem:
        await self.load()
        async with self._guard():
            pending = await self._agent_offer(account_id, user_id, offer_id)
            item, closed = rules.decline(
                self._items[pending.work_item_id], pending, self._clock.now()
            )
            await self._save(
                _Batch(items=[item], offers=[closed], events=[FeedEvent(DECLINED, item, closed)])
            )
            await self._dispatch()
        return item

    async def wrap_up(self, account_id: str, user_id: str, item_id: str) -> WorkItem:
        await self.load()
        async with self._guard():
            item = rules.wrap_up(
                await self.agent_item(account_id, user_id, item_id), self._clock.now()
            )
            await self._save(_Batch(items=[item], events=[FeedEvent(WRAPPING, item)]))
        return item

    async def complete(
        self, account_id: str, user_id: str, item_id: str, notes: str | None
    ) -> WorkItem:
        await self.load()
        async with self._guard():
            item = rules.complete(
                await self.agent_item(account_id, user_id, item_id), notes, self._clock.now()
            )
            await self._save(_Batch(items=[item], events=[FeedEvent(COMPLETED, item)]))
            await self._dispatch()
        return item

    async def call_back(
        self,
        account_id: str,
        user_id: str,
        item_id: str,
        number: str | None = None,
        caller_id: str | None = None,
    ) -> CallbackStatus:
        """Ring the agent's device, then the customer (default: the voice call's callback
        number, else its caller) from `caller_id` (default: the number the call was made to)."""
        item = await self.agent_item(account_id, user_id, item_id)
        callbacks = self._callbacks()
        if callbacks is None:
            raise Unavailable("callbacks are not available here")
        if not item.open or item.agent_id != user_id or item.offer_id is not None:
            raise Conflict(
                f"work item {item.id!r} is {item.state.value}: accept it first", "work-item-state"
            )
        call = (await self.view(item)).call
        number = number or (call.callback_number or call.from_number if call else None)
        caller_id = caller_id or (call.to_number if call else None)
        if not number:
            raise InvalidInput("number", "the voice call has no number to call back")
        if not caller_id:
            raise InvalidInput("caller_id", "the voice call has no number to call from")
        return await callbacks.start(
            CallbackRequest(
                account_id, user_id, number, caller_id, item.voice_call_id, work_item_id=item.id
            )
        )

    async def view(self, item: WorkItem) -> WorkItemView:
        reader = self._voice_calls()
        call = await reader.summary(item.account_id, item.voice_call_id) if reader else None
        offer = self._offers.get(item.offer_id) if item.offer_id else None
        return WorkItemView(item, offer, call, self._recording_url(call))

    def _recording_url(self, call: VoiceCallSummary | None) -> str | None:
        """A message recorded here gets a signed link (as the inbox's); an outside location
        is passed on as it is."""
        location = call.recording_location if call is not None else None
        if not location:
            return None
        found = _MESSAGE_ID.search(location)
        key = self._secret_key() if found is not None else b""
        if found is not None and key:
            return message_audio_link(
                self._public_url,
                key,
                found.group(0),
                now=self._clock.now(),
                ttl_seconds=RECORDING_LINK_SECONDS,
            ).url
        if location.startswith(("https://", "http://")):
            return location
        return None

    # -- the agent's feed -------------------------------------------------------------------

    def subscribe(self, account_id: str, user_id: str) -> asyncio.Queue[FeedEvent | None]:
        feed: asyncio.Queue[FeedEvent | None] = asyncio.Queue(FEED_MAX)
        self._feeds.setdefault((account_id, user_id), set()).add(feed)
        return feed

    def unsubscribe(
        self, account_id: str, user_id: str, feed: asyncio.Queue[FeedEvent | None]
    ) -> None:
        feeds = self._feeds.get((account_id, user_id))
        if feeds is not None:
            feeds.discard(feed)
            if not feeds:
                self._feeds.pop((account_id, user_id), None)

    def _announce(self, events: Iterable[FeedEvent]) -> None:
        for event in events:
            agent = event.offer.agent_id if event.offer is not None else event.item.agent_id
            if agent is None:
                continue
            for feed in list(self._feeds.get((event.item.account_id, agent), ())):
                if feed.full():  # the reader is far behind: its stream ends
                    log.warning("work router: an agent's feed is too far behind; closed")
                    self.unsubscribe(event.item.account_id, agent, feed)
                    feed.get_nowait()
                    feed.put_nowait(None)
                    continue
                feed.put_nowait(event)

    # -- routing ----------------------------------------------------------------------------

    def _settings(self, item: WorkItem) -> QueueSettings:
        queue = self._queues.get(item.queue_id)
        return queue.settings if queue is not None else QueueSettings()

    def next_deadline(self) -> datetime | None:
        times = [
            t
            for item in self._items.values()
            if (t := rules.next_deadline(item, self._settings(item))) is not None
        ]
        return min(times, default=None)

    async def run_due(self) -> None:
        """Time out offers, overflow and expire items due now, then offer what can be."""
        await self.load()
        async with self._guard():
            await self._run_due(self._clock.now())
            await self._dispatch()

    async def _run_due(self, now: datetime) -> None:
        batch = _Batch()
        for item in list(self._items.values()):
            settings = self._settings(item)
            action = rules.due(item, settings, now)
            if action is Due.TTL:
                self._cancel_into(batch, item, rules.TTL_REASON)
            elif action is Due.OFFER_TIMEOUT and item.offer_id in self._offers:
                moved, closed = rules.time_out(item, self._offers[item.offer_id], now)
                batch.items.append(moved)
                batch.offers.append(closed)
                batch.events.append(FeedEvent(TIMED_OUT, moved, closed))
            elif action is Due.OVERFLOW and settings.work_fallback_queue_id is not None:
                moved = rules.move(item, settings.work_fallback_queue_id, now)
                batch.items.append(moved)
                log.info("work item %s overflowed to %s", item.id, moved.queue_id)
        await self._save(batch)

    def _cancel_into(self, batch: _Batch, item: WorkItem, reason: str) -> None:
        now = self._clock.now()
        pending = self._offers.get(item.offer_id) if item.offer_id else None
        if pending is not None:
            item, closed = rules.rescind(item, pending, now)
            batch.offers.append(closed)
            item = rules.cancel(item, reason, now)
            batch.items.append(item)
            batch.events.append(FeedEvent(CANCELED, item, closed))
            return
        item = rules.cancel(item, reason, now)
        batch.items.append(item)
        batch.events.append(FeedEvent(CANCELED, item))

    def _item_load(self, key: AgentKey) -> int:
        return sum(i.holds for i in self._items.values() if (i.account_id, i.agent_id) == key)

    def _live_load(self, user_id: str) -> int:
        if self._engine is None:
            return 0
        agent = self._engine.floor.agents.get(user_id)
        if agent is None:
            return 0
        state = self._engine.agent_state(user_id)[0]
        return rules.LIVE_CALL_WEIGHT if state in _LIVE_BUSY else 0

    async def _dispatch(self, added: WorkItem | None = None) -> None:
        """Offer what can be offered now; `added`: a new item, saved in the same transaction."""
        pending = [i for i in self._items.values() if i.state is WorkItemState.PENDING]
        if added is not None:
            pending.append(added)
        if not pending:
            return
        by_id = {i.id: i for i in pending}
        by_account: dict[str, list[WorkItem]] = {}
        for item in pending:
            by_account.setdefault(item.account_id, []).append(item)
        now = self._clock.now()
        batch = _Batch(added=[added] if added is not None else [])
        for account_id, items in by_account.items():
            async with self._reads() as uow:
                queues: dict[str, Queue] = {}
                for queue_id in {i.queue_id for i in items}:
                    queue = await uow.queues.get(account_id, queue_id)
                    if queue is not None:
                        queues[queue_id] = queue
                members = sorted({m.user_id for q in queues.values() for m in q.members})
                records = await uow.work_items.agents(account_id, members) if members else {}
            self._queues.update(queues)
            for item in items:
                if item.queue_id not in queues:
                    self._cancel_into(batch, item, f"queue {item.queue_id} no longer exists")
            loads: dict[str, AgentLoad] = {}
            for user_id in members:
                key = (account_id, user_id)
                record = records.get(user_id)
                capacity = rules.DEFAULT_CAPACITY
                if record is not None and record.capacity is not None:
                    capacity = record.capacity
                self._capacity[key] = capacity
                live_calls = 0
                if self._engine is not None:
                    live_calls = self._engine.agent_state(user_id)[2]
                loads[user_id] = AgentLoad(
                    user_id,
                    record.status if record is not None else AgentStatus.OFFLINE,
                    capacity,
                    self._item_load(key) + self._live_load(user_id),
                    self._idle_since(key, record),
                    self._handled[key] + live_calls,
                )
            settings = {qid: (q.settings, q.members) for qid, q in queues.items()}
            for chosen in rules.dispatch(items, settings, loads, self._round):
                item = by_id[chosen.item_id]
                reserved, made = rules.offer(
                    item,
                    chosen.agent_id,
                    new_id("wio"),
                    queues[item.queue_id].settings,
                    now,
                    reset=chosen.reset,
                )
                batch.items.append(reserved)
                batch.new_offers.append(made)
                batch.events.append(FeedEvent(OFFERED, reserved, made))
        await self._save(batch)

    def _idle_since(self, key: AgentKey, record: AgentRecord | None) -> datetime | None:
        """Since when the agent is idle: in a cluster as stored (every node's items and calls),
        else as this node saw; never before its status last changed."""
        since = record.since if record is not None else None
        if self.shared is not None:
            idle = record.idle_since if record is not None else None
        else:
            idle = self._idle.get(key)
        if idle is not None and (since is None or idle > since or self.shared is None):
            return idle
        return since

    def _going_idle(self, batch: _Batch) -> dict[str, builtins.list[str]]:
        """By account, the agents the batch leaves holding no item (they held some)."""
        after = dict(self._items)
        for item in [*batch.added, *batch.items]:
            if item.open:
                after[item.id] = item
            else:
                after.pop(item.id, None)
        keys = {
            (i.account_id, i.agent_id)
            for i in self._items.values()
            if i.agent_id is not None and i.holds
        }
        idle: dict[str, builtins.list[str]] = {}
        for account_id, user_id in sorted(k for k in keys if k[1] is not None):
            held = sum(
                i.holds
                for i in after.values()
                if i.account_id == account_id and i.agent_id == user_id
            )
            if not held:
                idle.setdefault(account_id, []).append(user_id)
        return idle

    async def _save(self, batch: _Batch) -> None:
        """Commit the batch, then apply it to memory, then announce it."""
        if not (batch.added or batch.items or batch.new_offers or batch.offers):
            return
        idle = self._going_idle(batch) if self.shared is not None else {}
        async with self._uow() as uow:
            repo = uow.work_items
            for item in batch.added:
                await repo.add(item)
            for item in batch.items:
                await repo.update(item)
            for made in batch.new_offers:
                await repo.add_offer(made)
            for changed in batch.offers:
                await repo.update_offer(changed)
            for event in batch.events:
                if event.event not in (UPDATED, WRAPPING):
                    await uow.events.publish(event.item.account_id, event.event, _payload(event))
            if self.shared is not None:
                for account_id, user_ids in idle.items():
                    await repo.mark_idle(account_id, user_ids, self._clock.now())
                await repo.changed(self.origin)
        touched: set[AgentKey] = set()
        for item in [*batch.added, *batch.items]:
            previous = self._items.get(item.id)
            if previous is not None and previous.agent_id is not None:
                touched.add((previous.account_id, previous.agent_id))
            if item.agent_id is not None:
                touched.add((item.account_id, item.agent_id))
            if item.open:
                self._items[item.id] = item
            else:
                self._items.pop(item.id, None)
        for changed in [*batch.new_offers, *batch.offers]:
            if changed.status is OfferStatus.PENDING:
                self._offers[changed.id] = changed
            else:
                self._offers.pop(changed.id, None)
        self._loads_changed(touched)
        self._announce(batch.events)


def as_work_router(service: WorkItemService) -> WorkRouter:
    """The service as the contract's `WorkRouter` (mypy checks that it is one)."""
    return service
