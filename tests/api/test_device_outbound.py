"""The settings of devices' calls out, on both backends: the account's
`device_outbound_setup_id` (a telephony setup of its own) and users' `out_cid_number` (E.164)."""

from __future__ import annotations

import httpx

from tests.api.test_users import post, problem_of
from tests.conftest import TestAccount as Acct
from tests.ringless.support import setup_body

CALLER_ID = "+12125550143"


async def test_the_account_names_one_of_its_setups_for_calls_out(
    client: httpx.AsyncClient, account: Acct, other_account: Acct
) -> None:
    before = (await client.get("/v1/account", headers=account.headers)).json()
    assert before["device_outbound_setup_id"] is None
    mine = await post(client, account, "/v1/telephony-setups", **setup_body())
    theirs = await post(client, other_account, "/v1/telephony-setups", **setup_body())

    set_ = await client.patch(
        "/v1/account",
        json={"allow_device_outbound": True, "device_outbound_setup_id": mine["id"]},
        headers=account.headers,
    )
    assert set_.status_code == 200, set_.text
    assert set_.json()["device_outbound_setup_id"] == mine["id"]
    got = (await client.get("/v1/account", headers=account.headers)).json()
    assert got["device_outbound_setup_id"] == mine["id"] and got["allow_device_outbound"] is True

    # another account's setup, a made-up one, or not an id at all: refused, nothing changes
    for wrong in (theirs["id"], "setup_01j00000000000000000000000", "carrier-a", 5):
        refused = await client.patch(
            "/v1/account", json={"device_outbound_setup_id": wrong}, headers=account.headers
        )
        assert refused.status_code == 422, (wrong, refused.text)
    assert (await client.get("/v1/account", headers=account.headers)).json()[
        "device_outbound_setup_id"
    ] == mine["id"]
    # the other account's own setting is untouched
    other = (await client.get("/v1/account", headers=other_account.headers)).json()
    assert other["device_outbound_setup_id"] is None

    cleared = await client.patch(
        "/v1/account", json={"device_outbound_setup_id": None}, headers=account.headers
    )
    assert cleared.status_code == 200 and cleared.json()["device_outbound_setup_id"] is None


async def test_a_users_caller_id_is_an_e164_number(
    client: httpx.AsyncClient, account: Acct, other_account: Acct
) -> None:
    user = await post(client, account, "/v1/users", username="201")
    assert user["out_cid_number"] is None
    with_cid = await post(client, account, "/v1/users", username="202", out_cid_number=CALLER_ID)
    assert with_cid["out_cid_number"] == CALLER_ID

    patched = await client.patch(
        f"/v1/users/{user['id']}", json={"out_cid_number": CALLER_ID}, headers=account.headers
    )
    assert patched.status_code == 200 and patched.json()["out_cid_number"] == CALLER_ID
    for wrong in ("2125550143", "+1212", "+1 nope", 12125550143):
        refused = await client.patch(
            f"/v1/users/{user['id']}", json={"out_cid_number": wrong}, headers=account.headers
        )
        assert refused.status_code == 422, (wrong, refused.text)
    got = (await client.get(f"/v1/users/{user['id']}", headers=account.headers)).json()
    assert got["out_cid_number"] == CALLER_ID
    # another account neither sees nor changes it
    problem_of(
        await client.patch(
            f"/v1/users/{user['id']}", json={"out_cid_number": None}, headers=other_account.headers
        ),
        404,
        "not-found",
    )
    cleared = await client.patch(
        f"/v1/users/{user['id']}", json={"out_cid_number": None}, headers=account.headers
    )
    assert cleared.status_code == 200 and cleared.json()["out_cid_number"] is None
