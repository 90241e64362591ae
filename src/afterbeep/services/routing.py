"""Where an inbound call goes: the dialled number's destination, resolved before answering.

Only voicemail destinations exist today. Schedules (`schedule_id` → `closed_dest_*`), flows,
queues and users plug in here: `route()` is the one seam, and the telephony layer only acts on
the `Route` it returns.

A number's destination (number, mailbox, greeting) is kept for a few seconds in a
`RouteCache`, so that an INVITE to a number called a moment ago can be answered without a
database round trip (`CallRouter.cached`). The cache is cleared whenever this process commits a
change to numbers, mailboxes or media (`invalidating` wraps the unit of work the services
write through), and its entries expire after ``ttl`` seconds, so the changes of another
instance are seen that late at most. An entry used in the second half of its life is read
again in the background (refresh-ahead), so a number that keeps being called never misses the
cache. Whether the mailbox is full is never cached: it is read for every call
(`CallRouter.complete`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

from afterbeep.domain import mailboxes as mailbox_rules
from afterbeep.domain.mailboxes import Mailbox, Usage
from afterbeep.domain.media import Media
from afterbeep.domain.numbers import DestKind, Number
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


@dataclass(frozen=True, slots=True)
class NoRoute:
    """The call cannot be placed: `code` is the SIP answer (404 unknown number, 480 unavailable)."""

    code: int
    reason: str


Route = VoicemailRoute | NoRoute


@dataclass(frozen=True, slots=True)
class VoicemailDestination:
    """What a number leads to, without the mailbox's usage (that changes with every message)."""

    number: Number
    mailbox: Mailbox
    greeting: Media | None


class RouteCache:
    """Voicemail destinations by dialled string, each for ``ttl`` seconds, at most ``size``.

    A look-up started before an `invalidate()` does not store what it read (`generation`).
    """

    def __init__(
        self, ttl: float = 2.0, size: int = 4096, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, VoicemailDestination]] = OrderedDict()
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, dialed: str) -> VoicemailDestination | None:
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

    def put(self, dialed: str, destination: VoicemailDestination, generation: int) -> None:
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
        self, uow: UnitOfWorkFactory, numbers: NumberService, cache: RouteCache | None = None
    ) -> None:
        self._uow = uow
        self._numbers = numbers
        self._cache = cache
        self._refreshing: dict[str, asyncio.Task[None]] = {}

    def cached(self, dialed: str) -> VoicemailDestination | None:
        """The destination of ``dialed`` if it was looked up a moment ago (no I/O); an entry
        past half its life is looked up again in the background."""
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

    async def route(self, dialed: str) -> Route:
        destination = self.cached(dialed)
        if destination is not None:
            return await self.complete(destination)
        generation = self._cache.generation if self._cache is not None else 0
        found = await self._look_up(dialed)
        if isinstance(found, NoRoute):
            return found
        destination, usage = found
        if self._cache is not None:
            self._cache.put(dialed, destination, generation)
        return _route(destination, mailbox_rules.is_full(destination.mailbox, usage))

    async def _look_up(self, dialed: str) -> tuple[VoicemailDestination, Usage] | NoRoute:
        number = await self._numbers.resolve(dialed)
        if number is None:
            return NoRoute(404, "Not Found")
        kind, dest_id = number.dest_kind, number.dest_id
        if kind is not DestKind.VOICEMAIL:
            return NoRoute(480, "Temporarily Unavailable")
        async with self._uow() as uow:
            mailbox = await find_mailbox(uow, number.account_id, dest_id)
            if mailbox is None:
                return NoRoute(480, "Temporarily Unavailable")
            usage = (await uow.messages.usage(number.account_id, [mailbox.id]))[mailbox.id]
            media = None
            if mailbox.greeting_media_id is not None:
                media = await uow.media.get(number.account_id, mailbox.greeting_media_id)
        return VoicemailDestination(number, mailbox, media), usage

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

    async def complete(self, destination: VoicemailDestination) -> VoicemailRoute:
        """The route to ``destination`` with the mailbox's usage read now."""
        mailbox = destination.mailbox
        async with self._uow() as uow:
            usage = (await uow.messages.usage(mailbox.account_id, [mailbox.id]))[mailbox.id]
        return _route(destination, mailbox_rules.is_full(mailbox, usage))


def _route(destination: VoicemailDestination, full: bool) -> VoicemailRoute:
    number, mailbox, media = destination.number, destination.mailbox, destination.greeting
    if media is None:
        return VoicemailRoute(number, mailbox, full, None)
    return VoicemailRoute(
        number, mailbox, full, media.telephony_key, media.original_key, media.duration_ms
    )


_WATCHED_REPOS = frozenset({"numbers", "mailboxes", "media"})
_WRITES = ("add", "update", "delete", "put", "set", "remove")


def invalidating(uow: UnitOfWorkFactory, cache: RouteCache) -> UnitOfWorkFactory:
    """``uow`` whose units clear ``cache`` once they commit after a write to numbers,
    mailboxes or media (any call of those repositories' add/update/delete... methods)."""

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
