"""Call flows over HTTP on both backends: save, versions, validation naming nodes, references
checked in the caller's account, tenant isolation, deletion."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import func, select

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from tests.api.test_mailboxes import assert_problem, upload_media
from tests.api.test_mailboxes import create as create_mailbox

if TYPE_CHECKING:
    from tests.conftest import TestAccount

MISSING_SCHEDULE = "sch_01jg8asp59ps9rtt7azhrhvcre"


def _node(node_id: str, kind: str, **data: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": kind,
        "data": {"kind": kind, **data},
        "position": {"x": 1, "y": 2},
    }


def _edge(edge_id: str, source: str, handle: str | None, target: str) -> dict[str, Any]:
    return {"id": edge_id, "source": source, "sourceHandle": handle, "target": target}


def four_node_flow(media_id: str, mailbox_id: str, schedule_id: str) -> dict[str, Any]:
    """entry → timeCondition → menu → voicemail."""
    return {
        "name": "Front desk",
        "nodes": [
            _node("start", "entry", trigger="inbound"),
            _node("hours", "timeCondition", scheduleId=schedule_id),
            _node("main", "menu", promptAudioId=media_id, maxDigits=1, timeoutSec=5),
            _node("vm", "voicemail", mailboxId=mailbox_id),
        ],
        "edges": [
            _edge("e1", "start", "default", "hours"),
            _edge("e2", "hours", "in_hours", "main"),
            _edge("e3", "hours", "out_of_hours", "vm"),
            _edge("e4", "main", "digit:1", "vm"),
            _edge("e5", "main", "timeout", "vm"),
        ],
    }


async def _valid_body(client: httpx.AsyncClient, account: TestAccount) -> dict[str, Any]:
    media_id = await upload_media(client, account)
    mailbox = await create_mailbox(client, account)
    schedule = await client.post("/v1/schedules", json={"name": "Office"}, headers=account.headers)
    assert schedule.status_code == 201, schedule.text
    return four_node_flow(media_id, mailbox["id"], schedule.json()["id"])


async def _create(
    client: httpx.AsyncClient, account: TestAccount, body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post("/v1/flows", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _stored(runtime: Runtime) -> tuple[int, int]:
    async with runtime.db.begin() as conn:
        flows = (await conn.execute(select(func.count()).select_from(t.flows))).scalar_one()
        versions = (
            await conn.execute(select(func.count()).select_from(t.flow_versions))
        ).scalar_one()
    return int(flows), int(versions)


async def test_create_get_list_and_a_new_version(
    client: httpx.AsyncClient, account: TestAccount
) -> None:
    body = await _valid_body(client, account)
    created = await _create(client, account, body)
    assert created["id"].startswith("flow_")
    assert created["version"] == 1 and created["current_version"] == 1
    assert created["nodes"] == body["nodes"]  # editor fields (position) are kept
    assert created["edges"] == body["edges"]

    got = await client.get(f"/v1/flows/{created['id']}", headers=account.headers)
    assert got.status_code == 200
    assert got.json()["nodes"] == body["nodes"]

    second = await _create(client, account, {**body, "name": "Second"})
    listed = await client.get("/v1/flows", params={"limit": 1}, headers=account.headers)
    page = listed.json()
    assert [f["id"] for f in page["items"]] == [second["id"]]  # newest first
    more = await client.get(
        "/v1/flows", params={"limit": 1, "cursor": page["next_cursor"]}, headers=account.headers
    )
    assert [f["id"] for f in more.json()["items"]] == [created["id"]]
    assert more.json()["next_cursor"] is None

    changed = {
        **body,
        "name": "Front desk v2",
        "nodes": body["nodes"][:1] + body["nodes"][3:],
        "edges": [_edge("e1", "start", "default", "vm")],
    }
    put = await client.put(f"/v1/flows/{created['id']}", json=changed, headers=account.headers)
    assert put.status_code == 200, put.text
    assert put.json()["version"] == 2 and put.json()["name"] == "Front desk v2"

    current = (await client.get(f"/v1/flows/{created['id']}", headers=account.headers)).json()
    assert current["version"] == 2 and len(current["nodes"]) == 2
    old = await client.get(f"/v1/flows/{created['id']}/versions/1", headers=account.headers)
    assert old.status_code == 200
    assert old.json()["version"] == 1 and old.json()["current_version"] == 2
    assert old.json()["nodes"] == body["nodes"]
    missing = await client.get(f"/v1/flows/{created['id']}/versions/3", headers=account.headers)
    assert_problem(missing, 404, "not-found")


def _broken(body: dict[str, Any]) -> dict[str, Any]:
    nodes = [dict(n) for n in body["nodes"]]
    nodes.append(_node("lost", "hangup"))  # unreachable
    nodes.append(_node("q", "enqueue", queueId="queue_01jg8asp59ps9rtt7azhrhvcre"))
    nodes.append(_node("odd", "teleport"))
    nodes.append(_node("gone", "play", audioId="media_01jg8asp59ps9rtt7azhrhvcre"))
    nodes.append(_node("box", "voicemail", mailboxId="not-a-mailbox"))
    nodes.append(_node("when", "timeCondition", scheduleId="office"))
    nodes.append(_node("later", "timeCondition", scheduleId=MISSING_SCHEDULE))
    edges = list(body["edges"])
    edges += [
        _edge("e6", "main", "digit:2", "q"),
        _edge("e7", "main", "digit:3", "odd"),
        _edge("e8", "main", "digit:4", "gone"),
        _edge("e9", "main", "digit:5", "box"),
        _edge("e10", "main", "digit:7", "when"),
        _edge("e11", "main", "digit:8", "later"),
        _edge("bad", "main", "sideways", "vm"),
        _edge("dangling", "main", "digit:6", "nowhere"),
    ]
    return {**body, "nodes": nodes, "edges": edges}


async def test_every_error_names_its_node_and_nothing_is_stored(
    client: httpx.AsyncClient, account: TestAccount, runtime: Runtime
) -> None:
    body = _broken(await _valid_body(client, account))
    response = await client.post("/v1/flows", json=body, headers=account.headers)
    problem = assert_problem(response, 422, "invalid-flow")
    errors = problem["errors"]
    assert all(set(e) == {"node_id", "edge_id", "field", "message"} for e in errors)
    by_node = {(e["node_id"], e["edge_id"]): e for e in errors}
    assert ("lost", None) in by_node  # unreachable
    assert by_node[("q", None)]["message"] == "is not a queue id (q_...)"
    assert ("odd", None) in by_node  # unknown kind
    assert "not found" in by_node[("gone", None)]["message"]
    assert by_node[("gone", None)]["field"] == "data.audioId"
    assert by_node[("box", None)]["field"] == "data.mailboxId"
    assert by_node[("when", None)]["message"] == "is not a schedule id (sch_...)"
    assert "not found" in by_node[("later", None)]["message"]
    assert any(e["edge_id"] == "bad" for e in errors)
    assert any(e["edge_id"] == "dangling" for e in errors)
    assert await _stored(runtime) == (0, 0)

    no_entry = {**body, "nodes": body["nodes"][1:]}
    assert_problem(await client.post("/v1/flows", json=no_entry, headers=account.headers), 422)
    assert await _stored(runtime) == (0, 0)


async def test_a_bad_put_keeps_the_current_version(
    client: httpx.AsyncClient, account: TestAccount, runtime: Runtime
) -> None:
    body = await _valid_body(client, account)
    created = await _create(client, account, body)
    response = await client.put(
        f"/v1/flows/{created['id']}", json=_broken(body), headers=account.headers
    )
    assert_problem(response, 422, "invalid-flow")
    assert await _stored(runtime) == (1, 1)
    current = (await client.get(f"/v1/flows/{created['id']}", headers=account.headers)).json()
    assert current["version"] == 1


@pytest.mark.parametrize("kind", ["mailbox", "media", "schedule"])
async def test_another_accounts_mailbox_media_or_schedule_is_refused(
    client: httpx.AsyncClient, account: TestAccount, other_account: TestAccount, kind: str
) -> None:
    mine = await _valid_body(client, account)
    theirs = await _valid_body(client, other_account)
    node = {"mailbox": 3, "media": 2, "schedule": 1}[kind]
    mine["nodes"][node] = theirs["nodes"][node]
    response = await client.post("/v1/flows", json=mine, headers=account.headers)
    problem = assert_problem(response, 422, "invalid-flow")
    assert [(e["node_id"], "not found" in e["message"]) for e in problem["errors"]] == [
        (mine["nodes"][node]["id"], True)
    ]


async def test_another_accounts_flow_is_not_found(
    client: httpx.AsyncClient, account: TestAccount, other_account: TestAccount
) -> None:
    body = await _valid_body(client, account)
    created = await _create(client, account, body)
    url = f"/v1/flows/{created['id']}"
    headers = other_account.headers
    assert_problem(await client.get(url, headers=headers), 404)
    assert_problem(await client.get(f"{url}/versions/1", headers=headers), 404)
    assert_problem(await client.put(url, json=body, headers=headers), 404)
    assert_problem(await client.delete(url, headers=headers), 404)
    assert (await client.get("/v1/flows", headers=headers)).json()["items"] == []
    assert (await client.get(url, headers=account.headers)).status_code == 200


async def test_delete(client: httpx.AsyncClient, account: TestAccount, runtime: Runtime) -> None:
    body = await _valid_body(client, account)
    created = await _create(client, account, body)
    url = f"/v1/flows/{created['id']}"
    assert (await client.put(url, json=body, headers=account.headers)).status_code == 200
    response = await client.delete(url, headers=account.headers)
    assert response.status_code == 204
    assert await _stored(runtime) == (0, 0)
    assert_problem(await client.get(url, headers=account.headers), 404)
    assert_problem(await client.delete(url, headers=account.headers), 404)
    assert_problem(await client.get("/v1/flows/not-an-id", headers=account.headers), 404)


async def test_too_many_nodes_is_one_error(client: httpx.AsyncClient, account: TestAccount) -> None:
    nodes = [_node(f"n{i}", "hangup") for i in range(201)]
    body = {"name": "Big", "nodes": nodes, "edges": []}
    problem = assert_problem(
        await client.post("/v1/flows", json=body, headers=account.headers), 422
    )
    assert [e["field"] for e in problem["errors"]] == ["nodes"]


async def test_a_graph_with_nan_is_refused_not_stored(
    client: httpx.AsyncClient, account: TestAccount, runtime: Runtime
) -> None:
    body = await _valid_body(client, account)
    raw = httpx.Request("POST", "/", json=body).content.decode().replace('"x":1', '"x":NaN', 1)
    headers = {**account.headers, "Content-Type": "application/json"}
    response = await client.post("/v1/flows", content=raw, headers=headers)
    assert "NaN" in raw
    problem = assert_problem(response, 422, "invalid-flow")
    assert [e["field"] for e in problem["errors"]] == ["body"]
    assert await _stored(runtime) == (0, 0)


async def test_a_mailbox_a_current_flow_leads_to_cannot_be_deleted(
    client: httpx.AsyncClient, account: TestAccount
) -> None:
    body = await _valid_body(client, account)
    created = await _create(client, account, body)
    mailbox_id = body["nodes"][3]["data"]["mailboxId"]
    refused = await client.delete(f"/v1/mailboxes/{mailbox_id}", headers=account.headers)
    assert_problem(refused, 409, "mailbox-in-use")
    assert created["id"] in refused.json()["detail"]

    other = await create_mailbox(client, account)
    moved = {**body, "nodes": [*body["nodes"][:3], _node("vm", "voicemail", mailboxId=other["id"])]}
    put = await client.put(f"/v1/flows/{created['id']}", json=moved, headers=account.headers)
    assert put.status_code == 200, put.text
    # only the current version counts: version 1 still names the mailbox
    gone = await client.delete(f"/v1/mailboxes/{mailbox_id}", headers=account.headers)
    assert gone.status_code == 204, gone.text
