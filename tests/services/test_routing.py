"""CallRouter on both backends with an injected clock: the schedule picks the destination per
call (never stale in the cache), disabled numbers and anonymous callers are refused, flows and
hangups are routes, and a plain voicemail number costs no more database statements than before."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, event, insert, update

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from afterbeep.domain.ids import new_id
from afterbeep.domain.users import Forward, FwdKind
from afterbeep.services.numbers import NumberService
from afterbeep.services.routing import (
    CallRouter,
    FlowRoute,
    HangupRoute,
    NoRoute,
    Route,
    VoicemailRoute,
)
from tests.api.test_numbers import US, make_mailbox
from tests.api.test_numbers_routing import by_the_hours, straight_to_mailbox
from tests.conftest import TestAccount as Acct

# Europe/Berlin is UTC+1 in December. 2026-12-07 is a Monday, 2026-12-25 a Friday.
IN_HOURS = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # 10:00 local
LAST_MINUTE = datetime(2026, 12, 7, 16, 59, tzinfo=UTC)  # 17:59 local
CLOSING = datetime(2026, 12, 7, 17, 0, tzinfo=UTC)  # 18:00 local
CHRISTMAS = datetime(2026, 12, 25, 9, 0, tzinfo=UTC)  # 10:00 local, a weekday and a holiday
WEEKDAYS_9_TO_6 = [
    {"kind": "weekly", "dow": dow, "start_time": "09:00", "end_time": "18:00"}
    for dow in range(1, 6)
]
CHRISTMAS_CLOSED = {"kind": "date", "start_date": "2026-12-25", "is_closed": True}


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at


def _router(runtime: Runtime, clock: FakeClock) -> CallRouter:
    numbers = NumberService(runtime.lookups, runtime.clock, "US")
    return CallRouter(runtime.lookups, numbers, runtime.routes, clock)


async def _post(client: httpx.AsyncClient, account: Acct, path: str, body: dict[str, Any]) -> str:
    response = await client.post(path, json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    created: str = response.json()["id"]
    return created


async def _office(client: httpx.AsyncClient, account: Acct) -> str:
    body = {
        "name": "Office",
        "timezone": "Europe/Berlin",
        "rules": [*WEEKDAYS_9_TO_6, CHRISTMAS_CLOSED],
    }
    return await _post(client, account, "/v1/schedules", body)


def _mailbox_of(route: Route) -> str | int:
    if isinstance(route, NoRoute):
        return route.code
    assert isinstance(route, VoicemailRoute), route
    return route.mailbox.id


async def test_the_schedule_picks_the_destination_at_the_call_instant(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    main, closed, holiday = [
        await make_mailbox(runtime, account.id, name) for name in ("Main", "Closed", "Holiday")
    ]
    schedule = await _office(client, account)
    number = await _post(
        client,
        account,
        "/v1/numbers",
        {
            "e164": US,
            "dest_kind": "voicemail",
            "dest_id": main,
            "schedule_id": schedule,
            "closed_dest_kind": "voicemail",
            "closed_dest_id": closed,
            "holiday_dest_kind": "voicemail",
            "holiday_dest_id": holiday,
        },
    )
    clock = FakeClock(IN_HOURS)
    router = _router(runtime, clock)
    assert _mailbox_of(await router.route(US)) == main
    assert router.cached(US) is not None
    for at, expected in (
        (LAST_MINUTE, main),
        (CLOSING, closed),
        (CHRISTMAS, holiday),
        (IN_HOURS, main),
    ):
        clock.at = at
        assert _mailbox_of(await router.route(US)) == expected, at  # from the cache
    assert router.cached(US) is not None

    # no holiday destination: a holiday goes to the closed one
    patched = await client.patch(
        f"/v1/numbers/{number}",
        json={"holiday_dest_kind": None, "holiday_dest_id": None},
        headers=account.headers,
    )
    assert patched.status_code == 200, patched.text
    assert router.cached(US) is None
    clock.at = CHRISTMAS
    assert _mailbox_of(await router.route(US)) == closed

    # and with no closed destination either, every state goes to the destination
    patched = await client.patch(
        f"/v1/numbers/{number}",
        json={"closed_dest_kind": None, "closed_dest_id": None},
        headers=account.headers,
    )
    assert patched.status_code == 200, patched.text
    for at in (IN_HOURS, CLOSING, CHRISTMAS):
        clock.at = at
        assert _mailbox_of(await router.route(US)) == main, at


async def test_a_schedule_change_is_seen_by_the_next_call(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    main, closed = [await make_mailbox(runtime, account.id, name) for name in ("Main", "Closed")]
    schedule = await _office(client, account)
    await _post(
        client,
        account,
        "/v1/numbers",
        {
            "e164": US,
            "dest_kind": "voicemail",
            "dest_id": main,
            "schedule_id": schedule,
            "closed_dest_kind": "voicemail",
            "closed_dest_id": closed,
        },
    )
    router = _router(runtime, FakeClock(IN_HOURS))
    assert _mailbox_of(await router.route(US)) == main
    monday_closed = {"kind": "date", "start_date": "2026-12-07", "is_closed": True}
    patched = await client.patch(
        f"/v1/schedules/{schedule}", json={"rules": [monday_closed]}, headers=account.headers
    )
    assert patched.status_code == 200, patched.text
    assert router.cached(US) is None
    assert _mailbox_of(await router.route(US)) == closed


async def test_a_missing_schedule_fails_open(
    client: httpx.AsyncClient,
    runtime: Runtime,
    account: Acct,
    caplog: pytest.LogCaptureFixture,
) -> None:
    main, closed = [await make_mailbox(runtime, account.id, name) for name in ("Main", "Closed")]
    schedule = await _office(client, account)
    await _post(
        client,
        account,
        "/v1/numbers",
        {
            "e164": US,
            "dest_kind": "voicemail",
            "dest_id": main,
            "schedule_id": schedule,
            "closed_dest_kind": "voicemail",
            "closed_dest_id": closed,
        },
    )
    async with runtime.db.begin() as conn:  # gone behind the API's back (another instance)
        await conn.execute(delete(t.schedules).where(t.schedules.c.id == schedule))
    router = _router(runtime, FakeClock(CLOSING))
    with caplog.at_level(logging.WARNING, logger="afterbeep.services.routing"):
        assert _mailbox_of(await router.route(US)) == main
    assert any(
        "failing open" in r.getMessage() and schedule in r.getMessage() for r in caplog.records
    )


async def test_disabled_numbers_and_anonymous_callers(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    main = await make_mailbox(runtime, account.id)
    number = await _post(
        client,
        account,
        "/v1/numbers",
        {"e164": US, "dest_kind": "voicemail", "dest_id": main, "allow_anonymous": False},
    )
    router = _router(runtime, FakeClock(IN_HOURS))
    assert _mailbox_of(await router.route(US)) == main
    assert _mailbox_of(await router.route(US, anonymous=True)) == 403
    assert _mailbox_of(await router.route(US)) == main  # cached: still decided per call

    allowed = await client.patch(
        f"/v1/numbers/{number}", json={"allow_anonymous": True}, headers=account.headers
    )
    assert allowed.status_code == 200, allowed.text
    assert _mailbox_of(await router.route(US, anonymous=True)) == main

    disabled = await client.patch(
        f"/v1/numbers/{number}", json={"status": "disabled"}, headers=account.headers
    )
    assert disabled.status_code == 200, disabled.text
    assert _mailbox_of(await router.route(US)) == 404
    assert _mailbox_of(await router.route(US)) == 404  # cached
    cached = router.cached(US)
    assert cached is not None and router.target(cached) == NoRoute(404, "Not Found")


async def test_flow_and_hangup_routes(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    main = await make_mailbox(runtime, account.id)
    schedule = await _office(client, account)
    flow = await _post(client, account, "/v1/flows", straight_to_mailbox(main))
    settings = await client.patch(
        "/v1/account", json={"timezone": "Europe/Berlin", "language": "de"}, headers=account.headers
    )
    assert settings.status_code == 200, settings.text
    number = await _post(
        client,
        account,
        "/v1/numbers",
        {
            "e164": US,
            "dest_kind": "flow",
            "dest_id": flow,
            "schedule_id": schedule,
            "closed_dest_kind": "hangup",
        },
    )
    clock = FakeClock(IN_HOURS)
    router = _router(runtime, clock)
    route = await router.route(US)
    assert isinstance(route, FlowRoute), route
    assert (route.account_id, route.flow_id, route.version) == (account.id, flow, 1)
    assert route.number.id == number
    assert (route.language, route.timezone) == ("de", "Europe/Berlin")
    entry = route.graph.entry
    assert entry is not None and entry.id == "start"
    assert [node.id for node in route.graph.nodes] == ["start", "vm"]

    clock.at = CLOSING
    hangup = await router.route(US)
    assert isinstance(hangup, HangupRoute) and hangup.number.id == number

    resaved = await client.put(
        f"/v1/flows/{flow}", json=by_the_hours(main, schedule), headers=account.headers
    )
    assert resaved.status_code == 200, resaved.text
    assert router.cached(US) is None
    clock.at = IN_HOURS
    route = await router.route(US)
    assert isinstance(route, FlowRoute) and route.version == 2
    assert [node.id for node in route.graph.nodes] == ["start", "hours", "vm"]
    # What the version refers to comes with it: the call reads none of it again.
    assert set(route.mailboxes) == {main} and route.mailboxes[main].mailbox.id == main
    assert set(route.schedules) == {schedule}
    office = route.schedules[schedule]
    assert office is not None and office.timezone == "Europe/Berlin"


@contextmanager
def statements(runtime: Runtime) -> Iterator[list[str]]:
    """The SQL statements run on either engine while the block runs."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engines = [runtime.db.engine.sync_engine]
    if runtime.db.direct_engine is not None:
        engines.append(runtime.db.direct_engine)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


