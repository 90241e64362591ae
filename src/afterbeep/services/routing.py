"""Where an inbound call goes: the dialled number's destination, resolved before answering.

`CallRouter.route()` is the one seam: the telephony layer only acts on the `Route` it returns.
A number answers `NoRoute(404)` when disabled and `NoRoute(403)` to an anonymous caller when it
does not allow them. With a `schedule_id`, the schedule's state at the call's instant (the
injected clock) picks the destination (`afterbeep.domain.numbers.destination_for`); a missing
schedule fails open (in hours) and is logged. A destination leads to a `VoicemailRoute` (the
deposit script), a `FlowRoute` (the flow runner, with the flow's current version), a
`HangupRoute`, or `NoRoute(480)` when what it names is gone.

A number with every destination it may lead to (`NumberDestinations`: number, mailboxes,
greetings, flow graphs, schedule) is kept for a few seconds in a `RouteCache`, so that an INVITE
to a number called a moment ago can be answered without a database round trip
(`CallRouter.cached`); the schedule is evaluated for every call, so the cache never makes that
choice stale. The cache is cleared whenever this process commits a change to numbers,
mailboxes, media, schedules, flows or accounts (`invalidating` wraps the unit of work the
services write through), and its entries expire after ``ttl`` seconds, so the changes of
another instance are seen that late at most. An entry used in the second half of its life is
read again in the background (refresh-ahead), so a number that keeps being called never misses
the cache. Whether the mailbox is full is never cached: it is read for every call
(`CallRouter.complete`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, cast

from afterbeep.domain import mailboxes as mailbox_rules
from afterbeep.domain.accounts import Account
from afterbeep.domain.clock import Clock, SystemClock
from afterbeep.domain.flows import FlowGraph, RefKind, parse_graph, references
from afterbeep.domain.ids import is_id
from afterbeep.domain.mailboxes import Mailbox, Usage
from afterbeep.domain.media import Media
from afterbeep.domain.numbers import (
    Destination,
    DestKind,
    Number,
    NumberStatus,
    destination_for,
)
from afterbeep.domain.queues import Queue
from afterbeep.domain.ring_groups import RingGroup
from afterbeep.domain.schedules import Schedule, ScheduleState, evaluate_or_open
from afterbeep.domain.users import Device, Forward, User
from afterbeep.services.mailboxes import find_mailbox
from afterbeep.services.numbers import NumberService
from afterbeep.services.ports import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VoicemailRoute:
    number: Number
    mailbox: Mailbox
    full: bool
    greeting_key: str | None
    greeting_original_key: str | None = None  # to render the greeting when it is still pending
    greeting_duration_ms: int | None = None
    extension: str | None = None  # the owner's, read out when there is no greeting nor name


@dataclass(frozen=True, slots=True)
class FlowRoute:
    """Run version `version` of flow `flow_id` (the current one when the call was routed: the
    call keeps it). `language` and `timezone` are the account's; `speech` is the version's
    rendered texts (`"<node_id>/<field>"` to a media id)."""

    number: Number
    account_id: str
    flow_id: str
    version: int
    graph: FlowGraph
    language: str
    timezone: str
    speech: Mapping[str, str] = field(default_factory=dict)
    # What the version refers to, read with it (and cached with the number's route): its media
    # (audio and speech) by id, its schedules (None: gone), its mailboxes. A call that finds an
    # id missing here reads it itself.
    media: Mapping[str, Media] = field(default_factory=dict)
    schedules: Mapping[str, Schedule | None] = field(default_factory=dict)
    mailboxes: Mapping[str, VoicemailDestination] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HangupRoute:
    """The number's destination is `hangup`: the call is declined, never answered."""

    number: Number


@dataclass(frozen=True, slots=True)
class RingGroupRoute:
    """Ring the group's members (the ring group application); `language` is the account's."""

    number: Number
    group: RingGroup
    language: str = "en"
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class QueueRoute:
    """Wait in the queue for an agent (the queue application); `language` is the account's."""

    number: Number
    queue: Queue
    language: str = "en"
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class UserRoute:
    """Ring a user (telephony.scripts.user); its forwards are resolved when the call needs them
    (`CallRouter.forward`), in the account of `number`."""

    number: Number
    user: User


