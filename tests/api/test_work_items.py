"""Work items over real HTTP on both backends: an agent test client on its server-sent-events
stream is offered an item (caller's number, signed recording link, transcript arriving later),
accepts, completes; operators list items with their offers; agent tokens, isolation, problems;
queues' work-item settings; a restart that re-offers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest
import uvicorn

from afterbeep.app import Runtime
from afterbeep.config import Settings
from afterbeep.domain.ids import new_id
from afterbeep.services.contact_center import (
    CallbackRequest,
    CallbackState,
    CallbackStatus,
    TranscriptLine,
    VoiceCallSummary,
)
from afterbeep.signing import verify_link
from tests.api.test_ring_groups import add_users
from tests.conftest import Backend, TestAccount, make_settings

A, B, NOT_AGENT = sorted([new_id("usr"), new_id("usr"), new_id("usr")])
CALLER = "+12125550123"
DIALED = "+12125550100"


class VoiceCalls:
    """An in-memory VoiceCallReader."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], VoiceCallSummary] = {}

    def add(self, account_id: str, message_id: str) -> str:
        vc = new_id("vc")
        self.calls[(account_id, vc)] = VoiceCallSummary(
            voice_call_id=vc,
            vendor_call_key=f"key-{vc[-6:]}",
            from_number=CALLER,
            to_number=DIALED,
            call_origin="Voicemail",
            recording_location=f"/v1/messages/{message_id}/audio",
            total_recording_duration=12.5,
            callback_number=None,
            transcript=(),
            call_center_id=new_id("cc"),
        )
        return vc

    async def summary(self, account_id: str, voice_call_id: str) -> VoiceCallSummary | None:
        return self.calls.get((account_id, voice_call_id))


@dataclass
class Callbacks:
    started: list[CallbackRequest] = field(default_factory=list)

    async def start(self, request: CallbackRequest) -> CallbackStatus:
        self.started.append(request)
        return CallbackStatus(new_id("cb"), CallbackState.CALLING_AGENT)

    async def status(self, account_id: str, callback_id: str) -> CallbackStatus | None:
        return None


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Served:
    runtime: Runtime
    url: str
    voice_calls: VoiceCalls


