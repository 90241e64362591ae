"""/v1/call-centers on both backends: CRUD, validation naming the field, isolation between
accounts, and deletion refused once a call center has voice calls."""

from __future__ import annotations

from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from afterbeep.domain.ids import new_id
from tests.api.telephony_support import (
    API_NAME,
    DIALED,
    ORG_ID,
    make_call_center,
    make_queue,
    new_key,
    public_pem,
)
from tests.api.test_schedules import problem_of
from tests.api.test_telephony_api import seed_body
from tests.conftest import TestAccount as Acct


def pem_of(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


async def test_crud(client: httpx.AsyncClient, account: Acct) -> None:
    calls_q = await make_queue(client, account, "Calls")
    vm_q = await make_queue(client, account, "Voicemails")
    body: dict[str, Any] = {
        "call_center_api_name": API_NAME,
        "org_id": ORG_ID,
        "public_key_pem": public_pem(),
        "routes": [
            {
                "dialed_number": "(415) 555-0100",
                "call_queue_id": calls_q,
                "voicemail_queue_id": vm_q,
            },
            {"dialed_number": "+442071838750", "voicemail_queue_id": vm_q},
        ],
        "flows": [{"dev_name": "VoicemailFlow", "voicemail_queue_id": vm_q}],
    }
    created = await client.post("/v1/call-centers", json=body, headers=account.headers)
    assert created.status_code == 201, created.text
    center = created.json()
    assert center["id"].startswith("cc_")
    assert created.headers["location"] == f"/v1/call-centers/{center['id']}"
    assert center["routes"] == [
        {"dialed_number": DIALED, "call_queue_id": calls_q, "voicemail_queue_id": vm_q},
        {"dialed_number": "+442071838750", "call_queue_id": None, "voicemail_queue_id": vm_q},
    ]
    assert center["flows"] == [
        {"dev_name": "VoicemailFlow", "call_queue_id": None, "voicemail_queue_id": vm_q}
    ]
    assert (center["call_center_api_name"], center["org_id"]) == (API_NAME, ORG_ID)
    assert center["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    got = await client.get(f"/v1/call-centers/{center['id']}", headers=account.headers)
    assert got.json() == center

    patched = await client.patch(
        f"/v1/call-centers/{center['id']}",
        json={"call_center_api_name": "Renamed", "routes": []},
        headers=account.headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["call_center_api_name"] == "Renamed" and patched.json()["routes"] == []
    assert patched.json()["flows"] == center["flows"] and patched.json()["org_id"] == ORG_ID

    listed = await client.get("/v1/call-centers", headers=account.headers)
    assert [c["id"] for c in listed.json()["items"]] == [center["id"]]
    assert (
        await client.delete(f"/v1/call-centers/{center['id']}", headers=account.headers)
    ).status_code == 204
    problem_of(
        await client.get(f"/v1/call-centers/{center['id']}", headers=account.headers),
        404,
        "not-found",
    )


async def test_validation_names_the_field(client: httpx.AsyncClient, account: Acct) -> None:
    queue = await make_queue(client, account, "Q")
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"call_center_api_name": None}, "call_center_api_name"),
        ({"call_center_api_name": "has space"}, "call_center_api_name"),
        ({"call_center_api_name": "9starts"}, "call_center_api_name"),
        ({"org_id": None}, "org_id"),
        ({"org_id": "with space"}, "org_id"),
        ({"public_key_pem": None}, "public_key_pem"),
        ({"public_key_pem": "not a key"}, "public_key_pem"),
        ({"public_key_pem": pem_of(ec.generate_private_key(ec.SECP256R1()))}, "public_key_pem"),
        ({"public_key_pem": pem_of(small)}, "public_key_pem"),
        ({"routes": [{"dialed_number": "12", "call_queue_id": queue}]}, "routes[0].dialed_number"),
        ({"routes": [{"dialed_number": DIALED}]}, "routes[0]"),
        (
            {
                "routes": [
                    {"dialed_number": DIALED, "call_queue_id": "rg_01jg8asp59ps9rtt7azhrhvcre"}
                ]
            },
            "routes[0].call_queue_id",
        ),
        ({"routes": [{"dialed_number": DIALED, "voicemail_queue_id": new_id("q")}]}, "routes[0]"),
        (
            {
                "routes": [
                    {"dialed_number": DIALED, "call_queue_id": queue},
                    {"dialed_number": "4155550100", "call_queue_id": queue},
                ]
            },
            "routes[1].dialed_number",
        ),
        ({"flows": [{"dev_name": "bad name", "call_queue_id": queue}]}, "flows[0].dev_name"),
        ({"flows": [{"dev_name": "F", "call_queue_id": new_id("q")}]}, "flows[0]"),
    ]
    for change, field in cases:
        body = {
            "call_center_api_name": API_NAME,
            "org_id": ORG_ID,
            "public_key_pem": public_pem(),
            **change,
        }
        r = await client.post("/v1/call-centers", json=body, headers=account.headers)
        assert r.status_code == 422, (change, r.text)
        errors = r.json()["errors"]
        assert errors[0]["field"] == field, (change, errors)
    r = await client.post(
        "/v1/call-centers", json={"call_center_api_name": "X", "extra": 1}, headers=account.headers
    )
    problem_of(r, 422, "validation-failed")
    center = await make_call_center(client, account)
    problem_of(
        await client.post(
            "/v1/call-centers",
            json={"call_center_api_name": API_NAME, "org_id": "o", "public_key_pem": public_pem()},
            headers=account.headers,
        ),
        409,
        "call-center-name-taken",
    )
    r = await client.patch(
        f"/v1/call-centers/{center['id']}", json={"org_id": None}, headers=account.headers
    )
    assert problem_of(r, 422, "invalid-input")["errors"][0]["field"] == "org_id"
    r = await client.patch(
        f"/v1/call-centers/{center['id']}", json={"public_key_pem": "x"}, headers=account.headers
    )
    assert problem_of(r, 422, "invalid-input")["errors"][0]["field"] == "public_key_pem"


