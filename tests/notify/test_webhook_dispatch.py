"""WebhookDispatcher against a real HTTP receiver on 127.0.0.1, on both database backends.

Time is a fake clock the tests move, so backoff is checked exactly and nothing sleeps for it.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from afterbeep.domain.clock import SystemClock
from afterbeep.domain.netpolicy import NetworkPolicy
from afterbeep.domain.webhooks import Delivery
from afterbeep.notify.webhooks import WebhookDispatcher, verify_signature
from afterbeep.services.webhooks import WebhookService
from tests.conftest import Backend, make_settings

SECRET = "test-webhook-secret-0123456789"
MAX_ATTEMPTS = 3
WAIT = 15.0  # upper bound on waiting for a background delivery; never a speed assertion


class FakeClock:
    def __init__(self) -> None:
        # Ahead of the wall clock: published rows (stamped with wall time) are due at once,
        # however slowly a loaded machine gets from here to the publish.
        self._now = datetime.now(UTC) + timedelta(seconds=120)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A minimal HTTP/1.1 server: records each request, answers `status` (or never, if hanging)."""

    def __init__(self, status: int = 200, delay: float = 0.0, hang: bool = False) -> None:
        self.status = status
        self.delay = delay
        self.hang = hang
        self.location: str | None = None
        self.requests: list[Received] = []
        self._arrived = asyncio.Event()
        self._release = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/afterbeep?token=abc"

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.requests) < count:
                self._arrived.clear()
                await self._arrived.wait()

    async def close(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *lines = head.split("\r\n")
            headers = {}
            for line in lines:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Received(request_line.split(" ")[1], headers, body))
            self._arrived.set()
            if self.hang:
                await self._release.wait()
                return
            if self.delay:
                await asyncio.sleep(self.delay)
            location = f"Location: {self.location}\r\n" if self.location else ""
            writer.write(
                f"HTTP/1.1 {self.status} X\r\n{location}Content-Length: 2\r\nConnection: close\r\n\r\nok".encode()
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def settings_of(backend: Backend, **overrides: Any) -> Any:
    return make_settings(
        backend, webhook_max_attempts=MAX_ATTEMPTS, webhook_timeout_seconds=5, **overrides
    )


@pytest.fixture
async def rt(backend: Backend, clock: FakeClock) -> AsyncIterator[Runtime]:
    runtime = Runtime(settings_of(backend), clock=clock)
    await runtime.start(workers=False)
    try:
        yield runtime
    finally:
        await runtime.stop()


async def subscribe(
    runtime: Runtime, url: str, events: tuple[str, ...] = ("message.created",)
) -> tuple[str, str]:
    issued = await runtime.accounts.create_account("Acme")
    hook = await WebhookService(runtime.uow, runtime.clock).create(
        issued.account_id, url, events, SECRET
    )
    return issued.account_id, hook.id


async def publish(
    runtime: Runtime, account_id: str, data: dict[str, Any], event: str = "message.created"
) -> None:
    async with runtime.uow() as uow:
        await uow.events.publish(account_id, event, data)


async def deliveries(runtime: Runtime) -> list[Delivery]:
    from afterbeep.db.repos.webhooks import _delivery

    async with runtime.db.begin() as conn:
        rows = (
            await conn.execute(select(t.webhook_deliveries).order_by(t.webhook_deliveries.c.id))
        ).all()
    return [_delivery(r) for r in rows]


def dispatcher(runtime: Runtime, clock: Any, **kwargs: Any) -> WebhookDispatcher:
    kwargs.setdefault("policy", runtime.settings.network_policy())
    return WebhookDispatcher(
        runtime.uow, clock, timeout=kwargs.pop("timeout", 5.0), max_attempts=MAX_ATTEMPTS, **kwargs
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_delivered_and_signed(rt: Runtime, clock: FakeClock, receiver: Receiver) -> None:
    assert rt.dispatcher is not None
    account_id, _ = await subscribe(rt, receiver.url)
    await publish(rt, account_id, {"message_id": "msg_1", "caller": "+12025550123"})
    # Not subscribed to: queues nothing.
    await publish(rt, account_id, {"message_id": "msg_1"}, event="message.deleted")

    assert await rt.dispatcher.run_once() == 1
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.path == "/hooks/afterbeep?token=abc"
    h = request.headers
    assert h["content-type"] == "application/json"
    assert int(h["afterbeep-timestamp"]) == int(clock.now().timestamp())
    assert h["afterbeep-signature"].startswith("v1=")
    assert verify_signature(
        SECRET, h["afterbeep-timestamp"], request.body, h["afterbeep-signature"], clock.now()
    )
    stamp, signature = h["afterbeep-timestamp"], h["afterbeep-signature"]
    assert not verify_signature(
        "another-secret-0123456789", stamp, request.body, signature, clock.now()
    )
    assert not verify_signature(SECRET, stamp, request.body + b" ", signature, clock.now())
    assert not verify_signature(
        SECRET, stamp, request.body, signature, clock.now() + timedelta(seconds=301)
    )

    envelope = json.loads(request.body)
    assert envelope["type"] == "message.created"
    assert envelope["data"] == {"message_id": "msg_1", "caller": "+12025550123"}
    [delivery] = await deliveries(rt)
    assert h["afterbeep-event"] == envelope["id"] == delivery.event_id
    assert h["afterbeep-event-type"] == "message.created"
    assert h["afterbeep-delivery"] == delivery.id
    assert delivery.status == "delivered" and delivery.attempts == 1
    assert delivery.last_status_code == 200 and delivery.last_error is None

    assert await rt.dispatcher.run_once() == 0
    assert len(receiver.requests) == 1


async def test_server_error_is_retried_with_backoff_then_failed(
    rt: Runtime, clock: FakeClock, receiver: Receiver
) -> None:
    assert rt.dispatcher is not None
    receiver.status = 500
    account_id, _ = await subscribe(rt, receiver.url)
    await publish(rt, account_id, {"message_id": "msg_1"})

    assert await rt.dispatcher.run_once() == 1
    [d] = await deliveries(rt)
    assert (d.status, d.attempts, d.last_status_code, d.last_error) == (
        "pending",
        1,
        500,
        "HTTP 500",
    )
    assert d.next_attempt_at == clock.now() + timedelta(seconds=5)

    assert await rt.dispatcher.run_once() == 0
    clock.advance(4.9)
    assert await rt.dispatcher.run_once() == 0
    clock.advance(0.1)
    assert await rt.dispatcher.run_once() == 1
    [d] = await deliveries(rt)
    assert (d.status, d.attempts) == ("pending", 2)
    assert d.next_attempt_at == clock.now() + timedelta(seconds=10)

    clock.advance(10)
    assert await rt.dispatcher.run_once() == 1
    [d] = await deliveries(rt)
    assert (d.status, d.attempts, d.last_status_code) == ("failed", MAX_ATTEMPTS, 500)

    clock.advance(3600)
    assert await rt.dispatcher.run_once() == 0
    assert len(receiver.requests) == MAX_ATTEMPTS
    assert {r.headers["afterbeep-delivery"] for r in receiver.requests} == {d.id}
    stamps = [int(r.headers["afterbeep-timestamp"]) for r in receiver.requests]
    assert stamps[1] - stamps[0] == 5 and stamps[2] - stamps[1] == 10


async def test_receiver_down_then_up(rt: Runtime, clock: FakeClock) -> None:
    assert rt.dispatcher is not None
    port = free_port()
    down = Receiver()
    down.port = port
    account_id, _ = await subscribe(rt, down.url)
    await publish(rt, account_id, {"message_id": "msg_1"})

    assert await rt.dispatcher.run_once() == 1
    [d] = await deliveries(rt)
    assert (d.status, d.attempts, d.last_status_code) == ("pending", 1, None)
    assert d.last_error and "ConnectError" in d.last_error

    up = Receiver()
    await up.start(port)
    try:
        clock.advance(5)
        assert await rt.dispatcher.run_once() == 1
    finally:
        await up.close()
    [d] = await deliveries(rt)
    assert (d.status, d.attempts, d.last_status_code, d.last_error) == ("delivered", 2, 200, None)
    assert len(up.requests) == 1


async def test_timeout_counts_as_failed_attempt(rt: Runtime, clock: FakeClock) -> None:
    hanging = Receiver(hang=True)
    await hanging.start()
    try:
        account_id, _ = await subscribe(rt, hanging.url)
        await publish(rt, account_id, {"message_id": "msg_1"})
        d1 = dispatcher(rt, clock, timeout=0.3)
        try:
            assert await d1.run_once() == 1
        finally:
            await d1.stop()
    finally:
        await hanging.close()
    [d] = await deliveries(rt)
    assert (d.status, d.attempts, d.last_status_code) == ("pending", 1, None)
    assert d.last_error == "timed out after 0.3 s"


async def test_crashed_claim_comes_back_after_its_lease(
    rt: Runtime, clock: FakeClock, receiver: Receiver
) -> None:
    account_id, _ = await subscribe(rt, receiver.url)
    await publish(rt, account_id, {"message_id": "msg_1"})
    lease_until = clock.now() + timedelta(seconds=60)
    async with rt.uow() as uow:
        [crashed] = await uow.webhooks.claim_due(clock.now(), lease_until, 10)

    survivor = dispatcher(rt, clock)
    try:
        assert await survivor.run_once() == 0
        clock.advance(60)
        assert await survivor.run_once() == 1
    finally:
        await survivor.stop()
    assert len(receiver.requests) == 1
    [d] = await deliveries(rt)
    assert (d.status, d.attempts) == ("delivered", 1)

    from afterbeep.domain.webhooks import after_attempt

    late = after_attempt(0, 500, None, clock.now(), MAX_ATTEMPTS)
    async with rt.uow() as uow:
        assert not await uow.webhooks.record_attempt(crashed, late, clock.now())
    [d] = await deliveries(rt)
    assert (d.status, d.attempts, d.last_status_code) == ("delivered", 1, 200)


async def test_survives_a_restart(backend: Backend, clock: FakeClock, receiver: Receiver) -> None:
    first = Runtime(settings_of(backend), clock=clock)
    await first.start(workers=False)
    try:
        account_id, _ = await subscribe(first, receiver.url)
        await publish(first, account_id, {"message_id": "msg_1"})
    finally:
        await first.stop()
    assert receiver.requests == []

    # with its workers the runtime listens for SIP: on a port of its own, not the default 5060
    second = Runtime(settings_of(backend, sip_addr="127.0.0.1:0"))
    await second.start(workers=True)
    try:
        await receiver.wait_for(1)
        assert second.dispatcher is not None
        await second.dispatcher.stop()  # lets the attempt be recorded
        [d] = await deliveries(second)
    finally:
        await second.stop()
    assert (d.status, d.attempts, d.last_status_code) == ("delivered", 1, 200)
    assert receiver.requests[0].headers["afterbeep-delivery"] == d.id


async def test_publish_wakes_the_running_dispatcher(rt: Runtime, receiver: Receiver) -> None:
    account_id, _ = await subscribe(rt, receiver.url)
    # Without the wake-up this dispatcher would not look again for an hour.
    worker = dispatcher(rt, SystemClock(), idle_seconds=3600)
    await worker.start()
    try:
        for n in (1, 2):
            async with asyncio.timeout(WAIT):
                await worker.idle()
            await publish(rt, account_id, {"message_id": f"msg_{n}"})
            await receiver.wait_for(n)
        async with asyncio.timeout(WAIT):
            await worker.idle()
    finally:
        await worker.stop()
    assert [json.loads(r.body)["data"]["message_id"] for r in receiver.requests] == [
        "msg_1",
        "msg_2",
    ]
    assert [d.status for d in await deliveries(rt)] == ["delivered", "delivered"]


async def test_stop_releases_in_flight_claims(rt: Runtime, clock: FakeClock) -> None:
    hanging = Receiver(hang=True)
    await hanging.start()
    try:
        account_id, _ = await subscribe(rt, hanging.url)
        await publish(rt, account_id, {"message_id": "msg_1"})
        worker = dispatcher(rt, clock, timeout=30.0)
        await worker.start()
        await hanging.wait_for(1)
        await worker.stop(grace=0.1)
    finally:
        await hanging.close()
    [d] = await deliveries(rt)
    assert (d.status, d.attempts) == ("pending", 0)
    async with rt.db.begin() as conn:
        lease = (await conn.execute(select(t.webhook_deliveries.c.claimed_until))).scalar_one()
    assert lease is None
    async with rt.uow() as uow:
        assert (
            len(await uow.webhooks.claim_due(clock.now(), clock.now() + timedelta(seconds=60), 10))
            == 1
        )


async def test_two_dispatchers_send_each_delivery_once(backend: Backend, clock: FakeClock) -> None:
    receiver = Receiver(delay=0.01)
    await receiver.start()
    node_a = Runtime(settings_of(backend), clock=clock)
    node_b = Runtime(settings_of(backend), clock=clock)
    await node_a.start(workers=False)
    await node_b.start(workers=False)
    try:
        account_id, _ = await subscribe(node_a, receiver.url)
        total = 40
        for n in range(total):
            await publish(node_a, account_id, {"message_id": f"msg_{n}"})
        d_a = dispatcher(node_a, clock, batch_size=4)
        d_b = dispatcher(node_b, clock, batch_size=4)
        try:
            done_a, done_b = await asyncio.gather(d_a.run_once(), d_b.run_once())
        finally:
            await d_a.stop()
            await d_b.stop()
        rows = await deliveries(node_a)
    finally:
        await node_b.stop()
        await node_a.stop()
        await receiver.close()
    assert done_a + done_b == total
    assert done_a > 0 and done_b > 0, (done_a, done_b)
    sent = [r.headers["afterbeep-delivery"] for r in receiver.requests]
    assert len(sent) == total and len(set(sent)) == total
    assert {d.id for d in rows} == set(sent)
    assert all(d.status == "delivered" and d.attempts == 1 for d in rows)


@pytest.mark.parametrize(
    "host", ["localhost", "127.1", "2130706433", "0x7f000001", "[::ffff:127.0.0.1]", "127.0.0.1"]
)
async def test_blocked_at_connection_time_without_details(
    rt: Runtime, clock: FakeClock, receiver: Receiver, host: str
) -> None:
    """A URL saved while it was allowed (or a name that resolves elsewhere now) is checked on
    the address actually connected to: nothing is sent, the delivery is `blocked` for good,
    and its row says nothing of what is there."""
    account_id, _ = await subscribe(rt, f"http://{host}:{receiver.port}/hook")
    await publish(rt, account_id, {"message_id": "msg_1"})
    closed = dispatcher(rt, clock, policy=NetworkPolicy())
    try:
        assert await closed.run_once() == 1
        [d] = await deliveries(rt)
        assert (d.status, d.attempts, d.last_status_code, d.last_error) == ("blocked", 1, None, None)
        clock.advance(3600)
        assert await closed.run_once() == 0
    finally:
        await closed.stop()
    assert receiver.requests == []


async def test_opened_range_is_delivered(rt: Runtime, clock: FakeClock, receiver: Receiver) -> None:
    account_id, _ = await subscribe(rt, f"http://127.1:{receiver.port}/hook")
    await publish(rt, account_id, {"message_id": "msg_1"})
    opened = dispatcher(rt, clock, policy=NetworkPolicy.parse("127.0.0.0/8"))
    try:
        assert await opened.run_once() == 1
    finally:
        await opened.stop()
    [d] = await deliveries(rt)
    assert (d.status, d.last_status_code) == ("delivered", 200)
    assert len(receiver.requests) == 1


async def test_redirect_is_not_followed(rt: Runtime, clock: FakeClock, receiver: Receiver) -> None:
    target = Receiver()
    await target.start()
    try:
        receiver.status = 307
        receiver.location = target.url
        account_id, _ = await subscribe(rt, receiver.url)
        await publish(rt, account_id, {"message_id": "msg_1"})
        assert rt.dispatcher is not None
        assert await rt.dispatcher.run_once() == 1
        [d] = await deliveries(rt)
        assert (d.status, d.last_status_code, d.last_error) == ("pending", 307, "HTTP 307")
        assert len(receiver.requests) == 1
        assert target.requests == []
    finally:
        await target.close()
