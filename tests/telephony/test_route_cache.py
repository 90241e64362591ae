"""The route cache: what a number leads to is kept briefly and forgotten on every change."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime

import httpx

from afterbeep.app import Runtime
from afterbeep.domain.messages import RecordedCall
from afterbeep.domain.numbers import Number
from afterbeep.domain.schedules import ScheduleState
from afterbeep.services.numbers import NumberService
from afterbeep.services.routing import (
    CallRouter,
    NoRoute,
    NumberDestinations,
    RouteCache,
    VoicemailDestination,
    VoicemailRoute,
)
from tests.conftest import TestAccount
from tests.e2e.rig import speech

NUMBER = "+12025550142"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def destination(dest_id: str = "vm_1") -> NumberDestinations:
    number = Number.__new__(Number)  # only identity matters to the cache
    target = VoicemailDestination(number, dest_id, None)  # type: ignore[arg-type]
    return NumberDestinations(number, dict.fromkeys(ScheduleState, target))


def mailbox_id(destinations: NumberDestinations | None) -> str | None:
    target = None if destinations is None else destinations.in_hours
    return target.mailbox.id if isinstance(target, VoicemailDestination) else None


def test_entries_expire_after_the_ttl() -> None:
    clock = FakeClock()
    cache = RouteCache(ttl=2.0, clock=clock)
    dest = destination()
    cache.put("2025550142", dest, cache.generation)
    assert cache.get("2025550142") is dest
    clock.now += 1.9
    assert cache.get("2025550142") is dest
    clock.now += 0.2
    assert cache.get("2025550142") is None
    assert len(cache) == 0


def test_a_lookup_started_before_an_invalidation_is_not_kept() -> None:
    cache = RouteCache()
    started = cache.generation
    cache.invalidate()
    cache.put("2025550142", destination(), started)
    assert cache.get("2025550142") is None
    cache.put("2025550142", destination(), cache.generation)
    assert cache.get("2025550142") is not None
    cache.invalidate()
    assert cache.get("2025550142") is None


def test_the_cache_is_bounded_and_forgets_the_oldest() -> None:
    cache = RouteCache(size=3)
    for n in range(5):
        cache.put(str(n), destination(f"vm_{n}"), cache.generation)
    assert len(cache) == 3
    assert cache.get("0") is None and cache.get("1") is None
    assert cache.get("4") is not None


def test_an_entry_is_due_for_refresh_in_the_second_half_of_its_life() -> None:
    clock = FakeClock()
    cache = RouteCache(ttl=2.0, clock=clock)
    cache.put("1", destination(), cache.generation)
    assert not cache.refresh_due("1") and not cache.refresh_due("2")
    clock.now += 1.0
    assert cache.refresh_due("1")
    cache.forget("1")
    assert cache.get("1") is None and not cache.refresh_due("1")


def test_a_zero_ttl_keeps_nothing() -> None:
    cache = RouteCache(ttl=0)
    cache.put("1", destination(), cache.generation)
    assert cache.get("1") is None


async def _mailbox(client: httpx.AsyncClient, account: TestAccount, name: str) -> str:
    created = await client.post("/v1/mailboxes", json={"name": name}, headers=account.headers)
    assert created.status_code == 201, created.text
    mailbox_id: str = created.json()["id"]
    return mailbox_id


async def _number(client: httpx.AsyncClient, account: TestAccount, mailbox_id: str) -> str:
    created = await client.post(
        "/v1/numbers",
        json={"e164": NUMBER, "dest_kind": "voicemail", "dest_id": mailbox_id},
        headers=account.headers,
    )
    assert created.status_code == 201, created.text
    number_id: str = created.json()["id"]
    return number_id


async def _route(router: CallRouter) -> str | int:
    route = await router.route(NUMBER)
    if isinstance(route, NoRoute):
        return route.code
    assert isinstance(route, VoicemailRoute)
    return route.mailbox.id


async def test_changes_through_the_api_are_seen_by_the_next_call_at_once(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    router = runtime.call_router()
    first = await _mailbox(client, account, "First")
    second = await _mailbox(client, account, "Second")
    assert await _route(router) == 404  # unknown numbers are not cached
    number_id = await _number(client, account, first)
    assert await _route(router) == first
    cached = router.cached(NUMBER)
    assert mailbox_id(cached) == first

    moved = await client.patch(
        f"/v1/numbers/{number_id}", json={"dest_id": second}, headers=account.headers
    )
    assert moved.status_code == 200, moved.text
    assert router.cached(NUMBER) is None
    assert await _route(router) == second

    renamed = await client.patch(
        f"/v1/mailboxes/{second}", json={"max_message_seconds": 42}, headers=account.headers
    )
    assert renamed.status_code == 200, renamed.text
    assert router.cached(NUMBER) is None
    route = await router.route(NUMBER)
    assert isinstance(route, VoicemailRoute) and route.mailbox.max_message_seconds == 42

    deleted = await client.delete(f"/v1/numbers/{number_id}", headers=account.headers)
    assert deleted.status_code == 204, deleted.text
    assert router.cached(NUMBER) is None
    assert await _route(router) == 404


async def test_reads_and_other_writes_keep_the_cache(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    router = runtime.call_router()
    mailbox = await _mailbox(client, account, "Front")
    await _number(client, account, mailbox)
    assert await _route(router) == mailbox
    listed = await client.get("/v1/numbers", headers=account.headers)
    assert listed.status_code == 200
    hook = await client.post(
        "/v1/webhooks",
        json={"url": "https://hooks.example.com/x", "events": ["message.created"]},
        headers=account.headers,
    )
    assert router.cached(NUMBER) is not None, hook.text


async def test_whether_the_mailbox_is_full_is_read_for_every_call(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    runtime.routes.ttl = 3600.0  # storing the message (PostgreSQL + S3, loaded) may take > 2 s
    router = runtime.call_router()
    created_box = await client.post(
        "/v1/mailboxes", json={"name": "Tiny", "max_messages": 1}, headers=account.headers
    )
    assert created_box.status_code == 201, created_box.text
    mailbox = created_box.json()["id"]
    await _number(client, account, mailbox)
    route = await router.route(NUMBER)
    assert isinstance(route, VoicemailRoute) and not route.full
    assert runtime.deposits is not None
    stored = await runtime.deposits.finalize(
        RecordedCall(
            call_id="call_fill" + secrets.token_hex(4),
            account_id=account.id,
            mailbox_id=mailbox,
            caller="+12025550199",
            caller_name=None,
            callee=NUMBER,
            started_at=datetime.now(UTC).isoformat(),
            ended_by="hangup",
        ),
        speech(2.0),
        False,
    )
    assert stored is not None
    cached = router.cached(NUMBER)
    assert cached is not None  # a new message does not clear the cache...
    assert isinstance(cached.in_hours, VoicemailDestination)
    assert (await router.complete(cached.in_hours)).full  # ...but the usage is read again
    route = await router.route(NUMBER)
    assert isinstance(route, VoicemailRoute) and route.full


async def test_a_number_in_use_is_read_again_before_it_expires(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    """Refresh-ahead: the changes of another instance (here: a cache the API does not clear)
    are picked up in the background, and a number called all the time never misses."""
    clock = FakeClock()
    cache = RouteCache(ttl=2.0, clock=clock)
    router = CallRouter(runtime.lookups, NumberService(runtime.lookups, runtime.clock, "US"), cache)
    first = await _mailbox(client, account, "First")
    second = await _mailbox(client, account, "Second")
    number_id = await _number(client, account, first)
    assert await _route(router) == first

    clock.now += 0.5
    cached = router.cached(NUMBER)  # young: no refresh
    assert cached is not None and not router._refreshing
    moved = await client.patch(
        f"/v1/numbers/{number_id}", json={"dest_id": second}, headers=account.headers
    )
    assert moved.status_code == 200, moved.text
    clock.now += 0.7
    cached = router.cached(NUMBER)  # past half its life: served, and read again
    assert mailbox_id(cached) == first
    [refresh] = router._refreshing.values()
    await refresh
    clock.now += 1.5  # past the first entry's expiry
    cached = router.cached(NUMBER)
    assert mailbox_id(cached) == second
    # that entry is past half its life too: let its refresh end before the number goes, or
    # the refresh may read the deletion (a race with the DELETE, seen on PostgreSQL)
    await asyncio.gather(*router._refreshing.values())

    deleted = await client.delete(f"/v1/numbers/{number_id}", headers=account.headers)
    assert deleted.status_code == 204, deleted.text
    clock.now += 1.0
    assert router.cached(NUMBER) is not None
    await asyncio.gather(*router._refreshing.values())
    assert router.cached(NUMBER) is None
    assert await _route(router) == 404
