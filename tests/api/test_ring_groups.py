"""/v1/ring-groups on both backends: CRUD, validation, references, isolation, in-use refusal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from afterbeep.domain.ids import new_id
from afterbeep.domain.users import Device, User
from tests.api.test_numbers import make_mailbox
from tests.api.test_schedules import problem_of
from tests.conftest import TestAccount as Acct

U1, U2 = new_id("usr"), new_id("usr")
DEV = "dev_01jg8asp59ps9rtt7azhrhvcre"


async def add_users(
    runtime: Runtime, account_id: str, *user_ids: str, device: str | None = None
) -> None:
    """The account's users (agents) `user_ids`, the first with the device `device`: members
    are checked against the account's users."""
    now = datetime.now(UTC)
    async with runtime.uow() as uow:
        for n, user_id in enumerate(user_ids):
            await uow.users.add(User(user_id, account_id, f"7{n:03d}", "", now, now, is_agent=True))
        if device is not None:
            await uow.devices.add(
                Device(
                    device,
                    account_id,
                    user_ids[0],
                    f"dev-{device[-8:]}",
                    "afterbeep",
                    "",
                    "",
                    now,
                    now,
                )
            )


@pytest.fixture(autouse=True)
async def _members(runtime: Runtime, account: Acct) -> None:
    await add_users(runtime, account.id, U1, U2, device=DEV)


async def add_number_to(runtime: Runtime, account_id: str, kind: str, dest_id: str) -> str:
    """A number row leading to `kind`/`dest_id`, written directly (numbers refuse these kinds
    until they are routed)."""
    number_id = new_id("num")
    now = datetime.now(UTC)
    async with runtime.db.begin() as conn:
        await conn.execute(
            insert(t.numbers).values(
                id=number_id,
                account_id=account_id,
                e164="+1202555" + str(int(now.timestamp() * 1000))[-4:],
                dest_kind="hangup",
                dest_id=None,
                closed_dest_kind=kind,
                closed_dest_id=dest_id,
                created_at=now,
                updated_at=now,
            )
        )
    return number_id


async def count(runtime: Runtime, table: Any) -> int:
    async with runtime.db.begin() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_crud(client: httpx.AsyncClient, runtime: Runtime, account: Acct) -> None:
    vm = await make_mailbox(runtime, account.id)
    created = await client.post(
        "/v1/ring-groups",
        json={
            "name": "Sales",
            "strategy": "sequential",
            "ring_timeout_sec": 20,
            "members": [
                {"user_id": U1, "position": 2, "timeout_sec": 10},
                {"device_id": DEV, "position": 1, "delay_sec": 5},
            ],
            "exit_dest_kind": "voicemail",
            "exit_dest_id": vm,
        },
        headers=account.headers,
    )
    assert created.status_code == 201, created.text
    group = created.json()
    assert group["id"].startswith("rg_")
    assert created.headers["location"] == f"/v1/ring-groups/{group['id']}"
    assert group["strategy"] == "sequential" and group["ring_timeout_sec"] == 20
    assert group["members"] == [
        {"user_id": U1, "device_id": None, "position": 2, "delay_sec": 0.0, "timeout_sec": 10.0},
        {"user_id": None, "device_id": DEV, "position": 1, "delay_sec": 5.0, "timeout_sec": None},
    ]
    assert (group["exit_dest_kind"], group["exit_dest_id"]) == ("voicemail", vm)
    assert group["closed_dest_kind"] is None and "account_id" not in group

    got = await client.get(f"/v1/ring-groups/{group['id']}", headers=account.headers)
    assert got.status_code == 200 and got.json() == group

    patched = await client.patch(
        f"/v1/ring-groups/{group['id']}",
        json={"strategy": "round_robin", "exit_dest_kind": "hangup", "members": []},
        headers=account.headers,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["strategy"] == "round_robin" and body["members"] == []
    assert (body["exit_dest_kind"], body["exit_dest_id"]) == ("hangup", None)
    assert body["name"] == "Sales" and body["ring_timeout_sec"] == 20

    listed = await client.get("/v1/ring-groups", headers=account.headers)
    assert [g["id"] for g in listed.json()["items"]] == [group["id"]]

    deleted = await client.delete(f"/v1/ring-groups/{group['id']}", headers=account.headers)
    assert deleted.status_code == 204
    gone = await client.get(f"/v1/ring-groups/{group['id']}", headers=account.headers)
    problem_of(gone, 404, "not-found")


async def test_defaults(client: httpx.AsyncClient, account: Acct) -> None:
    r = await client.post("/v1/ring-groups", json={"name": "Desk"}, headers=account.headers)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["strategy"], body["ring_timeout_sec"], body["members"]) == ("ring_all", 30, [])
    assert body["exit_dest_kind"] is None