@contextlib.asynccontextmanager
async def serve(runtime: Runtime) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _Server(uvicorn.Config(runtime.app, log_config=None, access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110  (uvicorn offers no event)
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        runtime.work_items.close_feeds()
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def served(runtime: Runtime, account: TestAccount) -> AsyncIterator[Served]:
    voice_calls = VoiceCalls()
    runtime.voice_calls = voice_calls
    await add_users(runtime, account.id, A, B)
    await runtime.start_work_router()
    async with serve(runtime) as url:
        yield Served(runtime, url, voice_calls)


class AgentClient:
    """An agent's test client: its token, its API, and its event stream read in the background."""

    def __init__(self, http: httpx.AsyncClient, token: str) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}"}
        self.events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._open = asyncio.Event()

    async def listen(self) -> None:
        self._reader = asyncio.create_task(self._read())
        await asyncio.wait_for(self._open.wait(), 10)

    async def _read(self) -> None:
        async with self.http.stream("GET", "/v1/agents/me/events", headers=self.headers) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            name = ""
            async for line in r.aiter_lines():
                if line.startswith("retry:"):
                    self._open.set()
                elif line.startswith("event: "):
                    name = line[len("event: ") :]
                elif line.startswith("data: "):
                    await self.events.put((name, json.loads(line[len("data: ") :])))

    async def next(self, expected: str) -> dict[str, Any]:
        name, data = await asyncio.wait_for(self.events.get(), 10)
        assert name == expected, (name, data)
        return data

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return await self.http.request(method, path, headers=self.headers, **kw)


async def token_for(http: httpx.AsyncClient, account: TestAccount, user_id: str) -> str:
    r = await http.post(
        f"/v1/agents/{user_id}/tokens", json={"name": "desk"}, headers=account.headers
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"].startswith("atk_") and body["token"].startswith(body["id"] + ".")
    token: str = body["token"]
    return token


async def make_queue(
    http: httpx.AsyncClient, account: TestAccount, *members: str, **fields: Any
) -> str:
    r = await http.post(
        "/v1/queues",
        json={"name": "Reps", "members": [{"user_id": m} for m in members], **fields},
        headers=account.headers,
    )
    assert r.status_code == 201, r.text
    queue_id: str = r.json()["id"]
    return queue_id


async def route(http: httpx.AsyncClient, account: TestAccount, vc: str, queue_id: str) -> str:
    r = await http.post(
        "/v1/work-items", json={"voice_call_id": vc, "queue_id": queue_id}, headers=account.headers
    )
    assert r.status_code == 201, r.text
    item_id: str = r.json()["work_item_id"]
    return item_id


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


async def test_offered_accept_complete_on_the_event_stream(
    served: Served, account: TestAccount
) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        queue_id = await make_queue(http, account, A, B)
        agent = AgentClient(http, await token_for(http, account, A))
        me = await agent.call("PATCH", "/v1/agents/me", json={"status": "available"})
        assert me.status_code == 200, me.text
        assert me.json()["status"] == "available" and me.json()["queue_ids"] == [queue_id]
        operator_view = await http.get(f"/v1/agents/{A}", headers=account.headers)
        assert operator_view.json()["status"] == "available"  # the same status the live queues use
        await agent.listen()
        message_id = new_id("msg")
        vc = served.voice_calls.add(account.id, message_id)
        item_id = await route(http, account, vc, queue_id)

        offered = await agent.next("work_item.offered")
        assert offered["id"] == item_id and offered["state"] == "reserved"
        call = offered["voice_call"]
        assert call["from_number"] == CALLER and call["transcript"] == []
        link = httpx.URL(call["recording_url"])
        assert link.path == f"/v1/links/messages/{message_id}/audio"
        assert verify_link(
            "test-secret-" + "x" * 32,
            link.path,
            link.params["exp"],
            link.params["sig"],
            now_epoch=int(link.params["exp"]) - 60,
        )
        offers = (await agent.call("GET", "/v1/agents/me/offers")).json()["items"]
        assert [o["offer"]["id"] for o in offers] == [offered["offer"]["id"]]

        # the transcript arrives after the offer: the agent gets the item again
        key = (account.id, vc)
        line = TranscriptLine("p1", "END_USER", 0, 2000, "please call me back")
        served.voice_calls.calls[key] = replace(served.voice_calls.calls[key], transcript=(line,))
        await served.runtime.work_items.voice_call_changed(account.id, vc)
        updated = await agent.next("work_item.updated")
        assert updated["voice_call"]["transcript"][0]["content"] == "please call me back"

        accepted = await agent.call("POST", f"/v1/agents/me/offers/{offered['offer']['id']}/accept")
        assert accepted.status_code == 200 and accepted.json()["state"] == "assigned"
        assert (await agent.next("work_item.accepted"))["state"] == "assigned"
        again = await agent.call("POST", f"/v1/agents/me/offers/{offered['offer']['id']}/accept")
        assert problem(again, 409)["error_id"] == "offer-closed"

        wired = served.runtime.callbacks
        try:
            served.runtime.callbacks = None  # type: ignore[assignment]
            no_callbacks = await agent.call("POST", f"/v1/agents/me/work-items/{item_id}/callback")
            assert problem(no_callbacks, 503)["error_id"] == "unavailable"
            callbacks = Callbacks()
            served.runtime.callbacks = callbacks  # type: ignore[assignment]
            started = await agent.call("POST", f"/v1/agents/me/work-items/{item_id}/callback")
        finally:
            served.runtime.callbacks = wired
        assert started.status_code == 202 and started.json()["state"] == "calling_agent"
        assert callbacks.started == [
            CallbackRequest(account.id, A, CALLER, DIALED, vc, work_item_id=item_id)
        ]

        done = await agent.call(
            "POST", f"/v1/agents/me/work-items/{item_id}/complete", json={"notes": "called back"}
        )
        assert done.status_code == 200 and done.json()["state"] == "completed"
        assert (await agent.next("work_item.completed"))["notes"] == "called back"
        await agent.close()

        got = (await http.get(f"/v1/work-items/{item_id}", headers=account.headers)).json()
        assert got["state"] == "completed" and got["notes"] == "called back"
        assert [(o["agent_id"], o["status"]) for o in got["offers"]] == [(A, "accepted")]
        listed = await http.get(
            f"/v1/work-items?queue_id={queue_id}&state=completed", headers=account.headers
        )
        assert [i["id"] for i in listed.json()["items"]] == [item_id]
        none = await http.get("/v1/work-items?state=pending", headers=account.headers)
        assert none.json()["items"] == []
        # The console's list of the agent's completed items: A's only, in A's account only.
        work = served.runtime.work_items
        assert [i.id for i in await work.completed_by(account.id, A, 5)] == [item_id]
        assert await work.completed_by(account.id, B, 5) == []
        assert await work.completed_by(new_id("acc"), A, 5) == []


async def test_tokens_isolation_decline_and_problems(
    served: Served, runtime: Runtime, account: TestAccount, other_account: TestAccount
) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        queue_id = await make_queue(http, account, A, B)
        a = AgentClient(http, await token_for(http, account, A))
        b = AgentClient(http, await token_for(http, account, B))
        problem(await http.get("/v1/agents/me"), 401)
        problem(await http.get("/v1/agents/me", headers=account.headers), 401)  # an API key
        problem(await http.post("/v1/agents/me/offers/x/accept", headers=account.headers), 401)
        problem(await http.get("/v1/agents/me", headers={"Authorization": "Bearer atk_x.y"}), 401)
        problem(await http.post(f"/v1/agents/{A}/tokens", headers=other_account.headers), 404)
        problem(await http.post(f"/v1/agents/{NOT_AGENT}/tokens", headers=account.headers), 404)
        for agent in (a, b):
            assert (
                await agent.call("PATCH", "/v1/agents/me", json={"status": "available"})
            ).status_code == 200
        await a.listen()
        await b.listen()
        item_id = await route(
            http, account, served.voice_calls.add(account.id, new_id("msg")), queue_id
        )
        offered = await a.next("work_item.offered")
        offer_id = offered["offer"]["id"]
        problem(await b.call("POST", f"/v1/agents/me/offers/{offer_id}/accept"), 404)
        problem(await b.call("GET", f"/v1/agents/me/work-items/{item_id}"), 404)
        problem(await http.get(f"/v1/work-items/{item_id}", headers=other_account.headers), 404)
        declined = await a.call("POST", f"/v1/agents/me/offers/{offer_id}/decline")
        assert declined.status_code == 200 and declined.json()["state"] == "pending"
        assert (await a.next("work_item.declined"))["id"] == item_id
        assert (await b.next("work_item.offered"))["id"] == item_id  # the next agent
        problem(await a.call("POST", f"/v1/agents/me/work-items/{item_id}/complete"), 404)

        tokens = (await http.get(f"/v1/agents/{A}/tokens", headers=account.headers)).json()["items"]
        assert len(tokens) == 1 and tokens[0]["token"] is None  # the secret is shown once
        revoked = await http.delete(
            f"/v1/agents/{A}/tokens/{tokens[0]['id']}", headers=account.headers
        )
        assert revoked.status_code == 204
        problem(await a.call("GET", "/v1/agents/me"), 401)
        await a.close()
        await b.close()


async def test_queue_work_item_settings_and_agent_capacity(
    served: Served, account: TestAccount
) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        fallback = await make_queue(http, account, B)
        created = await http.post(
            "/v1/queues",
            json={
                "name": "Q",
                "members": [{"user_id": A}],
                "work_overflow_sec": 300,
                "work_fallback_queue_id": fallback,
                "work_ttl_sec": 3600,
            },
            headers=account.headers,
        )
        assert created.status_code == 201, created.text
        queue = created.json()
        assert (
            queue["work_offer_timeout_sec"],
            queue["work_overflow_sec"],
            queue["work_ttl_sec"],
        ) == (120, 300, 3600)
        assert queue["work_fallback_queue_id"] == fallback
        cleared = await http.patch(
            f"/v1/queues/{queue['id']}",
            json={"work_fallback_queue_id": None},
            headers=account.headers,
        )
        assert cleared.json()["work_fallback_queue_id"] is None
        for bad in (
            {"work_fallback_queue_id": new_id("q")},
            {"work_fallback_queue_id": queue["id"]},
            {"work_offer_timeout_sec": 0},
            {"work_ttl_sec": 5},
        ):
            r = await http.patch(f"/v1/queues/{queue['id']}", json=bad, headers=account.headers)
            problem(r, 422)
        agent = await http.patch(f"/v1/agents/{A}", json={"capacity": 6}, headers=account.headers)
        assert agent.status_code == 200 and agent.json()["capacity"] == 6
        problem(
            await http.patch(f"/v1/agents/{A}", json={"capacity": -1}, headers=account.headers), 422
        )
        problem(await http.patch(f"/v1/agents/{A}", json={}, headers=account.headers), 422)


async def test_restart_keeps_items_and_offers_them_again(
    backend: Backend, runtime: Runtime, account: TestAccount
) -> None:
    await add_users(runtime, account.id, A)
    calls = VoiceCalls()
    runtime.voice_calls = calls
    await runtime.start_work_router()
    svc = runtime.api_services()
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        queue_id = await make_queue(http, account, A)
        await http.patch(
            f"/v1/agents/{A}", json={"status": "available", "capacity": 3}, headers=account.headers
        )
        ringing = await route(http, account, calls.add(account.id, new_id("msg")), queue_id)
        waiting = await route(http, account, calls.add(account.id, new_id("msg")), queue_id)
    assert svc.work_items is not None
    # Another runtime on the same database, as after kill -9 (the first never stopped routing).
    settings: Settings = make_settings(backend)
    after = Runtime(settings)
    after.voice_calls = calls
    await after.start(workers=False)
    try:
        await after.start_work_router()
        transport = httpx.ASGITransport(app=after.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            first = (await http.get(f"/v1/work-items/{ringing}", headers=account.headers)).json()
            assert first["state"] == "reserved" and first["agent_id"] == A
            assert [o["status"] for o in first["offers"]] == ["rescinded", "pending"]
            second = (await http.get(f"/v1/work-items/{waiting}", headers=account.headers)).json()
            assert second["state"] == "pending"
    finally:
        await after.stop()
