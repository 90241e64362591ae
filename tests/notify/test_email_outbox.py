"""The email outbox on both backends: retries while the SMTP server is down, permanent refusals,
`notification.failed`, cancellation, the running dispatcher's wake-up, and the delivery log API.

Time is a fake clock the tests move, so backoff is checked exactly and nothing sleeps for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from afterbeep.notify.email import EmailDispatcher, SmtpSender
from afterbeep.services.messages import MessageService
from afterbeep.telephony.interface import EndedBy
from tests.conftest import Backend
from tests.fixtures.smtp import Collector, free_port, smtp_server
from tests.services.test_deposits import (
    OWNER,
    PUBLIC_URL,
    SENDER,
    WAIT,
    FakeClock,
    Rig,
    open_rig,
    speech,
)

PROBLEM = "application/problem+json"


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
async def rig(backend: Backend, port: int) -> AsyncIterator[Rig]:
    """A runtime whose SMTP server (127.0.0.1:`port`) is not running yet."""
    async with open_rig(backend, f"smtp://127.0.0.1:{port}", FakeClock()) as r:
        yield r


async def deposit(rig: Rig, mailbox_id: str, seed: int = 1) -> str:
    message = await rig.finalize(rig.entry(mailbox_id, speech(3.0, seed), EndedBy.HANGUP))
    assert message is not None
    return message.id


async def log(rig: Rig, **params: Any) -> list[dict[str, Any]]:
    response = await rig.client.get("/v1/notifications", params=params, headers=rig.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_smtp_down_at_deposit_then_sent_when_back(rig: Rig, port: int) -> None:
    mailbox_id = await rig.mailbox()
    message_id = await deposit(rig, mailbox_id)
    # The message is kept at once, whatever the mail server does.
    assert [m.id for m in await rig.messages()] == [message_id]

    assert await rig.emails.run_once() == 1
    [entry] = await log(rig)
    assert (entry["status"], entry["attempts"], entry["message_id"], entry["to"]) == (
        "pending",
        1,
        message_id,
        OWNER,
    )
    assert "unreachable" in entry["last_error"]
    [row] = await rig.outbox()
    assert row.next_attempt_at == rig.clock.now() + timedelta(seconds=30)

    with smtp_server(port=port) as server:
        rig.clock.advance(29)
        assert await rig.emails.run_once() == 0
        rig.clock.advance(1)
        assert await rig.emails.run_once() == 1
        [received] = server.messages()
    assert received.rcpt_tos == [OWNER]
    assert received.message["X-Afterbeep-Message"] == message_id
    [entry] = await log(rig)
    assert (entry["status"], entry["attempts"], entry["last_error"]) == ("sent", 2, None)
    assert await rig.webhook_events() == []


async def test_permanent_refusal_fails_at_once_and_is_published(rig: Rig, port: int) -> None:
    await rig.webhook("notification.failed")
    mailbox_id = await rig.mailbox()
    message_id = await deposit(rig, mailbox_id)
    with smtp_server(port=port, collector=Collector(refuse_rcpt="550 5.1.1 no such user")):
        assert await rig.emails.run_once() == 1
        rig.clock.advance(24 * 3600)
        assert await rig.emails.run_once() == 0

    [entry] = await log(rig, status="failed")
    assert entry["attempts"] == 1 and "550" in entry["last_error"]
    assert await log(rig, status="pending") == []
    [(event, data)] = await rig.webhook_events()
    assert event == "notification.failed"
    assert data == entry
    assert data["message_id"] == message_id and data["kind"] == "new_message"


async def test_retries_end_in_failed_with_backoff(rig: Rig) -> None:
    await rig.webhook("notification.failed")
    mailbox_id = await rig.mailbox()
    await deposit(rig, mailbox_id)
    assert rig.rt.store is not None
    dispatcher = EmailDispatcher(
        rig.rt.uow,
        rig.rt.store,
        rig.clock,
        SmtpSender(rig.rt.settings.smtp(), timeout=5),
        from_addr=SENDER,
        public_url=PUBLIC_URL,
        secret_key=b"k" * 32,
        max_attempts=3,
        retry_base_seconds=10,
    )
    try:
        assert await dispatcher.run_once() == 1
        rig.clock.advance(10)
        assert await dispatcher.run_once() == 1
        [row] = await rig.outbox()
        assert (row.status, row.attempts) == ("pending", 2)
        assert row.next_attempt_at == rig.clock.now() + timedelta(seconds=20)
        assert await rig.webhook_events() == []
        rig.clock.advance(20)
        assert await dispatcher.run_once() == 1
    finally:
        await dispatcher.stop()
    [row] = await rig.outbox()
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.last_error is not None and "unreachable" in row.last_error
    [(event, data)] = await rig.webhook_events()
    assert event == "notification.failed" and data["id"] == row.id
    assert data["status"] == "failed" and data["attempts"] == 3


async def test_deleted_message_cancels_its_email(rig: Rig, port: int) -> None:
    await rig.webhook("notification.failed")
    mailbox_id = await rig.mailbox()
    message_id = await deposit(rig, mailbox_id)
    await MessageService(rig.rt.uow, rig.store, rig.clock).delete(rig.account_id, message_id)
    with smtp_server(port=port) as server:
        assert await rig.emails.run_once() == 1
        assert server.messages() == []
    [entry] = await log(rig)
    assert entry["status"] == "cancelled" and "deleted" in entry["last_error"]
    assert await rig.webhook_events() == []


async def test_running_dispatcher_is_woken_by_a_deposit(rig: Rig, port: int) -> None:
    mailbox_id = await rig.mailbox()
    with smtp_server(port=port) as server:
        await rig.emails.start()
        try:
            async with asyncio.timeout(WAIT):
                await rig.emails.idle()  # asleep for its idle time (30 s) unless woken
            message_id = await deposit(rig, mailbox_id)
            await server.collector.wait_for(1, WAIT)
        finally:
            await rig.emails.stop()
    assert server.messages()[0].message["X-Afterbeep-Message"] == message_id
    [entry] = await log(rig)
    assert entry["status"] == "sent"


async def test_delivery_log_api(rig: Rig, port: int) -> None:
    first_box = await rig.mailbox(name="Front desk")
    second_box = await rig.mailbox(name="Billing")
    await deposit(rig, first_box, seed=1)
    await deposit(rig, second_box, seed=2)
    await deposit(rig, second_box, seed=3)
    with smtp_server(port=port):
        assert await rig.emails.run_once() == 3

    everything = await log(rig)
    assert len(everything) == 3
    assert [e["id"] for e in everything] == sorted((e["id"] for e in everything), reverse=True)
    assert {e["status"] for e in everything} == {"sent"}
    assert set(everything[0]) == {
        "id",
        "kind",
        "mailbox_id",
        "message_id",
        "to",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "created_at",
        "updated_at",
    }
    assert [e["mailbox_id"] for e in await log(rig, mailbox_id=second_box)] == [second_box] * 2
    assert await log(rig, status="failed") == []

    page = (
        await rig.client.get("/v1/notifications", params={"limit": 2}, headers=rig.headers)
    ).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = await log(rig, limit=2, cursor=page["next_cursor"])
    assert [e["id"] for e in page["items"] + rest] == [e["id"] for e in everything]

    one = await rig.client.get(f"/v1/notifications/{everything[0]['id']}", headers=rig.headers)
    assert one.status_code == 200 and one.json() == everything[0]

    # Another account sees none of it.
    other = await rig.rt.accounts.create_account("Other Co")
    other_headers = {"Authorization": f"Bearer {other.secret}"}
    theirs = await rig.client.get("/v1/notifications", headers=other_headers)
    assert theirs.status_code == 200 and theirs.json()["items"] == []
    for url in (
        f"/v1/notifications/{everything[0]['id']}",
        f"/v1/notifications?mailbox_id={first_box}",
    ):
        response = await rig.client.get(url, headers=other_headers)
        assert response.status_code == 404, response.text
        assert response.headers["content-type"].startswith(PROBLEM)

    for params in (
        {"status": "bounced"},
        {"limit": 0},
        {"limit": 10_000},
        {"cursor": "not-a-cursor"},
        {"mailbox_id": "x" * 41},
    ):
        response = await rig.client.get("/v1/notifications", params=params, headers=rig.headers)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"].startswith(PROBLEM)
    missing = await rig.client.get("/v1/notifications/ntf_nope", headers=rig.headers)
    assert missing.status_code == 404
    assert (await rig.client.get("/v1/notifications")).status_code == 401


async def test_full_notice_is_in_the_log(rig: Rig, port: int) -> None:
    mailbox_id = await rig.mailbox(max_messages=1)
    await deposit(rig, mailbox_id)
    with smtp_server(port=port) as server:
        assert await rig.emails.run_once() == 2
        subjects = sorted(str(r.message["Subject"]) for r in server.messages())
    assert subjects == [
        "New voicemail from Ada Lovelace (+12025550123) (0:03)",
        "Voicemail box Front desk is full",
    ]
    kinds = sorted((e["kind"], e["message_id"] is None) for e in await log(rig))
    assert kinds == [("mailbox_full", True), ("new_message", False)]
