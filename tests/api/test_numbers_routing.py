"""/v1/numbers routing fields (schedule, closed and holiday destinations, flows, hangup, status,
anonymous callers) and the deletion rules they bring: schedules, flows and mailboxes in use."""

from __future__ import annotations

from typing import Any

import httpx

from afterbeep.app import Runtime
from tests.api.test_numbers import US, count_numbers, make_mailbox, problem_of
from tests.conftest import TestAccount as Acct

MISSING_SCHEDULE = "sch_01j0jvpe0wzc6g05bktfew0xyx"
MISSING_FLOW = "flow_01jzqwjn803wtnhc445bvjenzc"


def _node(node_id: str, kind: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": kind, "data": {"kind": kind, **data}}


def _edge(edge_id: str, source: str, handle: str, target: str) -> dict[str, Any]:
    return {"id": edge_id, "source": source, "sourceHandle": handle, "target": target}


def straight_to_mailbox(mailbox_id: str) -> dict[str, Any]:
    return {
        "name": "Straight",
        "nodes": [
            _node("start", "entry", trigger="inbound"),
            _node("vm", "voicemail", mailboxId=mailbox_id),
        ],
        "edges": [_edge("e1", "start", "default", "vm")],
    }


def by_the_hours(mailbox_id: str, schedule_id: str) -> dict[str, Any]:
    return {
        "name": "Hours",
        "nodes": [
            _node("start", "entry", trigger="inbound"),
            _node("hours", "timeCondition", scheduleId=schedule_id),
            _node("vm", "voicemail", mailboxId=mailbox_id),
        ],
        "edges": [
            _edge("e1", "start", "default", "hours"),
            _edge("e2", "hours", "in_hours", "vm"),
            _edge("e3", "hours", "out_of_hours", "vm"),
        ],
    }


async def _post(client: httpx.AsyncClient, account: Acct, path: str, body: dict[str, Any]) -> str:
    response = await client.post(path, json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    created: str = response.json()["id"]
    return created


async def _schedule(client: httpx.AsyncClient, account: Acct) -> str:
    rules = [{"kind": "weekly", "dow": 1, "start_time": "09:00", "end_time": "18:00"}]
    return await _post(client, account, "/v1/schedules", {"name": "Office", "rules": rules})


async def _number(client: httpx.AsyncClient, account: Acct, **fields: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/numbers", json={"e164": US, **fields}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    number: dict[str, Any] = response.json()
    return number


async def test_every_routing_field_round_trips(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    vm = await make_mailbox(runtime, account.id)
    holiday_vm = await make_mailbox(runtime, account.id, "Holidays")
    schedule = await _schedule(client, account)
    flow = await _post(client, account, "/v1/flows", straight_to_mailbox(vm))

    plain = await _number(client, account, dest_kind="voicemail", dest_id=vm)
    assert plain["status"] == "active" and plain["allow_anonymous"] is True
    assert plain["holiday_dest_kind"] is None and plain["holiday_dest_id"] is None
    removed = await client.delete(f"/v1/numbers/{plain['id']}", headers=account.headers)
    assert removed.status_code == 204

    number = await _number(
        client,
        account,
        dest_kind="flow",
        dest_id=flow,
        schedule_id=schedule,
        closed_dest_kind="voicemail",
        closed_dest_id=vm,
        holiday_dest_kind="voicemail",
        holiday_dest_id=holiday_vm,
        status="disabled",
        allow_anonymous=0,
    )
    assert number["dest_kind"] == "flow" and number["dest_id"] == flow
    assert number["schedule_id"] == schedule
    assert (number["closed_dest_kind"], number["closed_dest_id"]) == ("voicemail", vm)
    assert (number["holiday_dest_kind"], number["holiday_dest_id"]) == ("voicemail", holiday_vm)
    assert number["status"] == "disabled" and number["allow_anonymous"] is False
    url = f"/v1/numbers/{number['id']}"
    assert (await client.get(url, headers=account.headers)).json() == number
    listed = (await client.get("/v1/numbers", headers=account.headers)).json()["items"]
    assert listed == [number]

    patched = await client.patch(
        url,
        json={
            "status": "active",
            "allow_anonymous": True,
            "holiday_dest_kind": "hangup",
            "holiday_dest_id": None,
        },
        headers=account.headers,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["status"] == "active" and body["allow_anonymous"] is True
    assert (body["holiday_dest_kind"], body["holiday_dest_id"]) == ("hangup", None)
    assert body["dest_id"] == flow and body["schedule_id"] == schedule

    cleared = await client.patch(
        url,
        json={"schedule_id": None, "dest_kind": "hangup", "dest_id": None},
        headers=account.headers,
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["schedule_id"] is None
    assert (cleared.json()["dest_kind"], cleared.json()["dest_id"]) == ("hangup", None)


async def test_hangup_needs_no_id_and_the_others_need_one(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    vm = await make_mailbox(runtime, account.id)
    cases: list[tuple[dict[str, Any], str, str]] = [
        (
            {"dest_kind": "hangup", "dest_id": vm},
            "dest_id",
            "must be null for a hangup destination",
        ),
        ({"dest_kind": "voicemail"}, "dest_id", "is required for a voicemail destination"),
        ({"dest_kind": "flow", "dest_id": None}, "dest_id", "is required for a flow destination"),
        (
            {"dest_kind": "hangup", "closed_dest_kind": "voicemail"},
            "closed_dest_id",
            "is required for a voicemail destination",
        ),
        (
            {"dest_kind": "hangup", "holiday_dest_id": vm},
            "holiday_dest_kind",
            "is required with holiday_dest_id",
        ),
        (
            {"dest_kind": "hangup", "holiday_dest_kind": "hangup", "holiday_dest_id": vm},
            "holiday_dest_id",
            "must be null for a hangup destination",
        ),
    ]
    for fields, field, message in cases:
        r = await client.post("/v1/numbers", json={"e164": US, **fields}, headers=account.headers)
        body = problem_of(r, 422, "invalid-input")
        assert body["errors"] == [{"field": field, "message": message}], fields
    for fields in ({"status": "virtual"}, {"allow_anonymous": "perhaps"}, {"status": None}):
        r = await client.post(
            "/v1/numbers",
            json={"e164": US, "dest_kind": "hangup", **fields},
            headers=account.headers,
        )
        problem_of(r, 422, "validation-failed")
    assert await count_numbers(runtime) == 0

    number = await _number(client, account, dest_kind="hangup")
    assert number["dest_kind"] == "hangup" and number["dest_id"] is None


async def test_every_reference_must_be_in_the_account(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct, other_account: Acct
) -> None:
    vm = await make_mailbox(runtime, account.id)
    their_vm = await make_mailbox(runtime, other_account.id)
    their_flow = await _post(client, other_account, "/v1/flows", straight_to_mailbox(their_vm))
    their_schedule = await _schedule(client, other_account)
    base = {"e164": US, "dest_kind": "voicemail", "dest_id": vm}
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"dest_kind": "flow", "dest_id": their_flow}, "dest_id", "flow"),
        ({"dest_kind": "flow", "dest_id": MISSING_FLOW}, "dest_id", "flow"),
        ({"dest_kind": "flow", "dest_id": vm}, "dest_id", "flow"),
        ({"closed_dest_kind": "flow", "closed_dest_id": their_flow}, "closed_dest_id", "flow"),
        (
            {"holiday_dest_kind": "voicemail", "holiday_dest_id": their_vm},
            "holiday_dest_id",
            "voicemail",
        ),
        ({"schedule_id": their_schedule}, "schedule_id", "schedule"),
        ({"schedule_id": MISSING_SCHEDULE}, "schedule_id", "schedule"),
        ({"schedule_id": "not-a-schedule"}, "schedule_id", "schedule"),
    ]
    for fields, field, what in cases:
        r = await client.post("/v1/numbers", json={**base, **fields}, headers=account.headers)
        body = problem_of(r, 422, "unknown-reference")
        assert body["errors"] == [
            {"field": field, "message": f"no {what} with this id in your account"}
        ], fields
    assert await count_numbers(runtime) == 0

    number = await _number(client, account, dest_kind="voicemail", dest_id=vm)
    repointed = await client.patch(
        f"/v1/numbers/{number['id']}",
        json={"schedule_id": their_schedule},
        headers=account.headers,
    )
    problem_of(repointed, 422, "unknown-reference")
    kept = await client.get(f"/v1/numbers/{number['id']}", headers=account.headers)
    assert kept.json()["schedule_id"] is None


async def test_a_schedule_in_use_cannot_be_deleted(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    vm = await make_mailbox(runtime, account.id)
    schedule = await _schedule(client, account)
    url = f"/v1/schedules/{schedule}"
    number = await _number(client, account, dest_kind="voicemail", dest_id=vm, schedule_id=schedule)
    flow = await _post(client, account, "/v1/flows", by_the_hours(vm, schedule))

    refused = await client.delete(url, headers=account.headers)
    detail = str(problem_of(refused, 409, "schedule-in-use")["detail"])
    assert number["id"] in detail and flow in detail

    unscheduled = await client.patch(
        f"/v1/numbers/{number['id']}", json={"schedule_id": None}, headers=account.headers
    )
    assert unscheduled.status_code == 200, unscheduled.text
    refused = await client.delete(url, headers=account.headers)
    detail = str(problem_of(refused, 409, "schedule-in-use")["detail"])
    assert flow in detail and number["id"] not in detail

    # only the flow's current version counts: an older one that tested it does not keep it
    resaved = await client.put(
        f"/v1/flows/{flow}", json=straight_to_mailbox(vm), headers=account.headers
    )
    assert resaved.status_code == 200, resaved.text
    assert (await client.delete(url, headers=account.headers)).status_code == 204
    problem_of(await client.get(url, headers=account.headers), 404, "not-found")


async def test_a_flow_a_number_routes_to_cannot_be_deleted(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    vm = await make_mailbox(runtime, account.id)
    flow = await _post(client, account, "/v1/flows", straight_to_mailbox(vm))
    url = f"/v1/flows/{flow}"
    number = await _number(client, account, dest_kind="voicemail", dest_id=vm)
    number_url = f"/v1/numbers/{number['id']}"
    for fields in (
        {"dest_kind": "flow", "dest_id": flow},
        {"closed_dest_kind": "flow", "closed_dest_id": flow},
        {"holiday_dest_kind": "flow", "holiday_dest_id": flow},
    ):
        reset = {
            "dest_kind": "voicemail",
            "dest_id": vm,
            "closed_dest_kind": None,
            "closed_dest_id": None,
            "holiday_dest_kind": None,
            "holiday_dest_id": None,
        }
        patched = await client.patch(number_url, json={**reset, **fields}, headers=account.headers)
        assert patched.status_code == 200, patched.text
        refused = await client.delete(url, headers=account.headers)
        assert number["id"] in str(problem_of(refused, 409, "flow-in-use")["detail"]), fields
    assert (await client.delete(number_url, headers=account.headers)).status_code == 204
    assert (await client.delete(url, headers=account.headers)).status_code == 204


async def test_a_mailbox_a_number_routes_to_on_holidays_cannot_be_deleted(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    vm = await make_mailbox(runtime, account.id)
    holiday_vm = await make_mailbox(runtime, account.id, "Holidays")
    number = await _number(
        client,
        account,
        dest_kind="voicemail",
        dest_id=vm,
        holiday_dest_kind="voicemail",
        holiday_dest_id=holiday_vm,
    )
    refused = await client.delete(f"/v1/mailboxes/{holiday_vm}", headers=account.headers)
    problem_of(refused, 409, "mailbox-in-use")
    assert (
        await client.patch(
            f"/v1/numbers/{number['id']}",
            json={"holiday_dest_kind": None, "holiday_dest_id": None},
            headers=account.headers,
        )
    ).status_code == 200
    deleted = await client.delete(f"/v1/mailboxes/{holiday_vm}", headers=account.headers)
    assert deleted.status_code == 204, deleted.text
