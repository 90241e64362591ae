"""Query parameters: unknown ones are refused on every operation (as unknown JSON fields are),
and time bounds are `created_after`/`created_before` everywhere, never a bare number: against
the real `afterbeep serve` process."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.service import NO_RECORDINGS, Service, running_service
from tests.ringless.support import PROBLEM

UNKNOWN = "zz_not_a_parameter"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("query") / "var", NO_RECORDINGS) as svc:
        yield svc


@pytest.fixture(scope="module")
def client(service: Service) -> Iterator[httpx.Client]:
    key = json.loads(service.cli("account", "create", "Query", "--json").stdout)["api_key"]
    with httpx.Client(
        base_url=service.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as c:
        yield c


def assert_refused(response: httpx.Response, *fields: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert [e["field"] for e in response.json()["errors"]] == list(fields), response.json()


def operations(client: httpx.Client) -> list[tuple[str, str, dict[str, Any]]]:
    spec = client.get("/openapi.json").json()
    return [
        (method.upper(), path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def test_every_operation_refuses_an_unknown_query_parameter(client: httpx.Client) -> None:
    found = operations(client)
    assert len(found) > 30
    answered: dict[str, int] = {}
    # /v1/agents/me and below answer an agent's token, not the account's key
    user = client.post("/v1/users", json={"username": "501", "is_agent": True}).json()
    token = client.post(f"/v1/agents/{user['id']}/tokens", json={"name": "desk"}).json()["token"]
    as_agent = {"Authorization": f"Bearer {token}"}
    for method, path, _ in found:
        url = re.sub(r"\{[^}]+\}", "x_01jf18ah3jeb5w6dfp27sgjsbt", path)
        headers = as_agent if path.startswith("/v1/agents/me") else None
        response = client.request(method, url, params={UNKNOWN: "1"}, headers=headers)
        answered[f"{method} {path}"] = response.status_code
        if response.status_code == 422:
            assert_refused(response, f"query.{UNKNOWN}")
    assert {op: status for op, status in answered.items() if status != 422} == {}


def test_a_request_without_a_key_is_refused_for_the_key_first(service: Service) -> None:
    response = httpx.get(service.url + "/v1/voicemails", params={UNKNOWN: "1"})
    assert response.status_code == 401, response.text
    assert httpx.get(service.url + "/healthz", params={UNKNOWN: "1"}).status_code == 422


def test_declared_parameters_are_still_taken(client: httpx.Client) -> None:
    for path in ("/v1/voicemails", "/v1/drops", "/v1/media", "/v1/mailboxes", "/v1/webhooks"):
        response = client.get(path, params={"limit": 1})
        assert response.status_code == 200, (path, response.text)
    listed = client.get(
        "/v1/voicemails",
        params={"created_after": "2020-01-01T00:00:00Z", "created_before": "2099-01-01T00:00:00Z"},
    )
    assert listed.status_code == 200, listed.text
    for path in ("/v1/voicemails/stats", "/v1/drops/stats"):
        stats = client.get(path, params={"created_before": "2000-01-01T00:00:00Z"})
        assert stats.status_code == 200, stats.text
        assert stats.json()["total"] == 0


@pytest.mark.parametrize("path", ["/v1/voicemails/stats", "/v1/drops/stats"])
def test_stats_refuse_a_phone_number_for_a_time_bound(client: httpx.Client, path: str) -> None:
    # `to` was the upper time bound: a phone number there was read as a Unix time.
    assert_refused(client.get(path, params={"to": "+13125550177"}), "query.to")
    assert_refused(client.get(path, params={"from": "2020-01-01T00:00:00Z"}), "query.from")
    response = client.get(path, params={"created_before": "+13125550177"})
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["query.created_before"]


@pytest.mark.parametrize("path", ["/v1/voicemails", "/v1/drops"])
def test_lists_refuse_a_number_for_a_time_bound(client: httpx.Client, path: str) -> None:
    response = client.get(path, params={"created_after": "1741081800"})
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["query.created_after"]
