"""/v1/webhooks on both backends: subscriptions, validation, the delivery log, isolation."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import Table, func, select

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from tests.conftest import TestAccount as Acct
from tests.conftest import on_backends

URL = "https://hooks.example.com/afterbeep"


def problem_of(response: httpx.Response, status: int, error_id: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, object] = response.json()
    assert body["error_id"] == error_id, body
    return body


async def count(runtime: Runtime, table: Table) -> int:
    async with runtime.db.begin() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_create_list_get_delete(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    created = await client.post(
        "/v1/webhooks",
        json={"url": URL, "events": ["message.deleted", "message.created", "message.created"]},
        headers=account.headers,
    )
    assert created.status_code == 201, created.text
    hook = created.json()
    assert hook["id"].startswith("wh_")
    assert created.headers["location"] == f"/v1/webhooks/{hook['id']}"
    assert hook["url"] == URL
    assert hook["events"] == ["message.created", "message.deleted"]
    assert hook["secret"].startswith("whsec_") and len(hook["secret"]) > 30

    chosen = await client.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/x", "events": ["message.updated"], "secret": "s" * 24},
        headers=account.headers,
    )
    assert chosen.status_code == 201, chosen.text
    assert chosen.json()["secret"] == "s" * 24

    got = await client.get(f"/v1/webhooks/{hook['id']}", headers=account.headers)
    assert got.status_code == 200
    assert "secret" not in got.json()
    assert got.json() == {k: v for k, v in hook.items() if k != "secret"}

    listed = await client.get("/v1/webhooks?limit=1", headers=account.headers)
    page = listed.json()
    assert [w["id"] for w in page["items"]] == [chosen.json()["id"]]
    assert all("secret" not in w for w in page["items"])
    rest = (
        await client.get(
            f"/v1/webhooks?limit=1&cursor={page['next_cursor']}", headers=account.headers
        )
    ).json()
    assert [w["id"] for w in rest["items"]] == [hook["id"]] and rest["next_cursor"] is None

    assert (
        await client.delete(f"/v1/webhooks/{hook['id']}", headers=account.headers)
    ).status_code == 204
    problem_of(
        await client.get(f"/v1/webhooks/{hook['id']}", headers=account.headers), 404, "not-found"
    )
    problem_of(
        await client.delete(f"/v1/webhooks/{hook['id']}", headers=account.headers), 404, "not-found"
    )
    assert await count(runtime, t.webhooks) == 1


# Refused by the service's checks or the request's model before anything is stored: one of
# each on PostgreSQL too.
@on_backends(
    ("body", "error_id"),
    [
        ({"url": "ftp://example.com/x", "events": ["message.created"]}, "invalid-input"),
        ({"url": "not a url", "events": ["message.created"]}, "invalid-input"),
        ({"url": "https://", "events": ["message.created"]}, "invalid-input"),
        ({"url": "https://example.com/a\u0000b", "events": ["message.created"]}, "invalid-input"),
        ({"url": "http://example.com:99999/", "events": ["message.created"]}, "invalid-input"),
        ({"url": URL, "events": []}, "validation-failed"),
        ({"url": URL, "events": ["message.exploded"]}, "invalid-input"),
        ({"url": URL}, "validation-failed"),
        ({"url": URL, "events": ["message.created"], "secret": "short"}, "validation-failed"),
        (
            {"url": URL, "events": ["message.created"], "secret": "has spaces in it, sixteen+"},
            "invalid-input",
        ),
        ({"url": URL, "events": ["message.created"], "colour": "red"}, "validation-failed"),
        ({"url": URL, "events": "message.created"}, "validation-failed"),
    ],
    postgres=[0, 5],
)
async def test_bad_input_stores_nothing(
    client: httpx.AsyncClient,
    runtime: Runtime,
    account: Acct,
    body: dict[str, object],
    error_id: str,
) -> None:
    r = await client.post("/v1/webhooks", json=body, headers=account.headers)
    problem_of(r, 422, error_id)
    assert await count(runtime, t.webhooks) == 0


async def test_deliveries_log(client: httpx.AsyncClient, runtime: Runtime, account: Acct) -> None:
    hook = (
        await client.post(
            "/v1/webhooks",
            json={"url": URL, "events": ["message.created"]},
            headers=account.headers,
        )
    ).json()
    other_hook = (
        await client.post(
            "/v1/webhooks",
            json={"url": URL, "events": ["message.deleted"]},
            headers=account.headers,
        )
    ).json()
    async with runtime.uow() as uow:
        for n in range(3):
            await uow.events.publish(account.id, "message.created", {"message_id": f"msg_{n}"})
        await uow.events.publish(account.id, "message.updated", {"message_id": "msg_0"})

    first = await client.get(
        f"/v1/webhooks/{hook['id']}/deliveries?limit=2", headers=account.headers
    )
    assert first.status_code == 200, first.text
    page = first.json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = await client.get(
        f"/v1/webhooks/{hook['id']}/deliveries?limit=2&cursor={page['next_cursor']}",
        headers=account.headers,
    )
    items = page["items"] + rest.json()["items"]
    assert rest.json()["next_cursor"] is None
    assert len(items) == 3
    for item in items:
        assert item["id"].startswith("whd_") and item["event_id"].startswith("evt_")
        assert item["event"] == "message.created"
        assert item["status"] == "pending" and item["attempts"] == 0
        assert item["last_status_code"] is None and item["last_error"] is None
        assert item["next_attempt_at"].endswith("Z") and item["created_at"].endswith("Z")
        assert set(item) == {
            "id", "event_id", "event", "status", "attempts", "next_attempt_at",
            "last_status_code", "last_error", "created_at", "updated_at",
        }  # fmt: skip
    assert len({item["event_id"] for item in items}) == 3
    none = await client.get(f"/v1/webhooks/{other_hook['id']}/deliveries", headers=account.headers)
    assert none.json()["items"] == []

    async with runtime.db.begin() as conn:
        payloads = (await conn.execute(select(t.webhook_deliveries.c.payload))).scalars().all()
    envelopes = [json.loads(p) for p in payloads]
    assert sorted(e["data"]["message_id"] for e in envelopes) == ["msg_0", "msg_1", "msg_2"]
    for envelope in envelopes:
        assert set(envelope) == {"id", "type", "created_at", "data"}
        assert envelope["type"] == "message.created" and envelope["id"].startswith("evt_")

    assert (
        await client.delete(f"/v1/webhooks/{hook['id']}", headers=account.headers)
    ).status_code == 204
    assert await count(runtime, t.webhook_deliveries) == 0


async def test_publish_is_part_of_the_callers_transaction(runtime: Runtime, account: Acct) -> None:
    from afterbeep.services.webhooks import WebhookService

    await WebhookService(runtime.uow, runtime.clock).create(account.id, URL, ["message.created"])
    with pytest.raises(RuntimeError):
        async with runtime.uow() as uow:
            await uow.events.publish(account.id, "message.created", {"message_id": "msg_x"})
            raise RuntimeError("the change failed")
    assert await count(runtime, t.webhook_deliveries) == 0


async def test_isolation(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct, other_account: Acct
) -> None:
    hook = (
        await client.post(
            "/v1/webhooks",
            json={"url": URL, "events": ["message.created"]},
            headers=account.headers,
        )
    ).json()
    async with runtime.uow() as uow:
        await uow.events.publish(account.id, "message.created", {"message_id": "msg_1"})
        await uow.events.publish(other_account.id, "message.created", {"message_id": "msg_2"})
    assert await count(runtime, t.webhook_deliveries) == 1
    h = other_account.headers
    problem_of(await client.get(f"/v1/webhooks/{hook['id']}", headers=h), 404, "not-found")
    problem_of(
        await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=h), 404, "not-found"
    )
    problem_of(await client.delete(f"/v1/webhooks/{hook['id']}", headers=h), 404, "not-found")
    assert (await client.get("/v1/webhooks", headers=h)).json()["items"] == []
    for malformed in ("nonsense", "a%00b", "wh_" + "z" * 40):
        problem_of(await client.get(f"/v1/webhooks/{malformed}", headers=h), 404, "not-found")
        problem_of(
            await client.get(f"/v1/webhooks/{malformed}/deliveries", headers=h), 404, "not-found"
        )
    mine = await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=account.headers)
    assert len(mine.json()["items"]) == 1
    problem_of(await client.get("/v1/webhooks"), 401, "unauthorized")
