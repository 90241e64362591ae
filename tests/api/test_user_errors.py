"""What a new user meets first: the docs pages (offline), and errors that say what to fix."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import TestAccount

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(("page", "scripts"), [("/docs", 1), ("/redoc", 1)])
async def test_docs_pages_load_nothing_from_another_host(
    client: httpx.AsyncClient, page: str, scripts: int
) -> None:
    response = await client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert len([a for a in assets if a.endswith(".js")]) >= scripts, assets
    for asset in assets:
        assert asset.startswith("/"), asset
        got = await client.get(asset)
        assert got.status_code == 200, asset
        assert len(got.content) > 1000, asset
    assert "/openapi.json" in html


async def test_malformed_json_says_where(client: httpx.AsyncClient, account: TestAccount) -> None:
    headers = {**account.headers, "Content-Type": "application/json"}
    response = await client.post("/v1/mailboxes", content=b'{\n  "name": "x",\n  quota_mb: 5\n}', headers=headers)
    assert response.status_code == 400 and response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["error_id"] == "malformed-json"
    assert (body["line"], body["column"]) == (3, 3)
    assert "line 3, column 3" in body["detail"]
    response = await client.post("/v1/mailboxes", content=b'{"name": "\xff"}', headers=headers)
    assert response.status_code == 400 and response.json()["error_id"] == "malformed-json"
    # Routes that read their JSON themselves say the same.
    response = await client.post("/v1/campaigns", content=b'{"name": "x",}', headers=headers)
    assert response.status_code == 400 and response.json()["error_id"] == "malformed-json"
    assert (response.json()["line"], response.json()["column"]) == (1, 14)


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", None]
)
async def test_a_body_that_is_not_json_gets_415(
    client: httpx.AsyncClient, account: TestAccount, content_type: str | None
) -> None:
    headers = dict(account.headers)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = await client.post("/v1/mailboxes", content=b"name=Support", headers=headers)
    assert response.status_code == 415, response.text
    body = response.json()
    assert body["error_id"] == "unsupported-media-type"
    assert "application/json" in body["detail"] and body["accepted"] == ["application/json"]
    listing = await client.get("/v1/mailboxes", headers=account.headers)
    assert listing.json()["items"] == []


async def test_validation_names_the_field_and_the_shape(
    client: httpx.AsyncClient, account: TestAccount
) -> None:
    response = await client.post(
        "/v1/mailboxes",
        json={"name": 5, "quota_mb": "lots", "colour": "red", "max_messages": 0},
        headers=account.headers,
    )
    assert response.status_code == 422
    body = response.json()
    errors = {error["field"]: error for error in body["errors"]}
    assert errors["name"]["expected"] == "a string"
    assert errors["quota_mb"]["expected"] == "an integer"
    assert errors["colour"]["message"] == "unknown field"
    assert errors["max_messages"]["expected"].startswith("a number >= ")
    assert "name: " in body["detail"] and "quota_mb: " in body["detail"]

    response = await client.post("/v1/mailboxes", json=["Support"], headers=account.headers)
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "body", "message": response.json()["errors"][0]["message"], "expected": "an object"}
    ]
    response = await client.post("/v1/mailboxes", headers=account.headers)
    assert response.json()["errors"] == [{"field": "body", "message": "required", "expected": "a JSON object"}]
    response = await client.post("/v1/mailboxes", json={}, headers=account.headers)
    assert response.json()["errors"] == [
        {"field": "name", "message": "required", "expected": "a value (the field is required)"}
    ]
