"""/v1/telephony-setups and /v1/use-cases on both backends: CRUD, validation, isolation."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from tests.conftest import TestAccount
from tests.ringless.support import (
    LA_SENDER,
    NYC_SENDER,
    UNVERIFIED,
    assert_problem,
    count,
    make_setup,
    make_use_case,
    setup_body,
    verify_sender,
)


async def test_setup_crud_keeps_the_password_secret(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    h = account.headers
    r = await client.post("/v1/telephony-setups", json=setup_body(), headers=h)
    assert r.status_code == 201, r.text
    setup = r.json()
    assert setup["id"].startswith("setup_")
    assert r.headers["location"] == f"/v1/telephony-setups/{setup['id']}"
    assert "password" not in setup and setup["password_set"] is True
    assert "s3cret-pass" not in r.text
    assert setup["numbers"] == [
        {"e164": NYC_SENDER, "verified": False},
        {"e164": LA_SENDER, "verified": False},
        {"e164": UNVERIFIED, "verified": False},
    ]
    for number in (NYC_SENDER, LA_SENDER):
        assert (await verify_sender(client, account.id, number)).status_code == 200
    got = await client.get(f"/v1/telephony-setups/{setup['id']}", headers=h)
    setup["numbers"][0]["verified"] = setup["numbers"][1]["verified"] = True
    assert got.json()["numbers"] == setup["numbers"]
    assert setup["deposit_headers"] == {"X-Deposit": "1"}
    async with runtime.db.begin() as conn:
        stored = (await conn.execute(select(t.secrets.c.value))).scalars().all()
    assert stored == ["s3cret-pass"]

    got = await client.get(f"/v1/telephony-setups/{setup['id']}", headers=h)
    assert got.json() == setup
    listed = await client.get("/v1/telephony-setups", headers=h)
    assert [s["id"] for s in listed.json()["items"]] == [setup["id"]]

    patched = await client.patch(
        f"/v1/telephony-setups/{setup['id']}",
        json={"name": "Carrier B", "numbers": [{"e164": "(212) 555-0111"}], "password": None},
        headers=h,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["name"] == "Carrier B"
    assert body["numbers"] == [{"e164": "+12125550111", "verified": False}]
    assert body["password_set"] is False
    assert body["trunk_host"] == "sip.carrier.example"
    assert await count(runtime, t.secrets) == 0
    assert await count(runtime, t.setup_numbers) == 1

    assert (await client.delete(f"/v1/telephony-setups/{setup['id']}", headers=h)).status_code == 204
    assert_problem(await client.get(f"/v1/telephony-setups/{setup['id']}", headers=h), 404)


async def test_setup_validation(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    h = account.headers
    for bad in (
        setup_body(deposit_uri="sip:vm@carrier.example"),
        setup_body(numbers=[{"e164": "12"}]),
        setup_body(transport="carrier-pigeon"),
        setup_body(max_calls_per_second=0),
        setup_body(colour="blue"),
        setup_body(deposit_headers={"Bad Header": "x"}),
    ):
        r = await client.post("/v1/telephony-setups", json=bad, headers=h)
        assert_problem(r, 422)
    assert await count(runtime, t.telephony_setups) == 0


async def test_setup_isolation(
    client: httpx.AsyncClient, account: TestAccount, other_account: TestAccount
) -> None:
    setup_id = await make_setup(client, account)
    oh = other_account.headers
    assert_problem(await client.get(f"/v1/telephony-setups/{setup_id}", headers=oh), 404)
    assert_problem(
        await client.patch(f"/v1/telephony-setups/{setup_id}", json={"name": "x"}, headers=oh), 404
    )
    assert_problem(await client.delete(f"/v1/telephony-setups/{setup_id}", headers=oh), 404)
    assert (await client.get("/v1/telephony-setups", headers=oh)).json()["items"] == []
    assert (await client.get(f"/v1/telephony-setups/{setup_id}", headers=account.headers)).status_code == 200


async def test_use_case_crud_and_filters(
    client: httpx.AsyncClient, account: TestAccount
) -> None:
    h = account.headers
    setup_a = await make_setup(client, account)
    setup_b = await make_setup(client, account, name="Carrier B")
    r = await client.post(
        "/v1/use-cases",
        json={"channel": "ringless_voicemail", "name": "Reminders", "setup_id": setup_a},
        headers=h,
    )
    assert r.status_code == 201, r.text
    uc = r.json()
    assert uc["id"].startswith("uc_")
    assert uc["require_consent"] is True
    assert uc["calling_window"] == {"start": "08:00", "end": "21:00"}
    assert uc["max_attempts"] == 3
    assert uc["recipient_cap"] == {"attempts": 3, "period_hours": 72}
    assert uc["sender_selection"] == "round_robin"
    other = await make_use_case(
        client, account, setup_b, sender_selection="fixed", sender_number=LA_SENDER
    )

    by_setup = await client.get(f"/v1/use-cases?setup_id={setup_b}", headers=h)
    assert [u["id"] for u in by_setup.json()["items"]] == [other]
    by_channel = await client.get("/v1/use-cases?channel=ringless_voicemail", headers=h)
    assert {u["id"] for u in by_channel.json()["items"]} == {uc["id"], other}
    none = await client.get("/v1/use-cases?channel=voicemail_drop", headers=h)
    assert none.json()["items"] == []

    patched = await client.patch(
        f"/v1/use-cases/{uc['id']}",
        json={"calling_window": {"start": "09:30", "end": "20:00"}, "require_consent": False,
              "recipient_cap": {"attempts": 5, "period_hours": 24}},
        headers=h,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["calling_window"] == {"start": "09:30", "end": "20:00"}
    assert patched.json()["require_consent"] is False
    assert patched.json()["recipient_cap"] == {"attempts": 5, "period_hours": 24}
    assert patched.json()["name"] == "Reminders"

    assert_problem(await client.delete(f"/v1/telephony-setups/{setup_a}", headers=h), 409, "setup-in-use")
    assert (await client.delete(f"/v1/use-cases/{uc['id']}", headers=h)).status_code == 204
    assert_problem(await client.get(f"/v1/use-cases/{uc['id']}", headers=h), 404)
    assert (await client.delete(f"/v1/telephony-setups/{setup_a}", headers=h)).status_code == 204


async def test_use_case_validation(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, other_account: TestAccount
) -> None:
    h = account.headers
    setup_id = await make_setup(client, account)
    foreign_setup = await make_setup(client, other_account)
    base = {"channel": "ringless_voicemail", "name": "R", "setup_id": setup_id}
    cases = [
        ({**base, "setup_id": foreign_setup}, "unknown-reference"),
        ({**base, "sender_selection": "fixed"}, None),
        ({**base, "sender_selection": "fixed", "sender_number": UNVERIFIED}, "no-verified-sender"),
        ({**base, "channel": "fax_broadcast"}, None),
        ({**base, "calling_window": {"start": "25:00", "end": "21:00"}}, None),
        ({**base, "max_attempts": 0}, None),
    ]
    for body, error_id in cases:
        assert_problem(await client.post("/v1/use-cases", json=body, headers=h), 422, error_id)
    assert await count(runtime, t.use_cases) == 0


async def test_use_case_isolation(
    client: httpx.AsyncClient, account: TestAccount, other_account: TestAccount
) -> None:
    uc = await make_use_case(client, account, await make_setup(client, account))
    oh = other_account.headers
    assert_problem(await client.get(f"/v1/use-cases/{uc}", headers=oh), 404)
    assert_problem(await client.patch(f"/v1/use-cases/{uc}", json={"name": "x"}, headers=oh), 404)
    assert_problem(await client.delete(f"/v1/use-cases/{uc}", headers=oh), 404)
    assert (await client.get("/v1/use-cases", headers=oh)).json()["items"] == []
