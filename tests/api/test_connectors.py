"""/v1/connectors: an outside contact center's Telephony API. The private key goes to the secret
store and never comes back (only its public key); the base URL obeys the network policy; a
connector a mailbox uses cannot be deleted."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from afterbeep.app import Runtime
from afterbeep.domain.connectors import key_ref
from tests.conftest import TestAccount

pytestmark = pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)

BODY = {
    "name": "Outside contact center",
    "base_url": "http://127.0.0.1:9/telephony/v1/",
    "call_center_api_name": "MyContactCenter",
    "org_id": "00Dxx0000001gPL",
    "provider_name": "afterbeep",
}


def pem(key: Any) -> str:
    return str(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    )


def public_of(key: Any) -> str:
    return str(
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


async def test_create_read_update_delete_without_ever_showing_the_private_key(
    client: httpx.AsyncClient, account: TestAccount, runtime: Runtime
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    created = await client.post(
        "/v1/connectors", json={**BODY, "private_key_pem": pem(key)}, headers=account.headers
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"].startswith("ccx_")
    assert body["base_url"] == "http://127.0.0.1:9/telephony/v1"
    assert body["public_key_pem"] == public_of(key)
    assert "PRIVATE" not in created.text and "private_key_pem" not in body
    async with runtime.uow() as uow:
        assert await uow.secrets.get(account.id, key_ref(body["id"])) == pem(key)

    # generated when none is given
    generated = await client.post("/v1/connectors", json=BODY, headers=account.headers)
    assert generated.status_code == 201, generated.text
    assert generated.json()["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")

    listed = await client.get("/v1/connectors", headers=account.headers)
    assert {c["id"] for c in listed.json()["items"]} == {body["id"], generated.json()["id"]}
    assert "PRIVATE" not in listed.text

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    patched = await client.patch(
        f"/v1/connectors/{body['id']}",
        json={"audience": "https://login.example", "private_key_pem": pem(other), "provider_name": None},
        headers=account.headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["audience"] == "https://login.example"
    assert patched.json()["provider_name"] is None
    assert patched.json()["public_key_pem"] == public_of(other)

    # in use by a team's mailbox: not deleted
    queue = await client.post("/v1/queues", json={"name": "Support"}, headers=account.headers)
    box = await client.post(
        "/v1/mailboxes",
        json={"name": "Support", "queue_id": queue.json()["id"], "connector_id": body["id"]},
        headers=account.headers,
    )
    assert box.status_code == 201, box.text
    refused = await client.delete(f"/v1/connectors/{body['id']}", headers=account.headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["type"].endswith("connector-in-use")
    await client.patch(
        f"/v1/mailboxes/{box.json()['id']}", json={"connector_id": None}, headers=account.headers
    )
    deleted = await client.delete(f"/v1/connectors/{body['id']}", headers=account.headers)
    assert deleted.status_code == 204
    async with runtime.uow() as uow:
        assert await uow.secrets.get(account.id, key_ref(body["id"])) is None
    gone = await client.get(f"/v1/connectors/{body['id']}", headers=account.headers)
    assert gone.status_code == 404


async def test_keys_urls_and_names_are_checked(
    client: httpx.AsyncClient, account: TestAccount, other_account: TestAccount
) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    elliptic = ec.generate_private_key(ec.SECP256R1())
    cases: list[tuple[dict[str, Any], str]] = [
        ({**BODY, "private_key_pem": pem(small)}, "private_key_pem"),
        ({**BODY, "private_key_pem": pem(elliptic)}, "private_key_pem"),
        ({**BODY, "private_key_pem": "-----BEGIN PRIVATE KEY-----\nxx\n"}, "private_key_pem"),
        ({**BODY, "base_url": "ftp://127.0.0.1/telephony/v1"}, "base_url"),
        ({**BODY, "base_url": "http://user:pw@127.0.0.1/telephony/v1"}, "base_url"),
        ({**BODY, "call_center_api_name": "my center"}, "call_center_api_name"),
        ({**BODY, "provider_name": "bad\u00e9name"}, "provider_name"),
    ]
    for body, field_name in cases:
        response = await client.post("/v1/connectors", json=body, headers=account.headers)
        assert response.status_code == 422, (body, response.text)
        assert field_name in response.text, response.text
    # a private address the operator has not opened (the tests open 127.0.0.0/8 only)
    for host in ("10.1.2.3", "169.254.169.254", "[::ffff:10.0.0.1]"):
        response = await client.post(
            "/v1/connectors",
            json={**BODY, "base_url": f"http://{host}/telephony/v1"},
            headers=account.headers,
        )
        assert response.status_code == 422, response.text
        assert response.json()["type"].endswith("address-not-allowed")
    created = await client.post("/v1/connectors", json=BODY, headers=account.headers)
    assert created.status_code == 201
    # another account's connector does not exist for this one
    found = await client.get(f"/v1/connectors/{created.json()['id']}", headers=other_account.headers)
    assert found.status_code == 404
    queue = await client.post("/v1/queues", json={"name": "Support"}, headers=other_account.headers)
    box = await client.post(
        "/v1/mailboxes",
        json={"name": "Theirs", "queue_id": queue.json()["id"], "connector_id": created.json()["id"]},
        headers=other_account.headers,
    )
    assert box.status_code == 422 and "connector_id" in box.text