@dataclass(frozen=True, slots=True)
class VoicemailMainRoute:
    """The owner's phone menu (`voicemail_main`): asks for the mailbox number, then the PIN;
    `language` is the account's (until the mailbox is known)."""

    number: Number
    language: str = "en"


@dataclass(frozen=True, slots=True)
class NoRoute:
    """The call cannot be placed: `code` is the SIP answer (403 anonymous caller refused,
    404 unknown or disabled number, 480 destination unavailable)."""

    code: int
    reason: str


Route = (
    VoicemailRoute
    | FlowRoute
    | HangupRoute
    | UserRoute
    | NoRoute
    | RingGroupRoute
    | QueueRoute
    | VoicemailMainRoute
)

NOT_FOUND = NoRoute(404, "Not Found")
ANONYMOUS_REFUSED = NoRoute(403, "Forbidden")
UNAVAILABLE = NoRoute(480, "Temporarily Unavailable")


@dataclass(frozen=True, slots=True)
class VoicemailDestination:
    """What a number leads to, without the mailbox's usage (that changes with every message)."""

    number: Number
    mailbox: Mailbox
    greeting: Media | None
    # The owner's extension, read only for a mailbox with no greeting and no recorded name: the
    # system greeting reads it out ("the person at extension 2 0 1 is not available").
    extension: str | None = None


# What one destination of a number leads to, as cached: everything but the mailbox's usage.
Target = (
    VoicemailDestination
    | FlowRoute
    | HangupRoute
    | UserRoute
    | NoRoute
    | RingGroupRoute
    | QueueRoute
    | VoicemailMainRoute
)


@dataclass(frozen=True, slots=True)
class NumberDestinations:
    """A number and what it leads to in each schedule state, with the schedule to evaluate
    per call (None when the number has none, or it is missing: then in hours)."""

    number: Number
    targets: Mapping[ScheduleState, Target]
    schedule: Schedule | None = None
    timezone: str = "UTC"  # the account's, for a schedule without its own

    @property
    def in_hours(self) -> Target:
        return self.targets[ScheduleState.IN_HOURS]

    def target(self, now: datetime, anonymous: bool) -> Target:
        """Where a call placed at `now` goes (`anonymous`: the caller hides its identity)."""
        number = self.number
        if number.status is not NumberStatus.ACTIVE:
            return NOT_FOUND
        if anonymous and not number.allow_anonymous:
            return ANONYMOUS_REFUSED
        if number.schedule_id is None:
            return self.in_hours
        state, why = evaluate_or_open(self.schedule, now, self.timezone)
        if why is not None:
            log.warning("number %s, schedule %s: %s", number.id, number.schedule_id, why)
        return self.targets[state]


class RouteCache:
    """Numbers' destinations by dialled string, each for ``ttl`` seconds, at most ``size``.

    A look-up started before an `invalidate()` does not store what it read (`generation`).
    """

    def __init__(
        self, ttl: float = 2.0, size: int = 4096, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, NumberDestinations]] = OrderedDict()
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, dialed: str) -> NumberDestinations | None:
        entry = self._entries.get(dialed)
        if entry is None:
            return None
        expires, destination = entry
        if self._clock() >= expires:
            del self._entries[dialed]
            return None
        return destination

    def refresh_due(self, dialed: str) -> bool:
        """Whether the entry of ``dialed`` is in the second half of its life."""
        entry = self._entries.get(dialed)
        return entry is not None and self._clock() >= entry[0] - self.ttl / 2

    def forget(self, dialed: str) -> None:
        self._entries.pop(dialed, None)

    def put(self, dialed: str, destination: NumberDestinations, generation: int) -> None:
        """Keep ``destination`` unless the cache was invalidated since ``generation`` was read."""
        if generation != self.generation or self.ttl <= 0:
            return
        self._entries[dialed] = (self._clock() + self.ttl, destination)
        self._entries.move_to_end(dialed)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def invalidate(self) -> None:
        self.generation += 1
        self._entries.clear()