async def test_a_plain_voicemail_number_costs_what_it_did(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    """Number, mailbox and usage when not cached; only the usage when cached (no account,
    schedule or flow read for a number that has neither). A mailbox with no greeting nor
    recorded name also reads its owner's extension (to read it out), with the number: cached."""
    main = await make_mailbox(runtime, account.id)
    await _post(
        client, account, "/v1/numbers", {"e164": US, "dest_kind": "voicemail", "dest_id": main}
    )
    await _post(client, account, "/v1/users", {"username": "201", "voicemail_id": main})
    router = _router(runtime, FakeClock(IN_HOURS))
    names = ("numbers", "mailboxes", "messages", "users")

    async def route() -> tuple[list[str], str | None]:
        with statements(runtime) as first:
            found = await router.route(US)
            assert _mailbox_of(found) == main
        with statements(runtime) as cached:
            assert await router.route(US) == found
        assert len([s for s in cached if "SELECT" in s]) == 1 and "messages" in cached[-1], cached
        tables = [next(name for name in names if name in s) for s in first if "SELECT" in s]
        assert isinstance(found, VoicemailRoute)
        return tables, found.extension

    assert await route() == (["numbers", "mailboxes", "users", "messages"], "201")
    # a user's forward to its own mailbox: its extension is known, not read
    destinations = router.cached(US)
    assert destinations is not None
    async with runtime.uow() as uow:
        owner = await uow.users.by_username(account.id, "201")
    assert owner is not None
    with statements(runtime) as forwarded:
        found = await router.forward(
            destinations.number, Forward(FwdKind.VOICEMAIL, main), owner
        )
    assert isinstance(found, VoicemailRoute) and found.extension == "201"
    assert not [s for s in forwarded if "SELECT" in s and "users" in s], forwarded

    # a recorded name: no extension to read
    media_id = new_id("media")
    async with runtime.db.begin() as conn:
        await conn.execute(
            insert(t.media).values(
                id=media_id, account_id=account.id, name="Name", format="WAV",
                content_type="audio/wav", duration_ms=800, sample_rate=8000, channels=1,
                size_bytes=12844, sha256="0" * 64, original_key="k", telephony_key="k",
                created_at=datetime.now(UTC),
            )
        )  # fmt: skip
        await conn.execute(
            update(t.mailboxes).where(t.mailboxes.c.id == main).values(name_media_id=media_id)
        )
    runtime.routes.invalidate()
    assert await route() == (["numbers", "mailboxes", "messages"], None)
