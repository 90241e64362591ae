"""/v1/queues and /v1/agents on both backends: CRUD, validation, isolation, in-use refusal,
agents' statuses and the live statistics."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from afterbeep.domain.ids import new_id
from afterbeep.domain.queues import AgentStatus
from tests.api.test_flows import _edge, _node
from tests.api.test_numbers import make_mailbox
from tests.api.test_ring_groups import add_number_to, add_users, count
from tests.api.test_schedules import problem_of
from tests.conftest import TestAccount as Acct

A, B = sorted([new_id("usr"), new_id("usr")])


@pytest.fixture(autouse=True)
async def _agents(runtime: Runtime, account: Acct) -> None:
    await add_users(runtime, account.id, A, B)


async def create(client: httpx.AsyncClient, account: Acct, **body: Any) -> dict[str, Any]:
    r = await client.post("/v1/queues", json={"name": "Support", **body}, headers=account.headers)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


async def test_crud_with_every_field(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    vm = await make_mailbox(runtime, account.id)
    fields = {
        "strategy": "fewest_calls",
        "agent_ring_timeout_sec": 12,
        "max_wait_sec": 90,
        "wrap_up_sec": 5,
        "max_no_answer": 2,
        "announce_position": 1,
        "announce_first_sec": 20,
        "announce_interval_sec": 40,
        "max_queued": 7,
        "language": "es",
        "members": [{"user_id": A, "tier_level": 2}, {"user_id": B}],
        "timeout_dest_kind": "voicemail",
        "timeout_dest_id": vm,
        "abandon_dest_kind": "voicemail",
        "abandon_dest_id": vm,
        "no_agents_dest_kind": "voicemail",
        "no_agents_dest_id": vm,
        "queue_full_dest_kind": "hangup",
    }
    created = await client.post(
        "/v1/queues", json={"name": "Support", **fields}, headers=account.headers
    )
    assert created.status_code == 201, created.text
    queue = created.json()
    assert queue["id"].startswith("q_")
    assert created.headers["location"] == f"/v1/queues/{queue['id']}"
    expected = {
        **fields,
        "announce_position": True,
        "members": [{"user_id": A, "tier_level": 2}, {"user_id": B, "tier_level": 1}],
        "queue_full_dest_id": None,
        "abandon_key": "*",
    }
    assert {k: queue[k] for k in expected} == expected
    got = await client.get(f"/v1/queues/{queue['id']}", headers=account.headers)
    assert got.json() == queue

    patched = await client.patch(
        f"/v1/queues/{queue['id']}",
        json={"max_wait_sec": 0, "timeout_dest_kind": None, "members": [{"user_id": B}]},
        headers=account.headers,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["max_wait_sec"] == 0 and body["timeout_dest_kind"] is None
    assert body["members"] == [{"user_id": B, "tier_level": 1}]
    assert body["wrap_up_sec"] == 5 and body["abandon_dest_id"] == vm

    listed = await client.get("/v1/queues", headers=account.headers)
    assert [q["id"] for q in listed.json()["items"]] == [queue["id"]]
    assert (
        await client.delete(f"/v1/queues/{queue['id']}", headers=account.headers)
    ).status_code == 204
    problem_of(
        await client.get(f"/v1/queues/{queue['id']}", headers=account.headers), 404, "not-found"
    )


async def test_defaults(client: httpx.AsyncClient, account: Acct) -> None:
    queue = await create(client, account)
    assert queue["strategy"] == "longest_idle"
    assert (queue["agent_ring_timeout_sec"], queue["max_wait_sec"], queue["wrap_up_sec"]) == (
        15,
        300,
        10,
    )
    assert queue["max_queued"] == 0 and queue["members"] == []


async def test_validation_names_the_field(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"name": None}, "name", "invalid-input"),
        ({"agent_ring_timeout_sec": 0}, "agent_ring_timeout_sec", "invalid-input"),
        ({"wrap_up_sec": None}, "wrap_up_sec", "invalid-input"),
        (
            {"members": [{"user_id": "dev_01jg8asp59ps9rtt7azhrhvcre"}]},
            "members[0].user_id",
            "invalid-input",
        ),
        ({"members": [{"user_id": A}, {"user_id": A}]}, "members[1].user_id", "invalid-input"),
        ({"abandon_dest_kind": "voicemail"}, "abandon_dest_id", "invalid-input"),
        (
            {"timeout_dest_kind": "flow", "timeout_dest_id": new_id("flow")},
            "timeout_dest_id",
            "unknown-reference",
        ),
        ({"moh_media_id": "media_x"}, "moh_media_id", "unknown-reference"),
    ]
    for fields, field, error_id in cases:
        r = await client.post("/v1/queues", json={"name": "x", **fields}, headers=account.headers)
        problem = problem_of(r, 422, error_id)
        assert problem["errors"][0]["field"] == field, (fields, problem)
    for fields in ({"max_wait_sec": -1}, {"strategy": "random"}, {"members": [{"tier_level": 1}]}):
        r = await client.post("/v1/queues", json={"name": "x", **fields}, headers=account.headers)
        problem_of(r, 422, "validation-failed")
    assert await count(runtime, t.queues) == 0


async def test_accounts_are_isolated(
    client: httpx.AsyncClient, account: Acct, other_account: Acct
) -> None:
    refused = await client.post(
        "/v1/queues", json={"name": "x", "members": [{"user_id": A}]}, headers=other_account.headers
    )
    problem_of(refused, 422, "unknown-reference")  # A is an agent of the other account
    theirs = await create(client, other_account)
    for method in ("get", "delete"):
        r = await client.request(method, f"/v1/queues/{theirs['id']}", headers=account.headers)
        problem_of(r, 404, "not-found")
    stats = await client.get(f"/v1/queues/{theirs['id']}/stats", headers=account.headers)
    problem_of(stats, 404, "not-found")
    assert (await client.get("/v1/queues", headers=account.headers)).json()["items"] == []
    assert (await client.get("/v1/agents", headers=other_account.headers)).json()["items"] == []
    problem_of(await client.get(f"/v1/agents/{A}", headers=other_account.headers), 404, "not-found")
    mine = await client.patch(
        f"/v1/agents/{A}", json={"status": "available"}, headers=account.headers
    )
    assert mine.status_code == 200
    theirs_agent = await client.patch(
        f"/v1/agents/{A}", json={"status": "available"}, headers=other_account.headers
    )
    problem_of(theirs_agent, 404, "not-found")


async def test_a_queue_a_number_leads_to_cannot_be_deleted(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    queue = await create(client, account)
    number_id = await add_number_to(runtime, account.id, "queue", queue["id"])
    refused = await client.delete(f"/v1/queues/{queue['id']}", headers=account.headers)
    assert number_id in problem_of(refused, 409, "queue-in-use")["detail"]


async def test_agents_status_and_stats(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    queue = await create(client, account, members=[{"user_id": A}, {"user_id": B, "tier_level": 2}])
    listed = await client.get("/v1/agents", headers=account.headers)
    assert [(a["user_id"], a["status"], a["queue_ids"]) for a in listed.json()["items"]] == [
        (A, "offline", [queue["id"]]),
        (B, "offline", [queue["id"]]),
    ]
    r = await client.patch(f"/v1/agents/{A}", json={"status": "available"}, headers=account.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["state"]) == ("available", "waiting")
    r = await client.patch(f"/v1/agents/{B}", json={"status": "on_break"}, headers=account.headers)
    assert r.json()["status"] == "on_break"
    problem_of(
        await client.patch(f"/v1/agents/{A}", json={"status": "busy"}, headers=account.headers),
        422,
        "validation-failed",
    )
    problem_of(
        await client.patch(
            "/v1/agents/usr_x", json={"status": "available"}, headers=account.headers
        ),
        404,
        "not-found",
    )
    async with runtime.uow() as uow:
        assert await uow.queues.statuses(account.id) == {
            A: AgentStatus.AVAILABLE,
            B: AgentStatus.ON_BREAK,
        }

    # A caller waits (joined through the engine the queue application uses).
    engine = runtime.queue_engine
    async with runtime.uow() as uow:
        stored = await uow.queues.get(account.id, queue["id"])
    assert stored is not None
    await engine.load_statuses(stored)
    assert await engine.join(stored, "call-1") is None
    stats = await client.get(f"/v1/queues/{queue['id']}/stats", headers=account.headers)
    assert stats.status_code == 200, stats.text
    body = stats.json()
    assert body["waiting"] == 1 and body["abandoned"] == 0
    assert body["agents_by_state"]["waiting"] == 1 and body["agents_by_state"]["on_break"] == 1
    refused = await client.delete(f"/v1/queues/{queue['id']}", headers=account.headers)
    problem_of(refused, 409, "queue-in-use")
    await engine.left(stored, "call-1", None, hung_up=True)
    body = (await client.get(f"/v1/queues/{queue['id']}/stats", headers=account.headers)).json()
    assert (body["waiting"], body["abandoned"]) == (0, 1)


async def test_flows_use_queues_and_ring_groups_of_the_account_and_hold_them(
    client: httpx.AsyncClient, account: Acct, other_account: Acct
) -> None:
    queue = await create(client, account)
    group = (
        await client.post("/v1/ring-groups", json={"name": "Sales"}, headers=account.headers)
    ).json()
    theirs = await create(client, other_account)
    made = await client.post("/v1/schedules", json={"name": "Office"}, headers=account.headers)
    schedule = made.json()["id"]

    def body(queue_id: str, group_id: str) -> dict[str, Any]:
        return {
            "name": "Front desk",
            "nodes": [
                _node("start", "entry", trigger="inbound"),
                _node("hours", "timeCondition", scheduleId=schedule),
                _node("q", "enqueue", queueId=queue_id),
                _node("rg", "ringGroup", ringGroupId=group_id),
            ],
            "edges": [
                _edge("e1", "start", "default", "hours"),
                _edge("e2", "hours", "in_hours", "rg"),
                _edge("e3", "hours", "out_of_hours", "q"),
            ],
        }

    refused = await client.post(
        "/v1/flows", json=body(theirs["id"], new_id("rg")), headers=account.headers
    )
    errors = {
        e["node_id"]: e["message"] for e in problem_of(refused, 422, "invalid-flow")["errors"]
    }
    assert "was not found" in errors["q"] and "was not found" in errors["rg"]
    saved = await client.post(
        "/v1/flows", json=body(queue["id"], group["id"]), headers=account.headers
    )
    assert saved.status_code == 201, saved.text
    flow_id = saved.json()["id"]
    for path in (f"/v1/queues/{queue['id']}", f"/v1/ring-groups/{group['id']}"):
        r = await client.delete(path, headers=account.headers)
        assert flow_id in problem_of(r, 409, r.json().get("error_id", ""))["detail"]
        assert r.json()["error_id"] in ("queue-in-use", "ring-group-in-use")