class CallRouter:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        numbers: NumberService,
        cache: RouteCache | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._uow = uow
        self._numbers = numbers
        self._cache = cache
        self._clock: Clock = clock or SystemClock()
        self._refreshing: dict[str, asyncio.Task[None]] = {}

    def cached(self, dialed: str) -> NumberDestinations | None:
        """The destinations of ``dialed`` if they were looked up a moment ago (no I/O); an
        entry past half its life is looked up again in the background."""
        cache = self._cache
        if cache is None:
            return None
        destination = cache.get(dialed)
        if destination is not None and dialed not in self._refreshing and cache.refresh_due(dialed):
            task = asyncio.get_running_loop().create_task(
                self._refresh(dialed), name="route-refresh"
            )
            self._refreshing[dialed] = task
            task.add_done_callback(lambda done: self._refreshed(dialed, done))
        return destination

    def target(self, destinations: NumberDestinations, *, anonymous: bool = False) -> Target:
        """Where a call placed now goes (no I/O): the schedule is evaluated on the clock."""
        return destinations.target(self._clock.now(), anonymous)

    async def route(self, dialed: str, *, anonymous: bool = False) -> Route:
        """The route of a call to ``dialed``; ``anonymous``: the caller hides its identity."""
        destinations = self.cached(dialed)
        if destinations is not None:
            return await self.finish(self.target(destinations, anonymous=anonymous))
        generation = self._cache.generation if self._cache is not None else 0
        found = await self._look_up(dialed)
        if isinstance(found, NoRoute):
            return found
        destinations, usage = found
        if self._cache is not None:
            self._cache.put(dialed, destinations, generation)
        target = self.target(destinations, anonymous=anonymous)
        if isinstance(target, VoicemailDestination):
            mailbox = target.mailbox
            return _route(target, mailbox_rules.is_full(mailbox, usage[mailbox.id]))
        return target

    async def finish(self, target: Target) -> Route:
        """The route to ``target``: a mailbox's usage is read now; the others are routes."""
        if isinstance(target, VoicemailDestination):
            return await self.complete(target)
        return target

    async def _look_up(self, dialed: str) -> tuple[NumberDestinations, dict[str, Usage]] | NoRoute:
        number = await self._numbers.resolve(dialed)
        if number is None:
            return NOT_FOUND
        if number.status is not NumberStatus.ACTIVE:
            return NumberDestinations(number, dict.fromkeys(ScheduleState, NOT_FOUND)), {}
        states = [ScheduleState.IN_HOURS] if number.schedule_id is None else list(ScheduleState)
        wanted = {state: destination_for(number, state) for state in states}
        async with self._uow() as uow:
            account = None
            if number.schedule_id is not None or any(
                dest.kind in _NEEDS_ACCOUNT for dest in wanted.values()
            ):
                account = await uow.accounts.get(number.account_id)
            schedule = None
            if number.schedule_id is not None and is_id(number.schedule_id, "sch"):
                stored = await uow.schedules.get(number.account_id, number.schedule_id)
                schedule = stored.schedule if stored is not None else None
            resolved: dict[Destination, Target] = {}
            for dest in wanted.values():
                if dest not in resolved:
                    resolved[dest] = await _target(uow, number, dest, account)
            mailboxes = [
                target.mailbox.id
                for target in resolved.values()
                if isinstance(target, VoicemailDestination)
            ]
            usage = await uow.messages.usage(number.account_id, mailboxes) if mailboxes else {}
        by_state = {
            state: resolved[wanted.get(state, wanted[ScheduleState.IN_HOURS])]
            for state in ScheduleState
        }
        timezone = account.timezone if account is not None else "UTC"
        return NumberDestinations(number, by_state, schedule, timezone), usage

    async def _refresh(self, dialed: str) -> None:
        cache = self._cache
        assert cache is not None
        generation = cache.generation
        found = await self._look_up(dialed)
        if isinstance(found, NoRoute):
            if generation == cache.generation:
                cache.forget(dialed)  # the next call takes the slow path and gets the refusal
        else:
            cache.put(dialed, found[0], generation)

    def _refreshed(self, dialed: str, task: asyncio.Task[None]) -> None:
        self._refreshing.pop(dialed, None)
        if not task.cancelled() and task.exception() is not None:
            log.warning("route refresh failed", exc_info=task.exception())

    async def mailbox(self, number: Number, mailbox_id: str) -> VoicemailRoute | None:
        """The route into one of the number's account's mailboxes (a flow's voicemail node),
        usage read now; None when there is no such mailbox."""
        async with self._uow() as uow:
            target = await _target(uow, number, Destination(DestKind.VOICEMAIL, mailbox_id), None)
        if not isinstance(target, VoicemailDestination):
            return None
        return await self.complete(target)

    async def destination(self, number: Number, dest: Destination | None) -> Route:
        """The route to one destination of the number's account (where a ring group or a queue
        sends a call on: `None` is hang up), a mailbox's usage read now."""
        if dest is None:
            return HangupRoute(number)
        async with self._uow() as uow:
            account = await uow.accounts.get(number.account_id)
            target = await _target(uow, number, dest, account)
        return await self.finish(target)

    async def forward(self, number: Number, forward: Forward, user: User | None = None) -> Route:
        """Where a user's forward leads now (a mailbox's usage read now); `NoRoute(480)` for
        what is gone. `user` is the forwarding user: its own mailbox needs no look-up of its
        extension."""
        try:
            kind = DestKind(forward.kind.value)
        except ValueError:
            return UNAVAILABLE
        async with self._uow() as uow:
            account = await uow.accounts.get(number.account_id)
            target = await _target(uow, number, Destination(kind, forward.id), account, user)
        return await self.finish(target)

    async def device(self, auth_username: str) -> Device | None:
        async with self._uow() as uow:
            return await uow.devices.by_auth_username(auth_username)

    async def account(self, account_id: str) -> Account | None:
        async with self._uow() as uow:
            return await uow.accounts.get(account_id)

    async def extension(self, account_id: str, username: str) -> User | None:
        """The account's user whose extension is `username`."""
        async with self._uow() as uow:
            return await uow.users.by_username(account_id, username)

    async def schedule(self, account_id: str, schedule_id: str) -> Schedule | None:
        if not is_id(schedule_id, "sch"):
            return None
        async with self._uow() as uow:
            stored = await uow.schedules.get(account_id, schedule_id)
        return stored.schedule if stored is not None else None

    async def media(self, account_id: str, media_id: str) -> Media | None:
        if not is_id(media_id, "media"):
            return None
        async with self._uow() as uow:
            return await uow.media.get(account_id, media_id)

    async def complete(self, destination: VoicemailDestination) -> VoicemailRoute:
        """The route to ``destination`` with the mailbox's usage read now."""
        mailbox = destination.mailbox
        async with self._uow() as uow:
            usage = (await uow.messages.usage(mailbox.account_id, [mailbox.id]))[mailbox.id]
        return _route(destination, mailbox_rules.is_full(mailbox, usage))


