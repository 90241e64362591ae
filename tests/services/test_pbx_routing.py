"""Numbers that lead to ring groups and queues, on both backends: the API accepts them (in the
account only), the router leads to them (and sees their changes), they cannot be deleted while
a number leads to them, and the calls they send on are routed in the number's account."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import httpx

from afterbeep.app import Runtime
from afterbeep.domain.flows import parse_graph
from afterbeep.domain.numbers import Destination, DestKind
from afterbeep.services.queues import QueueEngine
from afterbeep.services.routing import (
    FlowRoute,
    QueueRoute,
    RingGroupRoute,
    UserRoute,
    VoicemailRoute,
)
from afterbeep.telephony.fake import FakeCall
from afterbeep.telephony.flow_env import InboundFlowEnv
from afterbeep.telephony.interface import Call
from afterbeep.telephony.pbx_calls import MAX_HOPS, PbxCalls
from tests.api.test_numbers import US, make_mailbox
from tests.api.test_schedules import problem_of
from tests.conftest import TestAccount as Acct
from tests.services.test_routing import FakeClock, _post, _router
from tests.telephony.pbx_fakes import FakeDirectory, FakeRinger

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


async def test_numbers_lead_to_ring_groups_and_queues(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct, other_account: Acct
) -> None:
    group = await _post(client, account, "/v1/ring-groups", {"name": "Sales"})
    queue = await _post(client, account, "/v1/queues", {"name": "Support"})
    theirs = await _post(client, other_account, "/v1/queues", {"name": "Theirs"})
    for kind, dest_id in (("queue", theirs), ("ring_group", "rg_x"), ("queue", group)):
        r = await client.post(
            "/v1/numbers",
            json={"e164": US, "dest_kind": kind, "dest_id": dest_id},
            headers=account.headers,
        )
        problem_of(r, 422, "unknown-reference")
    number = await _post(
        client, account, "/v1/numbers", {"e164": US, "dest_kind": "ring_group", "dest_id": group}
    )
    router = _router(runtime, FakeClock(NOW))
    route = await router.route(US)
    assert isinstance(route, RingGroupRoute)
    assert (route.group.id, route.group.name, route.number.id) == (group, "Sales", number)
    assert (route.language, route.timezone) == ("en", "UTC")

    renamed = await client.patch(
        f"/v1/ring-groups/{group}", json={"name": "Sales EU"}, headers=account.headers
    )
    assert renamed.status_code == 200
    route = await router.route(US)
    assert isinstance(route, RingGroupRoute) and route.group.name == "Sales EU"  # not stale

    refused = await client.delete(f"/v1/ring-groups/{group}", headers=account.headers)
    assert number in problem_of(refused, 409, "ring-group-in-use")["detail"]

    moved = await client.patch(
        f"/v1/numbers/{number}",
        json={"dest_kind": "queue", "dest_id": queue},
        headers=account.headers,
    )
    assert moved.status_code == 200, moved.text
    route = await router.route(US)
    assert isinstance(route, QueueRoute) and route.queue.id == queue
    assert (
        await client.delete(f"/v1/ring-groups/{group}", headers=account.headers)
    ).status_code == 204
    problem_of(
        await client.delete(f"/v1/queues/{queue}", headers=account.headers), 409, "queue-in-use"
    )


class Sent:
    def __init__(self) -> None:
        self.deposits: list[str] = []
        self.flows: list[str] = []
        self.users: list[str] = []

    async def deposit(self, call: Call, route: VoicemailRoute) -> None:
        self.deposits.append(route.mailbox.id)

    async def flow(self, call: Call, route: FlowRoute) -> None:
        self.flows.append(route.flow_id)

    async def user(self, call: Call, route: UserRoute, hops: int) -> None:
        self.users.append(route.user.id)


async def _no_media(account_id: str, media_id: str) -> Any:
    return None


async def test_exits_are_routed_in_the_numbers_account(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    vm = await make_mailbox(runtime, account.id)
    group = await _post(
        client,
        account,
        "/v1/ring-groups",
        {"name": "Sales", "ring_timeout_sec": 5, "exit_dest_kind": "voicemail", "exit_dest_id": vm},
    )
    await _post(
        client, account, "/v1/numbers", {"e164": US, "dest_kind": "ring_group", "dest_id": group}
    )
    clock = FakeClock(NOW)
    router = _router(runtime, clock)
    route = await router.route(US)
    assert isinstance(route, RingGroupRoute)
    sent = Sent()
    ringer = FakeRinger()
    pbx = PbxCalls(
        router,
        ringer,
        FakeDirectory(),
        cast(QueueEngine, None),
        clock,
        _no_media,
        sent.deposit,
        sent.flow,
        sent.user,
    )
    call = FakeCall()
    await pbx.run(call, route)  # nobody registered: straight to the exit mailbox
    assert sent.deposits == [vm] and ringer.rings == []

    await pbx.send(call, route.number, None, 0)
    assert call.hung_up_by_us
    loop = FakeCall()
    await pbx.send(loop, route.number, Destination(DestKind.RING_GROUP, group), MAX_HOPS)
    assert loop.hung_up_by_us and sent.deposits == [vm]

    user = await _post(client, account, "/v1/users", {"username": "201", "display_name": "Ann"})
    await pbx.send(FakeCall(), route.number, Destination(DestKind.USER, user), 0)
    assert sent.users == [user]  # a ring group's exit can ring a user


async def test_a_closed_ring_group_follows_its_schedule(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    vm = await make_mailbox(runtime, account.id)
    schedule = await _post(
        client,
        account,
        "/v1/schedules",
        {
            "name": "Never",
            "rules": [{"kind": "date", "start_date": "2026-12-07", "is_closed": True}],
        },
    )
    group = await _post(
        client,
        account,
        "/v1/ring-groups",
        {
            "name": "Sales",
            "schedule_id": schedule,
            "closed_dest_kind": "voicemail",
            "closed_dest_id": vm,
        },
    )
    await _post(
        client, account, "/v1/numbers", {"e164": US, "dest_kind": "ring_group", "dest_id": group}
    )
    clock = FakeClock(NOW)
    router = _router(runtime, clock)
    route = await router.route(US)
    assert isinstance(route, RingGroupRoute)
    sent = Sent()
    directory = FakeDirectory()
    pbx = PbxCalls(
        router,
        FakeRinger(),
        directory,
        cast(QueueEngine, None),
        clock,
        _no_media,
        sent.deposit,
        sent.flow,
        sent.user,
    )
    await pbx.run(FakeCall(), route)
    assert sent.deposits == [vm]


async def test_a_flow_node_sends_the_call_through_the_pbx_or_says_it_cannot(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    vm = await make_mailbox(runtime, account.id)
    group = await _post(
        client,
        account,
        "/v1/ring-groups",
        {"name": "Sales", "exit_dest_kind": "voicemail", "exit_dest_id": vm},
    )
    await _post(client, account, "/v1/numbers", {"e164": US, "dest_kind": "hangup"})
    clock = FakeClock(NOW)
    router = _router(runtime, clock)
    number = await NumberLookup(router).number()
    flow_route = FlowRoute(number, account.id, "flow_x", 1, parse_graph([], []), "en", "UTC")
    sent = Sent()
    pbx = PbxCalls(
        router, FakeRinger(), FakeDirectory(), cast(QueueEngine, None), clock, _no_media,
        sent.deposit, sent.flow, sent.user,
    )  # fmt: skip
    wired = InboundFlowEnv(flow_route, router, _no_media_of, sent.deposit, clock, send=pbx.send)
    await wired.send(FakeCall(), Destination(DestKind.RING_GROUP, group))
    assert sent.deposits == [vm]
    unwired = InboundFlowEnv(flow_route, router, _no_media_of, sent.deposit, clock)
    call = FakeCall()
    await unwired.send(call, Destination(DestKind.RING_GROUP, group))
    assert call.answered and len(call.played) == 1  # "we cannot take your call right now"
    assert sent.deposits == [vm]


async def _no_media_of(media: Any) -> Any:
    return None


class NumberLookup:
    def __init__(self, router: Any) -> None:
        self._router = router

    async def number(self) -> Any:
        route = await self._router.route(US)
        return route.number
