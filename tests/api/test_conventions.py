"""API conventions shared by every resource: auth, problem JSON, idempotency, health, docs."""

from __future__ import annotations

import httpx

from tests.conftest import TestAccount

PROBLEM = "application/problem+json"


async def test_missing_key_is_a_401_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/mailboxes")
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert body["status"] == 401 and body["error_id"] == "unauthorized"
    assert body["type"].endswith("/unauthorized")


async def test_wrong_key_is_refused(client: httpx.AsyncClient, account: TestAccount) -> None:
    forged = account.key[:-4] + ("AAAA" if not account.key.endswith("AAAA") else "BBBB")
    for header in (f"Bearer {forged}", "Bearer nonsense", f"Basic {account.key}"):
        response = await client.get("/v1/account", headers={"Authorization": header})
        assert response.status_code == 401, header


async def test_key_identifies_its_account(
    client: httpx.AsyncClient, account: TestAccount, other_account: TestAccount
) -> None:
    mine = await client.get("/v1/account", headers=account.headers)
    theirs = await client.get("/v1/account", headers=other_account.headers)
    assert mine.json()["id"] == account.id
    assert theirs.json()["id"] == other_account.id


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient, account: TestAccount) -> None:
    response = await client.get("/v1/nothing-here", headers=account.headers)
    assert response.status_code == 404 and response.headers["content-type"] == PROBLEM
    response = await client.put("/healthz")
    assert response.status_code == 405 and response.headers["content-type"] == PROBLEM


async def test_validation_errors_are_problems_with_fields(client: httpx.AsyncClient, account: TestAccount) -> None:
    response = await client.post(
        "/v1/mailboxes", json={"name": "x", "no_such_field": 1}, headers=account.headers
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["error_id"] == "validation-failed"
    assert any("no_such_field" in error["field"] for error in body["errors"])


async def test_health_ready_metrics_docs(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ok"}
    await client.get("/healthz")
    await client.get("/v1/mailboxes/vm_nosuchbox")
    metrics = await client.get("/metrics")
    assert 'afterbeep_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics.text
    # the route template with its /v1 prefix, never the id
    assert 'route="/v1/mailboxes/{mailbox_id}"' in metrics.text
    assert "vm_nosuchbox" not in metrics.text
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/mailboxes" in spec["paths"] and "/v1/media" in spec["paths"]
    assert (await client.get("/docs")).status_code == 200


async def test_idempotency_key_replays_the_first_answer(client: httpx.AsyncClient, account: TestAccount) -> None:
    headers = {**account.headers, "Idempotency-Key": "create-support-box"}
    first = await client.post("/v1/mailboxes", json={"name": "Support"}, headers=headers)
    second = await client.post("/v1/mailboxes", json={"name": "Support"}, headers=headers)
    assert first.status_code == 201 and second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    listing = await client.get("/v1/mailboxes", headers=account.headers)
    assert [box["name"] for box in listing.json()["items"]] == ["Support"]

    reused = await client.post("/v1/mailboxes", json={"name": "Sales"}, headers=headers)
    assert reused.status_code == 422 and reused.json()["error_id"] == "idempotency-key-reused"


async def test_idempotency_keys_are_scoped_to_the_caller(
    client: httpx.AsyncClient, account: TestAccount, other_account: TestAccount
) -> None:
    mine = await client.post(
        "/v1/mailboxes", json={"name": "A"}, headers={**account.headers, "Idempotency-Key": "k1"}
    )
    theirs = await client.post(
        "/v1/mailboxes", json={"name": "A"}, headers={**other_account.headers, "Idempotency-Key": "k1"}
    )
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]
    assert theirs.json()["account_id"] == other_account.id


def test_fingerprint_ignores_the_multipart_boundary_even_split_across_chunks() -> None:
    from afterbeep.api.idempotency import BodyFingerprint

    def fingerprint(boundary: bytes, chunk_size: int, payload: bytes = b"RIFF....audio") -> str:
        body = (
            b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
            + payload + b"\r\n--" + boundary + b"--\r\n"
        )
        fp = BodyFingerprint("POST", "/v1/media", b"", b"multipart/form-data; boundary=" + boundary)
        for start in range(0, len(body), chunk_size):
            fp.update(body[start : start + chunk_size])
        return fp.hexdigest()

    first = fingerprint(b"abc123boundary", 7)
    assert first == fingerprint(b"zzzzzzzzzzzzzzzzzzzzzz", 3) == fingerprint(b"q", 1000)
    assert first != fingerprint(b"abc123boundary", 7, payload=b"RIFF....other")


async def test_a_forged_cursor_is_a_422_not_a_crash(client: httpx.AsyncClient, account: TestAccount) -> None:
    for cursor in ("YV8A", "!!!", "bm90LWFuLWlk"):
        for path in ("/v1/mailboxes", "/v1/media", "/v1/numbers", "/v1/webhooks"):
            response = await client.get(path, params={"cursor": cursor}, headers=account.headers)
            assert response.status_code == 422, (path, cursor, response.text)
            assert response.json()["errors"][0]["field"] == "cursor"


async def test_webhook_hosts_can_be_restricted(runtime: object, account: TestAccount) -> None:
    import pytest

    from afterbeep.app import Runtime
    from afterbeep.domain.errors import InvalidInput
    from afterbeep.services.webhooks import WebhookService

    assert isinstance(runtime, Runtime)
    service = WebhookService(runtime.uow, runtime.clock, frozenset({"127.0.0.1"}))
    made = await service.create(account.id, "http://127.0.0.1:9/hook", ["message.created"])
    assert made.url == "http://127.0.0.1:9/hook"
    with pytest.raises(InvalidInput) as refused:
        await service.create(account.id, "https://example.com/hook", ["message.created"])
    assert refused.value.error_id == "webhook-host-not-allowed"