async def _target(
    uow: UnitOfWork,
    number: Number,
    dest: Destination,
    account: Account | None,
    owner: User | None = None,
) -> Target:
    """What `dest` leads to now; `NoRoute(480)` when what it names is gone. `owner`: a user
    known to own the mailbox `dest` may name, whose extension then needs no look-up."""
    account_id = number.account_id
    if dest.kind is DestKind.HANGUP:
        return HangupRoute(number)
    if dest.kind is DestKind.VOICEMAIL_MAIN:
        account = account or await uow.accounts.get(account_id)
        return VoicemailMainRoute(number, account.language if account is not None else "en")
    if dest.id is None:
        return UNAVAILABLE
    if dest.kind is DestKind.VOICEMAIL:
        mailbox = await find_mailbox(uow, account_id, dest.id)
        if mailbox is None:
            return UNAVAILABLE
        media = None
        # The temporary greeting while set, else the unavailable one; a call that came through
        # a busy path (a user's busy chain) gets the busy greeting instead (telephony.inbound).
        greeting_id = mailbox.playing_greeting_id
        if greeting_id is not None:
            media = await uow.media.get(account_id, greeting_id)
        extension = None
        if media is None and mailbox.name_media_id is None:
            if owner is not None and owner.voicemail_id == mailbox.id:
                extension = owner.username
            else:
                extension = await uow.users.extension_of(account_id, mailbox.id)
        return VoicemailDestination(number, mailbox, media, extension)
    if dest.kind is DestKind.FLOW and is_id(dest.id, "flow"):
        flow = await uow.flows.get(account_id, dest.id)
        saved = (
            None if flow is None else await uow.flows.get_version(account_id, dest.id, flow.version)
        )
        if saved is None:
            return UNAVAILABLE
        graph = parse_graph(saved.graph.get("nodes"), saved.graph.get("edges"))
        refs = references(graph)
        media_by_id: dict[str, Media] = {}
        for media_id in refs[RefKind.MEDIA] | set(saved.speech.values()):
            found = await uow.media.get(account_id, media_id) if is_id(media_id, "media") else None
            if found is not None:
                media_by_id[media_id] = found
        schedules: dict[str, Schedule | None] = {}
        for schedule_id in refs[RefKind.SCHEDULE]:
            stored = (
                await uow.schedules.get(account_id, schedule_id)
                if is_id(schedule_id, "sch")
                else None
            )
            schedules[schedule_id] = stored.schedule if stored is not None else None
        mailboxes: dict[str, VoicemailDestination] = {}
        for mailbox_id in refs[RefKind.MAILBOX]:
            box = await _target(uow, number, Destination(DestKind.VOICEMAIL, mailbox_id), None)
            if isinstance(box, VoicemailDestination):
                mailboxes[mailbox_id] = box
        return FlowRoute(
            number,
            account_id,
            saved.flow.id,
            saved.version,
            graph,
            account.language if account is not None else "en",
            account.timezone if account is not None else "UTC",
            MappingProxyType(dict(saved.speech)),
            MappingProxyType(media_by_id),
            MappingProxyType(schedules),
            MappingProxyType(mailboxes),
        )
    language = account.language if account is not None else "en"
    timezone = account.timezone if account is not None else "UTC"
    if dest.kind is DestKind.RING_GROUP and is_id(dest.id, "rg"):
        group = await uow.ring_groups.get(account_id, dest.id)
        return UNAVAILABLE if group is None else RingGroupRoute(number, group, language, timezone)
    if dest.kind is DestKind.QUEUE and is_id(dest.id, "q"):
        queue = await uow.queues.get(account_id, dest.id)
        return UNAVAILABLE if queue is None else QueueRoute(number, queue, language, timezone)
    if dest.kind is DestKind.USER and is_id(dest.id, "usr"):
        user = await uow.users.get(account_id, dest.id)
        return UNAVAILABLE if user is None else UserRoute(number, user)
    return UNAVAILABLE