async def test_accounts_are_isolated(
    client: httpx.AsyncClient, account: Acct, other_account: Acct
) -> None:
    center = await make_call_center(client, account)
    url = f"/v1/call-centers/{center['id']}"
    problem_of(await client.get(url, headers=other_account.headers), 404, "not-found")
    problem_of(
        await client.patch(url, json={"org_id": "x"}, headers=other_account.headers),
        404,
        "not-found",
    )
    problem_of(await client.delete(url, headers=other_account.headers), 404, "not-found")
    problem_of(
        await client.get("/v1/call-centers/cc_%00", headers=account.headers), 404, "not-found"
    )
    listed = await client.get("/v1/call-centers", headers=other_account.headers)
    assert listed.json()["items"] == []
    # the same API name in another account is fine; queues of another account are not
    theirs = await make_call_center(client, other_account)
    assert theirs["id"] != center["id"]
    my_queue = await make_queue(client, account, "Mine")
    r = await client.patch(
        f"/v1/call-centers/{theirs['id']}",
        json={"routes": [{"dialed_number": DIALED, "call_queue_id": my_queue}]},
        headers=other_account.headers,
    )
    assert problem_of(r, 422, "invalid-input")["errors"][0]["field"] == "routes[0]"
    problem_of(await client.get("/v1/call-centers"), 401, "unauthorized")


async def test_a_call_center_with_voice_calls_is_not_deleted(
    client: httpx.AsyncClient, account: Acct
) -> None:
    center = await make_call_center(client, account)
    r = await client.post(
        "/telephony/v1/voiceCalls", json=seed_body(new_key()), headers=account.headers
    )
    assert r.status_code == 201, r.text
    problem_of(
        await client.delete(f"/v1/call-centers/{center['id']}", headers=account.headers),
        409,
        "call-center-in-use",
    )
    assert (
        await client.get(f"/v1/call-centers/{center['id']}", headers=account.headers)
    ).status_code == 200
