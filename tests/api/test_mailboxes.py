"""Mailboxes over HTTP on both backends: settings, validation, PINs, deletion, tenant isolation."""

from __future__ import annotations

import dataclasses
import io
import json
import wave
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import func, select

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from afterbeep.domain import mailboxes as rules
from afterbeep.domain.errors import InvalidInput, WeakPin
from afterbeep.services.mailboxes import MailboxService
from afterbeep.services.messages import MessageService

if TYPE_CHECKING:
    from tests.conftest import TestAccount

PROBLEM = "application/problem+json"
SEED = {
    "name": "Support after-hours",
    "skip_instructions": 0,
    "quota_mb": 200,
    "notify_email": "support@acme.example",
}


# -- helpers ----------------------------------------------------------------------


def wav_bytes(seconds: float = 0.5, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes((i * 37) % 256 for i in range(int(rate * seconds) * 2)))
    return buffer.getvalue()


def assert_problem(
    response: httpx.Response, status: int, error_id: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if error_id is not None:
        assert body["error_id"] == error_id, body
    return body


async def create(client: httpx.AsyncClient, account: TestAccount, **fields: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/mailboxes", json={"name": "Front desk", **fields}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def upload_media(client: httpx.AsyncClient, account: TestAccount) -> str:
    response = await client.post(
        "/v1/media",
        files={"file": ("hello.wav", wav_bytes(), "audio/wav")},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    media_id: str = response.json()["id"]
    return media_id


async def count_rows(runtime: Runtime, table: Any, account_id: str) -> int:
    async with runtime.db.engine.connect() as conn:
        query = select(func.count()).select_from(table).where(table.c.account_id == account_id)
        return int((await conn.execute(query)).scalar_one())


async def secrets_of(runtime: Runtime, account_id: str) -> dict[str, str]:
    async with runtime.db.engine.connect() as conn:
        query = select(t.secrets.c.ref, t.secrets.c.value).where(
            t.secrets.c.account_id == account_id
        )
        return {row.ref: row.value for row in (await conn.execute(query)).all()}


def mailbox_service(runtime: Runtime) -> MailboxService:
    assert runtime.store is not None
    return MailboxService(runtime.uow, runtime.store, runtime.clock)


# -- pure rules -------------------------------------------------------------------


@pytest.mark.parametrize(
    "pin", ["1111", "0000", "1234", "9876", "8901", "2109", "12", "12345678901", "12a4", "١٢٣٥", ""]
)
def test_check_pin_refuses_weak_and_malformed(pin: str) -> None:
    with pytest.raises(WeakPin):
        rules.check_pin(pin)


@pytest.mark.parametrize("pin", ["4827", "1235", "0007", "9999990", "1029384756"])
def test_check_pin_accepts_others(pin: str) -> None:
    rules.check_pin(pin)


def test_is_full_by_count_or_bytes_and_settings_are_checked() -> None:
    now = datetime.now(UTC)
    box = rules.Mailbox(
        id="vm_x",
        account_id="acc_x",
        name="n",
        pin_secret_ref=None,
        created_at=now,
        updated_at=now,
        **{**rules.DEFAULTS, "max_messages": 2, "quota_mb": 1},  # type: ignore[arg-type]
    )
    assert not rules.is_full(box, rules.Usage(messages=1, bytes=1024 * 1024 - 1))
    assert rules.is_full(box, rules.Usage(messages=2, bytes=0))
    assert rules.is_full(box, rules.Usage(messages=0, bytes=1024 * 1024))
    with pytest.raises(InvalidInput):
        rules.check_mailbox(dataclasses.replace(box, timezone="Mars/Olympus"))
    assert (
        rules.check_mailbox(dataclasses.replace(box, notify_email=" A@Example.COM ")).notify_email
        == "A@example.com"
    )


# -- create, read, list -----------------------------------------------------------


async def test_create_applies_defaults(client: httpx.AsyncClient, account: TestAccount) -> None:
    response = await client.post(
        "/v1/mailboxes", json={"name": "  Front desk "}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"].startswith("vm_")
    assert response.headers["location"] == f"/v1/mailboxes/{body['id']}"
    assert body["account_id"] == account.id
    assert body["name"] == "Front desk"
    for field, value in rules.DEFAULTS.items():
        assert body[field] == value, field
    assert body["pin_secret_ref"] is None
    assert body["usage"] == {"messages": 0, "bytes": 0, "full": False}
    assert body["created_at"] == body["updated_at"] and body["created_at"].endswith("Z")

    fetched = await client.get(f"/v1/mailboxes/{body['id']}", headers=account.headers)
    assert fetched.status_code == 200 and fetched.json() == body


async def test_create_with_the_seed_fields(client: httpx.AsyncClient, account: TestAccount) -> None:
    media_id = await upload_media(client, account)
    settings = {
        **SEED,
        "greeting_media_id": media_id,
        "language": "pt-BR",
        "timezone": "America/Sao_Paulo",
        "max_message_seconds": 300,
        "min_message_seconds": 3,
        "silence_seconds": 5,
        "max_messages": 50,
        "attach_audio": False,
    }
    body = await create(client, account, **settings)
    for field, value in settings.items():
        assert body[field] == value, field
    assert body["skip_instructions"] is False


async def test_list_pages_newest_first(
    client: httpx.AsyncClient, account: TestAccount, other_account: TestAccount
) -> None:
    made = [(await create(client, account, name=f"Box {i}"))["id"] for i in range(5)]
    await create(client, other_account, name="Not yours")
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/mailboxes", params=params, headers=account.headers)).json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))
    bad = await client.get("/v1/mailboxes", params={"cursor": "!!"}, headers=account.headers)
    assert_problem(bad, 422)
    assert_problem(
        await client.get("/v1/mailboxes", params={"limit": 0}, headers=account.headers), 422
    )


# -- update -----------------------------------------------------------------------


async def test_patch_changes_only_the_given_fields(
    client: httpx.AsyncClient, account: TestAccount
) -> None:
    box = await create(client, account, **SEED)
    url = f"/v1/mailboxes/{box['id']}"
    response = await client.patch(
        url, json={"quota_mb": 500, "notify_email": None}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["quota_mb"] == 500 and patched["notify_email"] is None
    unchanged = {
        k: v for k, v in box.items() if k not in ("quota_mb", "notify_email", "updated_at")
    }
    assert {k: patched[k] for k in unchanged} == unchanged
    assert patched["updated_at"] >= box["updated_at"]

    same = await client.patch(url, json={}, headers=account.headers)
    assert same.status_code == 200 and same.json() == patched
    renamed = await client.patch(
        url, json={"timezone": "Europe/Paris", "name": "Night"}, headers=account.headers
    )
    assert renamed.json()["timezone"] == "Europe/Paris" and renamed.json()["quota_mb"] == 500
    assert (await client.get(url, headers=account.headers)).json() == renamed.json()


BAD_PATCHES: list[tuple[dict[str, Any], str]] = [
    ({"colour": "red"}, "colour"),
    ({"pin_secret_ref": "kv:vm:x:pin"}, "pin_secret_ref"),
    ({"name": None}, "name"),
    ({"quota_mb": None}, "quota_mb"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"timezone": "../../etc/passwd"}, "timezone"),
    ({"notify_email": "not-an-address"}, "notify_email"),
    ({"min_message_seconds": 180}, "min_message_seconds"),
    ({"max_message_seconds": 2}, "max_message_seconds"),
    ({"silence_seconds": 0}, "silence_seconds"),
    ({"greeting_media_id": "media_01jg8asp59ps9rtt7azhrhvcre"}, "greeting_media_id"),
]

BAD_CREATES: list[tuple[dict[str, Any], str]] = [
    ({"no_such_field": 1}, "no_such_field"),
    ({"id": "vm_01jg8asp59ps9rtt7azhrhvcre"}, "id"),
    ({"pin_secret_ref": "kv:vm:7:pin"}, "pin_secret_ref"),
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "Front\x00desk"}, "name"),
    ({"greeting_media_id": "not-a-media-id"}, "greeting_media_id"),
    ({"timezone": "Not/AZone"}, "timezone"),
    ({"timezone": "localtime"}, "timezone"),
    ({"notify_email": "support@"}, "notify_email"),
    ({"notify_email": "two@@example.com"}, "notify_email"),
    ({"language": "english!"}, "language"),
    ({"quota_mb": 0}, "quota_mb"),
    ({"quota_mb": 100_001}, "quota_mb"),
    ({"max_message_seconds": 4}, "max_message_seconds"),
    ({"max_message_seconds": 3601}, "max_message_seconds"),
    ({"min_message_seconds": 10, "max_message_seconds": 10}, "min_message_seconds"),
    ({"silence_seconds": 61}, "silence_seconds"),
    ({"max_messages": 0}, "max_messages"),
    ({"skip_instructions": "perhaps"}, "skip_instructions"),
]


async def test_patch_refuses_bad_input_and_keeps_the_mailbox(
    client: httpx.AsyncClient, account: TestAccount
) -> None:
    box = await create(client, account)
    url = f"/v1/mailboxes/{box['id']}"
    for patch, field in BAD_PATCHES:
        body = assert_problem(await client.patch(url, json=patch, headers=account.headers), 422)
        assert any(field in error["field"] for error in body["errors"]), (patch, body)
    assert (await client.get(url, headers=account.headers)).json() == box


# -- validation on create ---------------------------------------------------------


async def test_create_refuses_bad_input_and_stores_nothing(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    for fields, field in BAD_CREATES:
        response = await client.post(
            "/v1/mailboxes", json={"name": "Box", **fields}, headers=account.headers
        )
        body = assert_problem(response, 422)
        assert any(field in error["field"] for error in body["errors"]), (fields, body)
    assert await count_rows(runtime, t.mailboxes, account.id) == 0


async def test_greeting_must_be_media_of_the_same_account(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, other_account: TestAccount
) -> None:
    theirs = await upload_media(client, other_account)
    response = await client.post(
        "/v1/mailboxes", json={"name": "Box", "greeting_media_id": theirs}, headers=account.headers
    )
    assert_problem(response, 422, "invalid-reference")
    assert await count_rows(runtime, t.mailboxes, account.id) == 0

    box = await create(client, account)
    url = f"/v1/mailboxes/{box['id']}"
    assert_problem(
        await client.patch(url, json={"greeting_media_id": theirs}, headers=account.headers), 422
    )
    assert (await client.get(url, headers=account.headers)).json()["greeting_media_id"] is None

    mine = await upload_media(client, account)
    patched = await client.patch(url, json={"greeting_media_id": mine}, headers=account.headers)
    assert patched.status_code == 200 and patched.json()["greeting_media_id"] == mine
    cleared = await client.patch(url, json={"greeting_media_id": None}, headers=account.headers)
    assert cleared.json()["greeting_media_id"] is None


# -- PIN --------------------------------------------------------------------------


async def test_pin_is_kept_only_as_an_argon2_hash(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, other_account: TestAccount
) -> None:
    box = await create(client, account)
    url = f"/v1/mailboxes/{box['id']}"
    response = await client.put(f"{url}/pin", json={"pin": "480273"}, headers=account.headers)
    assert response.status_code == 204 and response.content == b""

    fetched = (await client.get(url, headers=account.headers)).json()
    ref = f"kv:vm:{box['id']}:pin"
    assert fetched["pin_secret_ref"] == ref
    assert "480273" not in str(fetched)
    stored = await secrets_of(runtime, account.id)
    assert list(stored) == [ref]
    assert stored[ref].startswith("$argon2id$") and "480273" not in stored[ref]

    service = mailbox_service(runtime)
    assert await service.verify_pin(account.id, box["id"], "480273")
    assert not await service.verify_pin(account.id, box["id"], "480274")
    assert not await service.verify_pin(other_account.id, box["id"], "480273")
    assert not await service.verify_pin(account.id, box["id"], "480273 ")
    assert not await service.verify_pin(account.id, box["id"], "480273" * 1000)

    # A new PIN replaces the old one.
    await client.put(f"{url}/pin", json={"pin": "5190"}, headers=account.headers)
    assert await service.verify_pin(account.id, box["id"], "5190")
    assert not await service.verify_pin(account.id, box["id"], "480273")
    assert len(await secrets_of(runtime, account.id)) == 1


async def test_verify_pin_without_a_pin_or_mailbox_is_false(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    box = await create(client, account)
    service = mailbox_service(runtime)
    assert not await service.verify_pin(account.id, box["id"], "4827")
    assert not await service.verify_pin(account.id, "vm_01jg8asp59ps9rtt7azhrhvcre", "4827")


async def test_weak_pins_are_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    box = await create(client, account)
    url = f"/v1/mailboxes/{box['id']}"
    for pin in ["1111", "1234", "9876", "12", "12345678901", "12a4"]:
        response = await client.put(f"{url}/pin", json={"pin": pin}, headers=account.headers)
        body = assert_problem(response, 422, "weak-pin")
        assert pin not in body["detail"] + str(body["errors"])
    for payload in [{"pin": 4827}, {}, {"pin": "4827", "extra": 1}, {"pin": "1" * 65}, ["4827"]]:
        response = await client.put(f"{url}/pin", json=payload, headers=account.headers)
        assert_problem(response, 422, "validation-failed")
    assert await secrets_of(runtime, account.id) == {}
    assert (await client.get(url, headers=account.headers)).json()["pin_secret_ref"] is None


# -- delete -----------------------------------------------------------------------


async def test_delete_removes_messages_audio_and_pin(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, tmp_path: Path
) -> None:
    assert runtime.store is not None
    box = await create(client, account)
    keep = await create(client, account, name="Other box")
    await client.put(
        f"/v1/mailboxes/{box['id']}/pin", json={"pin": "4827"}, headers=account.headers
    )
    hook = await client.post(
        "/v1/webhooks",
        json={"url": "https://hooks.example/vm", "events": ["message.deleted"]},
        headers=account.headers,
    )
    assert hook.status_code == 201, hook.text
    wav = tmp_path / "m.wav"
    wav.write_bytes(wav_bytes())
    messages = MessageService(runtime.uow, runtime.store, runtime.clock)
    stored = [
        await messages.store_message(
            account_id=account.id,
            mailbox_id=mailbox_id,
            call_id=f"call-{i}",
            caller="+12025550123",
            caller_name=None,
            callee="+12025550100",
            wav_path=wav,
            duration_ms=500,
        )
        for i, mailbox_id in enumerate([box["id"], box["id"], keep["id"]])
    ]
    assert all([await runtime.store.exists(m.audio_key) for m in stored])

    url = f"/v1/mailboxes/{box['id']}"
    response = await client.delete(url, headers=account.headers)
    assert response.status_code == 204 and response.content == b""
    assert_problem(await client.get(url, headers=account.headers), 404)
    assert_problem(await client.get(f"{url}/messages", headers=account.headers), 404)
    for message in stored[:2]:
        assert_problem(await client.get(f"/v1/messages/{message.id}", headers=account.headers), 404)
        assert not await runtime.store.exists(message.audio_key)
    assert await secrets_of(runtime, account.id) == {}
    # The other mailbox and its message are untouched.
    assert await runtime.store.exists(stored[2].audio_key)
    assert (
        await client.get(f"/v1/messages/{stored[2].id}", headers=account.headers)
    ).status_code == 200
    assert_problem(await client.delete(url, headers=account.headers), 404)
    assert await deleted_events(runtime, account.id) == [m.id for m in stored[:2]]


async def deleted_events(runtime: Runtime, account_id: str) -> list[str]:
    d = t.webhook_deliveries.c
    async with runtime.db.engine.connect() as conn:
        query = select(d.payload).where(d.account_id == account_id, d.event == "message.deleted")
        payloads = (await conn.execute(query.order_by(d.id))).scalars().all()
    return [json.loads(payload)["data"]["id"] for payload in payloads]


async def test_delete_is_refused_while_a_number_routes_to_it(
    client: httpx.AsyncClient, account: TestAccount
) -> None:
    box = await create(client, account)
    number = await client.post(
        "/v1/numbers",
        json={"e164": "+12025550123", "dest_kind": "voicemail", "dest_id": box["id"]},
        headers=account.headers,
    )
    assert number.status_code == 201, number.text
    url = f"/v1/mailboxes/{box['id']}"
    assert_problem(await client.delete(url, headers=account.headers), 409, "mailbox-in-use")
    assert (await client.get(url, headers=account.headers)).status_code == 200
    await client.delete(f"/v1/numbers/{number.json()['id']}", headers=account.headers)
    assert (await client.delete(url, headers=account.headers)).status_code == 204


# -- tenant isolation -------------------------------------------------------------


async def test_another_account_gets_404_for_every_route(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, other_account: TestAccount
) -> None:
    box = await create(client, account)
    url = f"/v1/mailboxes/{box['id']}"
    them = other_account.headers
    assert_problem(await client.get(url, headers=them), 404)
    assert_problem(await client.patch(url, json={"name": "Mine now"}, headers=them), 404)
    assert_problem(await client.put(f"{url}/pin", json={"pin": "4827"}, headers=them), 404)
    assert_problem(await client.get(f"{url}/messages", headers=them), 404)
    assert_problem(await client.delete(url, headers=them), 404)
    assert (await client.get("/v1/mailboxes", headers=them)).json()["items"] == []

    for malformed in ("nope", "vm_%00", "msg_01jg8asp59ps9rtt7azhrhvcre", "x" * 300):
        assert_problem(await client.get(f"/v1/mailboxes/{malformed}", headers=them), 404)

    assert (await client.get(url, headers=account.headers)).json() == box
    assert await secrets_of(runtime, other_account.id) == {}
    assert await secrets_of(runtime, account.id) == {}