def internal_line(account_id: str, user: User) -> Number:
    """What a call from a device to an extension is routed as: a line of the account with no
    phone number, leading to the user (its forwards resolve in that account)."""
    return Number(
        id="",
        account_id=account_id,
        e164="",
        dest_kind=DestKind.USER,
        dest_id=user.id,
        schedule_id=None,
        closed_dest_kind=None,
        closed_dest_id=None,
        created_at=user.created_at,
        updated_at=user.updated_at,
    )


def _route(destination: VoicemailDestination, full: bool) -> VoicemailRoute:
    number, mailbox, media = destination.number, destination.mailbox, destination.greeting
    if media is None:
        return VoicemailRoute(number, mailbox, full, None, extension=destination.extension)
    return VoicemailRoute(
        number, mailbox, full, media.telephony_key, media.original_key, media.duration_ms
    )


_WATCHED_REPOS = frozenset(
    {"numbers", "mailboxes", "media", "schedules", "flows", "accounts", "users"}
)
_WATCHED_REPOS |= {"ring_groups", "queues"}
_NEEDS_ACCOUNT = frozenset(
    {DestKind.FLOW, DestKind.RING_GROUP, DestKind.QUEUE, DestKind.VOICEMAIL_MAIN}
)
_WRITES = ("add", "update", "delete", "put", "set", "remove", "erase")


def invalidating(uow: UnitOfWorkFactory, cache: RouteCache) -> UnitOfWorkFactory:
    """``uow`` whose units clear ``cache`` once they commit after a write to numbers,
    mailboxes, media, schedules, flows or accounts (any call of those repositories'
    add/update/delete... methods)."""

    @asynccontextmanager
    async def unit() -> AsyncIterator[UnitOfWork]:
        async with uow() as inner:
            watched = _WatchedUnit(inner)
            yield cast(UnitOfWork, watched)
        if watched.wrote:
            cache.invalidate()

    return unit


class _WatchedUnit:
    def __init__(self, inner: UnitOfWork) -> None:
        self._inner = inner
        self.wrote = False

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name in _WATCHED_REPOS:
            return _WatchedRepo(value, self)
        return value


class _WatchedRepo:
    def __init__(self, repo: Any, unit: _WatchedUnit) -> None:
        self._repo = repo
        self._unit = unit

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._repo, name)
        if not name.startswith(_WRITES) or not callable(value):
            return value
        unit = self._unit

        def write(*args: Any, **kwargs: Any) -> Any:
            unit.wrote = True
            return value(*args, **kwargs)

        return write
