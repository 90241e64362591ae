"""`metadata` is bounded when written, and one stored row that cannot be shown never fails a
list: against the real `afterbeep serve` process and its SQLite file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from afterbeep.domain.metadata import MAX_METADATA_BYTES, MAX_METADATA_DEPTH, MAX_METADATA_KEYS
from tests.api.service_tenant import Tenant, make_tenant, multipart_send
from tests.fixtures.service import NO_RECORDINGS, running_service
from tests.ringless.support import PROBLEM


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenant]:
    with running_service(tmp_path_factory.mktemp("meta") / "var", NO_RECORDINGS) as svc:
        yield make_tenant(svc, "Meta")


def nested(depth: int) -> dict[str, Any]:
    """An object `depth` levels deep: {"a": {"a": ... {"a": 1}}}."""
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    assert isinstance(value, dict)
    return value


def nested_text(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


TOO_DEEP = nested(MAX_METADATA_DEPTH + 1)
TOO_MANY_KEYS = {"k": {f"k{i}": i for i in range(MAX_METADATA_KEYS)}}  # 51 keys over two levels
TOO_LARGE = {"note": "x" * MAX_METADATA_BYTES}
REFUSED = {"too-deep": TOO_DEEP, "too-many-keys": TOO_MANY_KEYS, "too-large": TOO_LARGE}


def assert_refused_naming_metadata(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert [e["field"] for e in response.json()["errors"]] == ["metadata"], response.json()


@pytest.mark.parametrize("case", sorted(REFUSED))
@pytest.mark.parametrize("path", ["/v1/voicemails", "/v1/drops"])
def test_metadata_past_its_bounds_is_refused_and_nothing_is_stored(
    tenant: Tenant, path: str, case: str
) -> None:
    use_case = tenant.use_case_id if path == "/v1/voicemails" else tenant.drop_use_case_id
    sends, media = tenant.rows("voicemail_sends"), tenant.rows("media")
    with tenant.client() as client:
        assert_refused_naming_metadata(
            multipart_send(client, path, use_case, json.dumps(REFUSED[case]))
        )
    assert (tenant.rows("voicemail_sends"), tenant.rows("media")) == (sends, media)


@pytest.mark.parametrize("depth", [500, 5000])
def test_metadata_nested_past_any_decoder_is_refused_not_a_server_error(
    tenant: Tenant, depth: int
) -> None:
    sends = tenant.rows("voicemail_sends")
    with tenant.client() as client:
        assert_refused_naming_metadata(
            multipart_send(client, "/v1/voicemails", tenant.use_case_id, nested_text(depth))
        )
        listed = client.get("/v1/voicemails")
    assert listed.status_code == 200, listed.text
    assert tenant.rows("voicemail_sends") == sends


def test_metadata_within_its_bounds_is_kept(tenant: Tenant) -> None:
    fits: dict[str, Any] = {
        "deep": nested(MAX_METADATA_DEPTH - 1),
        **{f"k{i}": i for i in range(MAX_METADATA_KEYS - MAX_METADATA_DEPTH)},
    }
    with tenant.client() as client:
        sent = multipart_send(client, "/v1/voicemails", tenant.use_case_id, json.dumps(fits))
        assert sent.status_code == 202, sent.text
        assert sent.json()["metadata"] == fits
        assert client.get(f"/v1/voicemails/{sent.json()['id']}").json()["metadata"] == fits


def test_a_stored_row_that_cannot_be_shown_does_not_break_the_list(tenant: Tenant) -> None:
    bad = {"undecodable": nested_text(5000), "not-json": "{not json", "too-deep": nested_text(500)}
    ids: dict[str, str] = {}
    with tenant.client() as client:
        for name in [*bad, "good"]:
            sent = multipart_send(
                client, "/v1/voicemails", tenant.use_case_id, json.dumps({"name": name})
            )
            assert sent.status_code == 202, sent.text
            ids[name] = sent.json()["id"]
        with sqlite3.connect(tenant.db) as conn:
            for name, text in bad.items():
                conn.execute("UPDATE voicemail_sends SET metadata = ? WHERE id = ?", (text, ids[name]))

        listed = client.get("/v1/voicemails", params={"limit": 200})
        assert listed.status_code == 200, listed.text
        shown = {item["id"]: item["metadata"] for item in listed.json()["items"]}
        assert {name: shown[send_id] for name, send_id in ids.items()} == {
            "undecodable": None, "not-json": None, "too-deep": None, "good": {"name": "good"},
        }  # fmt: skip
        for name in bad:
            one = client.get(f"/v1/voicemails/{ids[name]}")
            assert one.status_code == 200, one.text
            assert one.json()["metadata"] is None
    log = tenant.service.log.read_text()
    for name in bad:
        assert f"send {ids[name]}: metadata shown as null" in log


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_metadata_past_its_bounds_is_refused_in_json_too(tenant: Tenant, case: str) -> None:
    body = {
        "to": "+12125550123",
        "use_case_id": tenant.use_case_id,
        "media_id": "media_01jf18ah3jeb5w6dfp27sgjsbt",
        "metadata": REFUSED[case],
    }
    with tenant.client() as client:
        assert_refused_naming_metadata(client.post("/v1/voicemails", json=body))


def test_a_json_body_nested_past_the_decoder_is_a_client_error(tenant: Tenant) -> None:
    body = '{"to":"+12125550123","metadata":' + nested_text(5000) + "}"
    with tenant.client() as client:
        response = client.post(
            "/v1/voicemails", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
