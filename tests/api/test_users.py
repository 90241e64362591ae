"""/v1/users and /v1/devices on both backends: CRUD, validation, isolation, in-use, secrets."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from afterbeep.app import Runtime
from tests.conftest import TestAccount as Acct

PASSWORD = "correct-horse-battery-9"


def problem_of(response: httpx.Response, status: int, error_id: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["error_id"] == error_id, body
    return body


async def post(client: httpx.AsyncClient, account: Acct, path: str, **body: Any) -> dict[str, Any]:
    response = await client.post(path, json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_user_crud_defaults_and_forwards(client: httpx.AsyncClient, account: Acct) -> None:
    box = await post(client, account, "/v1/mailboxes", name="Alice")
    created = await client.post(
        "/v1/users",
        json={"username": "201", "display_name": "Alice", "voicemail_id": box["id"]},
        headers=account.headers,
    )
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["id"].startswith("usr_") and created.headers["location"] == f"/v1/users/{user['id']}"
    assert user["ring_timeout_sec"] == 25 and user["ring_strategy"] == "simultaneous"
    assert user["dnd"] is False and user["is_agent"] is False and user["status"] == "offline"
    assert user["fwd_always_kind"] is None and "account_id" not in user

    got = await client.get(f"/v1/users/{user['id']}", headers=account.headers)
    assert got.status_code == 200 and got.json() == user

    patched = await client.patch(
        f"/v1/users/{user['id']}",
        json={
            "dnd": 1,
            "ring_strategy": "sequential",
            "fwd_busy_kind": "voicemail",
            "fwd_busy_id": box["id"],
            "fwd_noanswer_kind": "queue",
            "fwd_noanswer_id": "q_01j00000000000000000000000",
            "fwd_always_kind": "hangup",
        },
        headers=account.headers,
    )
    assert patched.status_code == 200, patched.text
    changed = patched.json()
    assert changed["dnd"] is True and changed["ring_strategy"] == "sequential"
    assert (changed["fwd_busy_kind"], changed["fwd_busy_id"]) == ("voicemail", box["id"])
    assert changed["fwd_noanswer_kind"] == "queue" and changed["fwd_always_id"] is None
    assert changed["username"] == "201"

    listed = (await client.get("/v1/users", headers=account.headers)).json()
    assert [u["id"] for u in listed["items"]] == [user["id"]]

    deleted = await client.delete(f"/v1/users/{user['id']}", headers=account.headers)
    assert deleted.status_code == 204
    problem_of(await client.get(f"/v1/users/{user['id']}", headers=account.headers), 404, "not-found")


async def test_user_validation(client: httpx.AsyncClient, account: Acct) -> None:
    await post(client, account, "/v1/users", username="100")
    for body, field in (
        ({"username": "12a"}, "username"),
        ({"username": "101", "ring_timeout_sec": 2}, "ring_timeout_sec"),
        ({"username": "101", "fwd_always_kind": "voicemail", "fwd_always_id": "usr_x"}, "fwd_always_id"),
        ({"username": "101", "fwd_busy_kind": "hangup", "fwd_busy_id": "vm_01j00000000000000000000000"}, "fwd_busy_id"),
        ({"username": "101", "voicemail_id": "vm_01j00000000000000000000000"}, "voicemail_id"),
        ({"username": "101", "fwd_noanswer_kind": "flow", "fwd_noanswer_id": "flow_01j00000000000000000000000"}, "fwd_noanswer_id"),
    ):
        response = await client.post("/v1/users", json=body, headers=account.headers)
        assert response.status_code == 422, (body, response.text)
        assert field in response.text, response.text
    problem_of(
        await client.post("/v1/users", json={"username": "100"}, headers=account.headers),
        409,
        "username-taken",
    )


async def test_accounts_are_isolated(
    client: httpx.AsyncClient, account: Acct, other_account: Acct
) -> None:
    mine = await post(client, account, "/v1/users", username="300")
    theirs_box = await post(client, other_account, "/v1/mailboxes", name="Theirs")
    # the same extension in another account is another user
    await post(client, other_account, "/v1/users", username="300")
    for method, path in (
        ("GET", f"/v1/users/{mine['id']}"),
        ("PATCH", f"/v1/users/{mine['id']}"),
        ("DELETE", f"/v1/users/{mine['id']}"),
        ("GET", f"/v1/users/{mine['id']}/registrations"),
    ):
        response = await client.request(
            method, path, json={} if method == "PATCH" else None, headers=other_account.headers
        )
        problem_of(response, 404, "not-found")
    # a mailbox of another account cannot be a user's
    response = await client.patch(
        f"/v1/users/{mine['id']}", json={"voicemail_id": theirs_box["id"]}, headers=account.headers
    )
    problem_of(response, 422, "unknown-reference")
    # nor can another account's user own a device
    response = await client.post(
        "/v1/devices",
        json={"user_id": mine["id"], "auth_username": "their-phone", "password": PASSWORD},
        headers=other_account.headers,
    )
    problem_of(response, 422, "unknown-reference")
    device = await post(
        client, account, "/v1/devices", user_id=mine["id"], auth_username="my-phone", password=PASSWORD
    )
    problem_of(
        await client.get(f"/v1/devices/{device['id']}", headers=other_account.headers), 404, "not-found"
    )
    listed = (await client.get("/v1/devices", headers=other_account.headers)).json()
    assert listed["items"] == []


async def test_device_password_is_write_only_and_hashed(
    client: httpx.AsyncClient, account: Acct, other_account: Acct, runtime: Runtime
) -> None:
    user = await post(client, account, "/v1/users", username="400")
    created = await client.post(
        "/v1/devices",
        json={"user_id": user["id"], "auth_username": "desk-400", "password": PASSWORD, "transport": "tcp"},
        headers=account.headers,
    )
    assert created.status_code == 201, created.text
    device = created.json()
    assert device["id"].startswith("dev_") and device["realm"] == "afterbeep"
    assert device["transport"] == "tcp" and device["ring_order"] == 0
    md5 = hashlib.md5(f"desk-400:afterbeep:{PASSWORD}".encode()).hexdigest()
    sha = hashlib.sha256(f"desk-400:afterbeep:{PASSWORD}".encode()).hexdigest()
    texts = [
        created.text,
        (await client.get(f"/v1/devices/{device['id']}", headers=account.headers)).text,
        (await client.get("/v1/devices", headers=account.headers)).text,
        (await client.get("/openapi.json")).text,
    ]
    for text in texts:
        assert PASSWORD not in text and md5 not in text and sha not in text
        assert "ha1" not in text
    async with runtime.lookups() as uow:
        stored = await uow.devices.get(account.id, device["id"])
    assert stored is not None and (stored.ha1_md5, stored.ha1_sha256) == (md5, sha)
    assert PASSWORD not in repr(stored) and md5 not in repr(stored)

    # weak passwords are refused, saying what is required
    for weak in ("short", "aaaaaaaaaaaaaaaa", "desk-400-desk-400!"):
        body = problem_of(
            await client.patch(f"/v1/devices/{device['id']}", json={"password": weak}, headers=account.headers),
            422,
            "weak-password",
        )
        assert "password" in body["detail"]
    # a new name needs the password again (the hashes include it)
    problem_of(
        await client.patch(f"/v1/devices/{device['id']}", json={"auth_username": "desk-b"}, headers=account.headers),
        422,
        "invalid-input",
    )
    # auth usernames are unique across the service: a REGISTER names no account
    other_user = await post(client, other_account, "/v1/users", username="400")
    problem_of(
        await client.post(
            "/v1/devices",
            json={"user_id": other_user["id"], "auth_username": "desk-400", "password": PASSWORD},
            headers=other_account.headers,
        ),
        409,
        "auth-username-taken",
    )
    response = await client.get(f"/v1/users/{user['id']}/registrations", headers=account.headers)
    assert response.status_code == 200 and response.json() == {"items": []}
    deleted = await client.delete(f"/v1/devices/{device['id']}", headers=account.headers)
    assert deleted.status_code == 204


async def test_a_user_in_use_cannot_be_deleted(client: httpx.AsyncClient, account: Acct) -> None:
    target = await post(client, account, "/v1/users", username="500")
    forwarder = await post(
        client, account, "/v1/users", username="501", fwd_noanswer_kind="user", fwd_noanswer_id=target["id"]
    )
    body = problem_of(
        await client.delete(f"/v1/users/{target['id']}", headers=account.headers), 409, "user-in-use"
    )
    assert forwarder["id"] in body["detail"]
    await client.patch(f"/v1/users/{forwarder['id']}", json={"fwd_noanswer_kind": None}, headers=account.headers)
    await post(client, account, "/v1/devices", user_id=target["id"], auth_username="p500", password=PASSWORD)
    deleted = await client.delete(f"/v1/users/{target['id']}", headers=account.headers)
    assert deleted.status_code == 204, deleted.text
    listed = (await client.get("/v1/devices", headers=account.headers)).json()
    assert listed["items"] == []  # its devices went with it


async def test_a_mailbox_or_flow_a_user_uses_cannot_be_deleted(
    client: httpx.AsyncClient, account: Acct
) -> None:
    owned = await post(client, account, "/v1/mailboxes", name="Owned")
    forwarded = await post(client, account, "/v1/mailboxes", name="Forwarded to")
    user = await post(
        client, account, "/v1/users", username="600", voicemail_id=owned["id"],
        fwd_busy_kind="voicemail", fwd_busy_id=forwarded["id"],
    )  # fmt: skip
    for box in (owned, forwarded):
        body = problem_of(
            await client.delete(f"/v1/mailboxes/{box['id']}", headers=account.headers),
            409,
            "mailbox-in-use",
        )
        assert user["id"] in body["detail"]
    deleted = await client.delete(f"/v1/users/{user['id']}", headers=account.headers)
    assert deleted.status_code == 204
    for box in (owned, forwarded):
        gone = await client.delete(f"/v1/mailboxes/{box['id']}", headers=account.headers)
        assert gone.status_code == 204, gone.text


async def test_flows_use_users_of_the_account_and_hold_them(
    client: httpx.AsyncClient, account: Acct, other_account: Acct
) -> None:
    from tests.api.test_flows import _edge, _node

    user = await post(client, account, "/v1/users", username="700")
    theirs = await post(client, other_account, "/v1/users", username="700")

    def body(user_id: str) -> dict[str, Any]:
        return {
            "name": "Reception",
            "nodes": [_node("start", "entry", trigger="inbound"), _node("u", "user", userId=user_id)],
            "edges": [_edge("e1", "start", "default", "u")],
        }

    for wrong, message in (
        (theirs["id"], f"user {theirs['id']!r} was not found in this account"),
        ("vm_1", "is not a user id (usr_...)"),
    ):
        refused = await client.post("/v1/flows", json=body(wrong), headers=account.headers)
        [error] = problem_of(refused, 422, "invalid-flow")["errors"]
        assert (error["node_id"], error["field"], error["message"]) == ("u", "data.userId", message)
    saved = await client.post("/v1/flows", json=body(user["id"]), headers=account.headers)
    assert saved.status_code == 201, saved.text
    held = problem_of(
        await client.delete(f"/v1/users/{user['id']}", headers=account.headers), 409, "user-in-use"
    )
    assert saved.json()["id"] in held["detail"]
