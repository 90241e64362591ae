"""/v1/schedules and /v1/account on both backends: CRUD, rule validation, isolation, state."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import TestAccount as Acct

MONDAY_9_TO_6 = {"kind": "weekly", "dow": 1, "start_time": "09:00", "end_time": "18:00"}


def problem_of(response: httpx.Response, status: int, error_id: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["error_id"] == error_id, body
    return body


async def create(client: httpx.AsyncClient, account: Acct, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/schedules", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def state_at(
    client: httpx.AsyncClient, account: Acct, schedule_id: str, at: str
) -> dict[str, Any]:
    response = await client.get(
        f"/v1/schedules/{schedule_id}/state", params={"at": at}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def test_crud(client: httpx.AsyncClient, account: Acct) -> None:
    created = await client.post(
        "/v1/schedules",
        json={"name": "Office", "timezone": "America/New_York", "rules": [MONDAY_9_TO_6]},
        headers=account.headers,
    )
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["id"].startswith("sch_")
    assert created.headers["location"] == f"/v1/schedules/{schedule['id']}"
    assert schedule["name"] == "Office" and schedule["timezone"] == "America/New_York"
    assert schedule["rules"] == [
        {**MONDAY_9_TO_6, "start_date": None, "end_date": None, "is_closed": False}
    ]
    assert schedule["created_at"].endswith("Z") and "account_id" not in schedule

    got = await client.get(f"/v1/schedules/{schedule['id']}", headers=account.headers)
    assert got.status_code == 200 and got.json() == schedule

    holiday = {"kind": "date", "start_date": "2026-12-25", "is_closed": True}
    patched = await client.patch(
        f"/v1/schedules/{schedule['id']}",
        json={"timezone": None, "rules": [MONDAY_9_TO_6, holiday]},
        headers=account.headers,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["timezone"] is None and body["name"] == "Office" and len(body["rules"]) == 2
    assert body["rules"][1]["kind"] == "date" and body["rules"][1]["is_closed"] is True

    renamed = await client.patch(
        f"/v1/schedules/{schedule['id']}", json={"name": "HQ"}, headers=account.headers
    )
    assert renamed.status_code == 200 and renamed.json()["rules"] == body["rules"]

    second = await create(client, account, name="Shop")
    listed = await client.get("/v1/schedules", headers=account.headers)
    assert [s["id"] for s in listed.json()["items"]] == [second["id"], schedule["id"]]
    first_page = await client.get("/v1/schedules", params={"limit": 1}, headers=account.headers)
    cursor = first_page.json()["next_cursor"]
    assert [s["id"] for s in first_page.json()["items"]] == [second["id"]] and cursor
    rest = await client.get(
        "/v1/schedules", params={"limit": 1, "cursor": cursor}, headers=account.headers
    )
    assert [s["id"] for s in rest.json()["items"]] == [schedule["id"]]

    deleted = await client.delete(f"/v1/schedules/{schedule['id']}", headers=account.headers)
    assert deleted.status_code == 204
    problem_of(
        await client.get(f"/v1/schedules/{schedule['id']}", headers=account.headers),
        404,
        "not-found",
    )


async def test_invalid_rules_name_the_field(client: httpx.AsyncClient, account: Acct) -> None:
    bad_end = {**MONDAY_9_TO_6, "end_time": "25:00"}
    response = await client.post(
        "/v1/schedules",
        json={"name": "Office", "rules": [MONDAY_9_TO_6, bad_end]},
        headers=account.headers,
    )
    body = problem_of(response, 422, "invalid-input")
    assert body["errors"] == [{"field": "rules[1].end_time", "message": body["errors"][0]["message"]}]

    no_dow = {"kind": "weekly", "start_time": "09:00", "end_time": "18:00"}
    response = await client.post(
        "/v1/schedules", json={"name": "Office", "rules": [no_dow]}, headers=account.headers
    )
    assert problem_of(response, 422, "invalid-input")["errors"][0]["field"] == "rules[0].dow"

    unknown = await client.post(
        "/v1/schedules",
        json={"name": "Office", "timezone": "Mars/Olympus", "rules": []},
        headers=account.headers,
    )
    assert problem_of(unknown, 422, "invalid-input")["errors"][0]["field"] == "timezone"

    schedule = await create(client, account, name="Office", rules=[MONDAY_9_TO_6])
    bad_patch = await client.patch(
        f"/v1/schedules/{schedule['id']}",
        json={"rules": [{"kind": "monthly"}]},
        headers=account.headers,
    )
    assert problem_of(bad_patch, 422, "invalid-input")["errors"][0]["field"] == "rules[0].kind"
    unchanged = await client.get(f"/v1/schedules/{schedule['id']}", headers=account.headers)
    assert unchanged.json() == schedule
    listed = await client.get("/v1/schedules", headers=account.headers)
    assert len(listed.json()["items"]) == 1

    naive = await client.get(
        f"/v1/schedules/{schedule['id']}/state",
        params={"at": "2026-12-07T10:00:00"},
        headers=account.headers,
    )
    assert problem_of(naive, 422, "invalid-input")["errors"][0]["field"] == "at"


async def test_another_accounts_schedule_is_not_found(
    client: httpx.AsyncClient, account: Acct, other_account: Acct
) -> None:
    schedule = await create(client, account, name="Office", rules=[MONDAY_9_TO_6])
    path = f"/v1/schedules/{schedule['id']}"
    headers = other_account.headers
    problem_of(await client.get(path, headers=headers), 404, "not-found")
    problem_of(await client.get(path + "/state", headers=headers), 404, "not-found")
    problem_of(await client.patch(path, json={"name": "x"}, headers=headers), 404, "not-found")
    problem_of(await client.delete(path, headers=headers), 404, "not-found")
    theirs = await client.get("/v1/schedules", headers=headers)
    assert theirs.json()["items"] == []
    problem_of(
        await client.get("/v1/schedules/not-an-id", headers=account.headers), 404, "not-found"
    )
    assert (await client.get(path, headers=account.headers)).json() == schedule


async def test_state_at_chosen_instants(client: httpx.AsyncClient, account: Acct) -> None:
    schedule = await create(
        client,
        account,
        name="Office",
        timezone="America/New_York",
        rules=[
            MONDAY_9_TO_6,
            {"kind": "date_range", "start_date": "2026-12-21", "end_date": "2026-12-22",
             "is_closed": True},
        ],
    )  # fmt: skip
    sid = schedule["id"]
    # Monday 2026-12-07: New York is UTC-5 in December.
    before_close = await state_at(client, account, sid, "2026-12-07T22:59:00Z")
    assert before_close == {
        "state": "in_hours", "at": "2026-12-07T22:59:00.000Z", "timezone": "America/New_York"
    }
    at_close = await state_at(client, account, sid, "2026-12-07T18:00:00-05:00")
    assert at_close["state"] == "out_of_hours" and at_close["at"] == "2026-12-07T23:00:00.000Z"
    # Monday 2026-12-21 10:00 local, inside the weekly interval but in the closed range.
    holiday = await state_at(client, account, sid, "2026-12-21T15:00:00Z")
    assert holiday["state"] == "holiday"
    # Monday 2026-06-01 (summer, UTC-4): 17:59 local is 21:59Z; 18:00 local is 22:00Z.
    assert (await state_at(client, account, sid, "2026-06-01T21:59:00Z"))["state"] == "in_hours"
    assert (await state_at(client, account, sid, "2026-06-01T22:00:00Z"))["state"] == "out_of_hours"

    now = await client.get(f"/v1/schedules/{sid}/state", headers=account.headers)
    assert now.status_code == 200 and now.json()["state"] in {"in_hours", "out_of_hours", "holiday"}


async def test_account_timezone_used_when_schedule_has_none(
    client: httpx.AsyncClient, account: Acct
) -> None:
    schedule = await create(client, account, name="Office", rules=[MONDAY_9_TO_6])
    sid = schedule["id"]
    # Monday 2026-12-07 23:30Z: 23:30 in UTC (closed), 18:30 in New York (closed),
    # 15:30 in Los Angeles (open).
    utc = await state_at(client, account, sid, "2026-12-07T23:30:00Z")
    assert utc["state"] == "out_of_hours" and utc["timezone"] == "UTC"

    patched = await client.patch(
        "/v1/account", json={"timezone": "America/Los_Angeles"}, headers=account.headers
    )
    assert patched.status_code == 200, patched.text
    local = await state_at(client, account, sid, "2026-12-07T23:30:00Z")
    assert local == {
        "state": "in_hours", "at": "2026-12-07T23:30:00.000Z", "timezone": "America/Los_Angeles"
    }


async def test_account_settings(
    client: httpx.AsyncClient, account: Acct, other_account: Acct
) -> None:
    got = await client.get("/v1/account", headers=account.headers)
    assert got.status_code == 200
    assert got.json() == {
        "id": account.id, "name": got.json()["name"], "timezone": "UTC", "language": "en",
        "allow_device_outbound": False, "device_outbound_setup_id": None,
    }  # fmt: skip

    patched = await client.patch(
        "/v1/account",
        json={"timezone": "Europe/Berlin", "language": "en-us"},
        headers=account.headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["timezone"] == "Europe/Berlin" and patched.json()["language"] == "en-US"
    again = await client.get("/v1/account", headers=account.headers)
    assert again.json() == patched.json()
    theirs = await client.get("/v1/account", headers=other_account.headers)
    assert theirs.json()["timezone"] == "UTC" and theirs.json()["language"] == "en"

    for bad in ("Mars/Olympus", "", "../etc/passwd", "UTC+5"):
        response = await client.patch(
            "/v1/account", json={"timezone": bad}, headers=account.headers
        )
        assert response.status_code == 422, (bad, response.text)
    problem_of(
        await client.patch("/v1/account", json={"timezone": "Mars/Olympus"}, headers=account.headers),
        422,
        "invalid-input",
    )
    for bad_language in ("english", "e", "en_US", "en-"):
        response = await client.patch(
            "/v1/account", json={"language": bad_language}, headers=account.headers
        )
        body = problem_of(response, 422, "invalid-input")
        assert body["errors"][0]["field"] == "language"
    null_tz = await client.patch("/v1/account", json={"timezone": None}, headers=account.headers)
    assert null_tz.status_code == 422
    unknown = await client.patch("/v1/account", json={"name": "x"}, headers=account.headers)
    assert unknown.status_code == 422
    final = await client.get("/v1/account", headers=account.headers)
    assert final.json() == patched.json()


async def test_state_at_the_edges_of_time_is_refused_not_crashed(
    client: httpx.AsyncClient, account: Acct
) -> None:
    schedule = await create(
        client, account, name="Kiribati", timezone="Pacific/Kiritimati", rules=[MONDAY_9_TO_6]
    )
    for at in ("9999-12-31T23:59:59-12:00", "9999-12-31T23:00:00Z", "0001-01-01T00:00:00+14:00"):
        response = await client.get(
            f"/v1/schedules/{schedule['id']}/state", params={"at": at}, headers=account.headers
        )
        assert problem_of(response, 422, "invalid-input")["errors"][0]["field"] == "at", at
