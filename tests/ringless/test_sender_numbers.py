"""Caller ids are the operator's word: a tenant cannot mark a number verified, the operator
verifies it for one account only (admin API, on both backends)."""

from __future__ import annotations

import httpx

from afterbeep.app import Runtime
from tests.conftest import ADMIN_HEADERS, TestAccount
from tests.ringless.support import (
    NYC_RECIPIENT,
    NYC_SENDER,
    assert_problem,
    audio,
    make_use_case,
    setup_body,
    verify_sender,
)

OTHER_KEY = {"Authorization": "Bearer " + "x" * 40}


async def _setup(client: httpx.AsyncClient, account: TestAccount) -> str:
    body = setup_body(numbers=[{"e164": NYC_SENDER}])
    r = await client.post("/v1/telephony-setups", json=body, headers=account.headers)
    assert r.status_code == 201, r.text
    assert r.json()["numbers"] == [{"e164": NYC_SENDER, "verified": False}]
    return str(r.json()["id"])


async def _numbers(client: httpx.AsyncClient, account: TestAccount, setup_id: str) -> object:
    r = await client.get(f"/v1/telephony-setups/{setup_id}", headers=account.headers)
    return r.json()["numbers"]


async def _send(client: httpx.AsyncClient, account: TestAccount, use_case: str) -> httpx.Response:
    return await client.post(
        "/v1/voicemails",
        files={"audio": ("reminder.mp3", audio(12), "audio/mpeg")},
        data={"to": NYC_RECIPIENT, "use_case_id": use_case},
        headers=account.headers,
    )


async def test_a_tenant_cannot_mark_a_number_verified(
    client: httpx.AsyncClient, account: TestAccount
) -> None:
    claimed = setup_body(numbers=[{"e164": NYC_SENDER, "verified": True}])
    r = await client.post("/v1/telephony-setups", json=claimed, headers=account.headers)
    assert_problem(r, 422, "validation-failed")
    assert any("verified" in e["field"] for e in r.json()["errors"]), r.json()

    setup_id = await _setup(client, account)
    r = await client.patch(
        f"/v1/telephony-setups/{setup_id}",
        json={"numbers": [{"e164": NYC_SENDER, "verified": True}]},
        headers=account.headers,
    )
    assert_problem(r, 422, "validation-failed")
    assert await _numbers(client, account, setup_id) == [{"e164": NYC_SENDER, "verified": False}]
    # Nothing to send from until the operator says so.
    fixed = {"channel": "ringless_voicemail", "name": "R", "setup_id": setup_id,
             "sender_selection": "fixed", "sender_number": NYC_SENDER}
    r = await client.post("/v1/use-cases", json=fixed, headers=account.headers)
    assert_problem(r, 422, "no-verified-sender")
    use_case = await make_use_case(client, account, setup_id, sender_selection="round_robin")
    assert_problem(await _send(client, account, use_case), 422, "no-verified-sender")


async def test_the_operator_verifies_a_number_for_one_account_only(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, other_account: TestAccount
) -> None:
    mine = await _setup(client, account)
    theirs = await _setup(client, other_account)
    use_case = await make_use_case(client, account, mine, sender_selection="round_robin")

    verified = await verify_sender(client, account.id, "(212) 555-0100")
    assert verified.status_code == 200, verified.text
    assert verified.json() == {"account_id": account.id, "e164": NYC_SENDER, "verified": True}
    assert (await verify_sender(client, account.id, NYC_SENDER)).status_code == 200  # again: no-op
    assert await _numbers(client, account, mine) == [{"e164": NYC_SENDER, "verified": True}]
    sent = await _send(client, account, use_case)
    assert sent.status_code == 202, sent.text
    assert sent.json()["from"] == NYC_SENDER

    # Another account listing the same number gets nothing from it.
    assert_problem(await verify_sender(client, other_account.id, NYC_SENDER), 409, "number-taken")
    assert await _numbers(client, other_account, theirs) == [{"e164": NYC_SENDER, "verified": False}]
    fixed = {"channel": "ringless_voicemail", "name": "R", "setup_id": theirs,
             "sender_selection": "fixed", "sender_number": NYC_SENDER}
    r = await client.post("/v1/use-cases", json=fixed, headers=other_account.headers)
    assert_problem(r, 422, "no-verified-sender")

    # A number listed after its verification is verified in the new setup too.
    r = await client.post(
        "/v1/telephony-setups", json=setup_body(name="Second", numbers=[{"e164": NYC_SENDER}]),
        headers=account.headers,
    )
    assert r.json()["numbers"] == [{"e164": NYC_SENDER, "verified": True}]

    unverified = await client.post(
        "/v1/admin/numbers/unverify",
        json={"account_id": account.id, "number": NYC_SENDER},
        headers=ADMIN_HEADERS,
    )
    assert unverified.status_code == 200, unverified.text
    assert await _numbers(client, account, mine) == [{"e164": NYC_SENDER, "verified": False}]
    assert_problem(await _send(client, account, use_case), 422, "no-verified-sender")
    # Now free for the other account.
    assert (await verify_sender(client, other_account.id, NYC_SENDER)).status_code == 200
    assert await _numbers(client, other_account, theirs) == [{"e164": NYC_SENDER, "verified": True}]


async def test_the_admin_api_takes_only_the_admin_key(
    client: httpx.AsyncClient, account: TestAccount
) -> None:
    body = {"account_id": account.id, "number": NYC_SENDER}
    url = "/v1/admin/numbers/verify"
    assert_problem(await client.post(url, json=body), 401, "unauthorized")
    assert_problem(await client.post(url, json=body, headers=account.headers), 403, "forbidden")
    assert_problem(await client.post(url, json=body, headers=OTHER_KEY), 403, "forbidden")
    unknown = {"account_id": "acc_01jg8asp59ps9rtt7azhrhvcre", "number": NYC_SENDER}
    assert_problem(await client.post(url, json=unknown, headers=ADMIN_HEADERS), 404)
    bad = {"account_id": account.id, "number": "12"}
    assert_problem(await client.post(url, json=bad, headers=ADMIN_HEADERS), 422)


async def test_the_admin_api_checks_its_key_before_reading_a_body(
    client: httpx.AsyncClient, account: TestAccount
) -> None:
    """The request gate holds /v1/admin to the admin key (not an account's) before the body,
    and to the JSON body limit after it."""
    path = "/v1/admin/numbers/verify"
    body = {"account_id": account.id, "number": NYC_SENDER}
    huge = {"content-length": str(10**10), "content-type": "application/json"}
    for headers, status in (({}, 401), (account.headers, 403), (OTHER_KEY, 403)):
        r = await client.post(path, json=body, headers=headers)
        assert r.status_code == status, r.text
        r = await client.post(path, content=b"{}", headers={**headers, **huge})
        assert r.status_code == status, r.text
    r = await client.post(path, content=b"{}", headers={**ADMIN_HEADERS, **huge})
    assert r.status_code == 413, r.text
    r = await client.post(path, json=body, headers=ADMIN_HEADERS)
    assert r.status_code == 200, r.text
