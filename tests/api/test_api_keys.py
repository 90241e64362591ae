"""/v1/api-keys on both backends: list without secrets, create (shown once), revoke at once,
never the account's last key."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from afterbeep.domain.accounts import MAX_ACTIVE_KEYS
from tests.conftest import TestAccount


def _problem(response: httpx.Response, status: int, error_id: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["error_id"] == error_id, response.json()


async def test_keys_are_listed_created_and_revoked(
    client: httpx.AsyncClient, account: TestAccount, other_account: TestAccount
) -> None:
    first = account.headers
    listed = await client.get("/v1/api-keys", headers=first)
    assert listed.status_code == 200, listed.text
    [only] = listed.json()["items"]
    assert set(only) == {"id", "prefix", "created_at", "last_used_at"}
    assert only["last_used_at"] is not None  # this very request
    assert account.key.startswith(only["prefix"]) and only["id"] in only["prefix"]

    created = await client.post("/v1/api-keys", headers=first)
    assert created.status_code == 201, created.text
    new = created.json()
    assert created.headers["location"] == f"/v1/api-keys/{new['id']}"
    assert new["api_key"].startswith(new["prefix"]) and new["api_key"] != account.key
    second = {"Authorization": f"Bearer {new['api_key']}"}
    listed = await client.get("/v1/api-keys", headers=first)
    assert [k["id"] for k in listed.json()["items"]] == [only["id"], new["id"]]
    assert listed.json()["items"][1]["last_used_at"] is None  # not used yet
    assert account.key not in listed.text and new["api_key"] not in listed.text

    # Another account's key is not ours to revoke, nor an id that is no key at all.
    theirs = (await client.get("/v1/api-keys", headers=other_account.headers)).json()["items"][0]
    _problem(await client.delete(f"/v1/api-keys/{theirs['id']}", headers=first), 404, "not-found")
    _problem(await client.delete("/v1/api-keys/nope", headers=first), 404, "not-found")
    assert (await client.get("/v1/api-keys", headers=other_account.headers)).status_code == 200

    # The first key revokes itself: refused from the next request on.
    assert (await client.delete(f"/v1/api-keys/{only['id']}", headers=first)).status_code == 204
    _problem(await client.get("/v1/api-keys", headers=first), 401, "unauthorized")
    _problem(await client.delete(f"/v1/api-keys/{only['id']}", headers=second), 404, "not-found")
    listed = await client.get("/v1/api-keys", headers=second)
    assert [k["id"] for k in listed.json()["items"]] == [new["id"]]

    # The last key stays.
    r = await client.delete(f"/v1/api-keys/{new['id']}", headers=second)
    _problem(r, 409, "last-api-key")
    assert (await client.get("/v1/api-keys", headers=second)).status_code == 200


async def test_a_new_key_is_never_kept_for_an_idempotent_replay(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    headers = {**account.headers, "Idempotency-Key": "new-key-1"}
    first = await client.post("/v1/api-keys", headers=headers)
    second = await client.post("/v1/api-keys", headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    async with runtime.db.begin() as conn:
        kept = (await conn.execute(select(t.idempotency_keys.c.body))).scalars().all()
    assert not any(first.json()["api_key"].encode() in (body or b"") for body in kept)


async def test_an_account_holds_a_bounded_number_of_keys(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    for _ in range(MAX_ACTIVE_KEYS - 1):
        await runtime.accounts.create_key(account.id)
    r = await client.post("/v1/api-keys", headers=account.headers)
    _problem(r, 409, "too-many-api-keys")
    listed = await client.get("/v1/api-keys", headers=account.headers)
    assert len(listed.json()["items"]) == MAX_ACTIVE_KEYS
