"""/v1/suppressions and /v1/consents on both backends: add, list, remove/revoke, isolation."""

from __future__ import annotations

import httpx

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from tests.conftest import TestAccount
from tests.ringless.support import NYC_RECIPIENT, assert_problem, count


async def test_suppressions(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, other_account: TestAccount
) -> None:
    h = account.headers
    r = await client.post(
        "/v1/suppressions", json={"e164": "(212) 555-0123", "reason": "opted out"}, headers=h
    )
    assert r.status_code == 201, r.text
    sup = r.json()
    assert sup["id"].startswith("sup_") and sup["e164"] == NYC_RECIPIENT
    assert sup["reason"] == "opted out"
    dup = await client.post("/v1/suppressions", json={"e164": NYC_RECIPIENT}, headers=h)
    assert_problem(dup, 409, "already-suppressed")
    assert_problem(
        await client.post("/v1/suppressions", json={"e164": "12"}, headers=h),
        422,
        "invalid-phone-number",
    )
    # Another account may suppress the same number on its own list.
    theirs = await client.post(
        "/v1/suppressions", json={"e164": NYC_RECIPIENT}, headers=other_account.headers
    )
    assert theirs.status_code == 201, theirs.text
    listed = await client.get("/v1/suppressions", headers=h)
    assert [s["id"] for s in listed.json()["items"]] == [sup["id"]]

    oh = other_account.headers
    assert_problem(await client.delete(f"/v1/suppressions/{sup['id']}", headers=oh), 404)
    assert (await client.delete(f"/v1/suppressions/{sup['id']}", headers=h)).status_code == 204
    assert_problem(await client.delete(f"/v1/suppressions/{sup['id']}", headers=h), 404)
    assert await count(runtime, t.suppressions) == 1


async def test_consents(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, other_account: TestAccount
) -> None:
    h = account.headers
    r = await client.post(
        "/v1/consents",
        json={"e164": NYC_RECIPIENT, "source": "web form", "captured_at": "2026-01-05T10:00:00-05:00"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    consent = r.json()
    assert consent["id"].startswith("cons_")
    assert consent["captured_at"] == "2026-01-05T15:00:00.000Z"
    assert consent["revoked_at"] is None
    other = await client.post(
        "/v1/consents",
        json={"e164": "+13105550123", "source": "paper", "captured_at": "2026-01-05T10:00:00Z"},
        headers=h,
    )
    assert other.status_code == 201
    for bad in (
        {"e164": NYC_RECIPIENT, "source": "x", "captured_at": "2026-01-05T10:00:00"},
        {"e164": NYC_RECIPIENT, "source": "x", "captured_at": "2999-01-05T10:00:00Z"},
        {"e164": "12", "source": "x", "captured_at": "2026-01-05T10:00:00Z"},
    ):
        assert_problem(await client.post("/v1/consents", json=bad, headers=h), 422)

    by_number = await client.get("/v1/consents?e164=%2B1%20212%20555%200123", headers=h)
    assert [c["id"] for c in by_number.json()["items"]] == [consent["id"]]
    assert len((await client.get("/v1/consents", headers=h)).json()["items"]) == 2

    oh = other_account.headers
    assert_problem(await client.post(f"/v1/consents/{consent['id']}/revoke", headers=oh), 404)
    assert (await client.get("/v1/consents", headers=oh)).json()["items"] == []
    revoked = await client.post(f"/v1/consents/{consent['id']}/revoke", headers=h)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    assert_problem(
        await client.post(f"/v1/consents/{consent['id']}/revoke", headers=h), 409, "consent-revoked"
    )
    assert await count(runtime, t.consents) == 2