async def test_validation_names_the_field(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({}, "name", "invalid-input"),
        ({"name": "x", "ring_timeout_sec": 0}, "ring_timeout_sec", "invalid-input"),
        ({"name": "x", "members": [{}]}, "members[0]", "invalid-input"),
        ({"name": "x", "members": [{"user_id": DEV}]}, "members[0].user_id", "invalid-input"),
        (
            {"name": "x", "members": [{"user_id": U1}, {"user_id": U1}]},
            "members[1]",
            "invalid-input",
        ),
        ({"name": "x", "exit_dest_id": new_id("vm")}, "exit_dest_kind", "invalid-input"),
        (
            {"name": "x", "exit_dest_kind": "voicemail", "exit_dest_id": new_id("vm")},
            "exit_dest_id",
            "unknown-reference",
        ),
        (
            {"name": "x", "exit_dest_kind": "queue", "exit_dest_id": new_id("vm")},
            "exit_dest_id",
            "unknown-reference",
        ),
        ({"name": "x", "moh_media_id": new_id("media")}, "moh_media_id", "unknown-reference"),
        ({"name": "x", "schedule_id": new_id("sch")}, "schedule_id", "unknown-reference"),
    ]
    for body, field, error_id in cases:
        r = await client.post("/v1/ring-groups", json=body, headers=account.headers)
        problem = problem_of(r, 422, error_id)
        assert problem["errors"][0]["field"] == field, (body, problem)
    bad = await client.post(
        "/v1/ring-groups", json={"name": "x", "strategy": "random"}, headers=account.headers
    )
    problem_of(bad, 422, "validation-failed")
    assert await count(runtime, t.ring_groups) == 0


async def test_accounts_are_isolated(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct, other_account: Acct
) -> None:
    theirs_vm = await make_mailbox(runtime, other_account.id)
    theirs = await client.post(
        "/v1/ring-groups", json={"name": "Theirs"}, headers=other_account.headers
    )
    group_id = theirs.json()["id"]
    for method in ("get", "delete"):
        r = await client.request(method, f"/v1/ring-groups/{group_id}", headers=account.headers)
        problem_of(r, 404, "not-found")
    r = await client.patch(
        f"/v1/ring-groups/{group_id}", json={"name": "mine"}, headers=account.headers
    )
    problem_of(r, 404, "not-found")
    listed = await client.get("/v1/ring-groups", headers=account.headers)
    assert listed.json()["items"] == []
    for kind, dest_id in (("voicemail", theirs_vm), ("ring_group", group_id)):
        r = await client.post(
            "/v1/ring-groups",
            json={"name": "x", "exit_dest_kind": kind, "exit_dest_id": dest_id},
            headers=account.headers,
        )
        problem_of(r, 422, "unknown-reference")
    problem_of(
        await client.get("/v1/ring-groups/not-an-id", headers=account.headers), 404, "not-found"
    )


async def test_a_ring_group_a_number_leads_to_cannot_be_deleted(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    r = await client.post("/v1/ring-groups", json={"name": "Sales"}, headers=account.headers)
    group_id = r.json()["id"]
    number_id = await add_number_to(runtime, account.id, "ring_group", group_id)
    refused = await client.delete(f"/v1/ring-groups/{group_id}", headers=account.headers)
    assert number_id in problem_of(refused, 409, "ring-group-in-use")["detail"]
    async with runtime.db.begin() as conn:
        await conn.execute(t.numbers.delete().where(t.numbers.c.id == number_id))
    ok = await client.delete(f"/v1/ring-groups/{group_id}", headers=account.headers)
    assert ok.status_code == 204


async def test_a_ring_group_can_exit_to_a_queue_and_another_group(
    client: httpx.AsyncClient, account: Acct
) -> None:
    queue = await client.post("/v1/queues", json={"name": "Support"}, headers=account.headers)
    first = await client.post("/v1/ring-groups", json={"name": "A"}, headers=account.headers)
    for kind, dest_id in (("queue", queue.json()["id"]), ("ring_group", first.json()["id"])):
        r = await client.post(
            "/v1/ring-groups",
            json={"name": "B", "exit_dest_kind": kind, "exit_dest_id": dest_id},
            headers=account.headers,
        )
        assert r.status_code == 201, r.text
