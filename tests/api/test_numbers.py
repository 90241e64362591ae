"""/v1/numbers on both backends: CRUD, normalisation, one owner per number, references, isolation."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlalchemy import func, insert, select

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from afterbeep.domain.ids import new_id
from afterbeep.domain.numbers import DestKind
from afterbeep.services.numbers import NumberService
from tests.conftest import TestAccount as Acct
from tests.conftest import on_backends

US = "+12025550123"


async def make_mailbox(runtime: Runtime, account_id: str, name: str = "Support") -> str:
    """A mailbox row written directly, so these tests do not depend on the mailbox API."""
    mailbox_id = new_id("vm")
    now = datetime.now(UTC)
    async with runtime.db.begin() as conn:
        await conn.execute(
            insert(t.mailboxes).values(
                id=mailbox_id,
                account_id=account_id,
                name=name,
                greeting_media_id=None,
                skip_instructions=False,
                quota_mb=200,
                notify_email=None,
                pin_secret_ref=None,
                language="en",
                timezone="UTC",
                max_message_seconds=180,
                min_message_seconds=2,
                silence_seconds=8,
                max_messages=100,
                attach_audio=True,
                created_at=now,
                updated_at=now,
            )
        )
    return mailbox_id


async def count_numbers(runtime: Runtime) -> int:
    async with runtime.db.begin() as conn:
        return int((await conn.execute(select(func.count()).select_from(t.numbers))).scalar_one())


def problem_of(response: httpx.Response, status: int, error_id: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, object] = response.json()
    assert body["error_id"] == error_id, body
    return body


async def test_crud(client: httpx.AsyncClient, runtime: Runtime, account: Acct) -> None:
    vm1 = await make_mailbox(runtime, account.id)
    vm2 = await make_mailbox(runtime, account.id, "After hours")
    created = await client.post(
        "/v1/numbers",
        json={"e164": "(202) 555-0123", "dest_kind": "voicemail", "dest_id": vm1},
        headers=account.headers,
    )
    assert created.status_code == 201, created.text
    number = created.json()
    assert number["id"].startswith("num_")
    assert created.headers["location"] == f"/v1/numbers/{number['id']}"
    assert number["e164"] == US
    assert number["dest_kind"] == "voicemail" and number["dest_id"] == vm1
    assert number["schedule_id"] is None and number["closed_dest_kind"] is None
    assert number["created_at"].endswith("Z") and number["updated_at"].endswith("Z")
    assert "account_id" not in number

    got = await client.get(f"/v1/numbers/{number['id']}", headers=account.headers)
    assert got.status_code == 200 and got.json() == number

    patched = await client.patch(
        f"/v1/numbers/{number['id']}",
        json={"closed_dest_kind": "voicemail", "closed_dest_id": vm2},
        headers=account.headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["closed_dest_id"] == vm2 and patched.json()["dest_id"] == vm1

    cleared = await client.patch(
        f"/v1/numbers/{number['id']}",
        json={"dest_id": vm2, "closed_dest_kind": None, "closed_dest_id": None},
        headers=account.headers,
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["dest_id"] == vm2 and cleared.json()["closed_dest_id"] is None

    listed = await client.get("/v1/numbers", headers=account.headers)
    assert listed.status_code == 200
    assert [n["id"] for n in listed.json()["items"]] == [number["id"]]

    deleted = await client.delete(f"/v1/numbers/{number['id']}", headers=account.headers)
    assert deleted.status_code == 204
    gone = await client.get(f"/v1/numbers/{number['id']}", headers=account.headers)
    problem_of(gone, 404, "not-found")
    assert await count_numbers(runtime) == 0


async def test_list_is_paginated(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    vm = await make_mailbox(runtime, account.id)
    for last in ("0101", "0102", "0103"):
        r = await client.post(
            "/v1/numbers",
            json={"e164": f"+1202555{last}", "dest_kind": "voicemail", "dest_id": vm},
            headers=account.headers,
        )
        assert r.status_code == 201, r.text
    first = (await client.get("/v1/numbers?limit=2", headers=account.headers)).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = (
        await client.get(
            f"/v1/numbers?limit=2&cursor={first['next_cursor']}", headers=account.headers
        )
    ).json()
    assert len(second["items"]) == 1 and second["next_cursor"] is None
    seen = [n["e164"] for n in first["items"] + second["items"]]
    assert seen == ["+12025550103", "+12025550102", "+12025550101"]


# Forms are read by the domain before the number is stored: one of them on PostgreSQL too.
@on_backends(
    "raw",
    [
        "2025550123",
        "(202) 555-0123",
        "+1 202-555-0123",
        "0012025550123",
        "00 1 202 555 0123",
        "011 1 202 555 0123",
    ],
    postgres=[1],
)
async def test_forms_are_normalised(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct, raw: str
) -> None:
    vm = await make_mailbox(runtime, account.id)
    r = await client.post(
        "/v1/numbers",
        json={"e164": raw, "dest_kind": "voicemail", "dest_id": vm},
        headers=account.headers,
    )
    assert r.status_code == 201, r.text
    assert r.json()["e164"] == US


@on_backends(
    "raw", ["12345", "not a number", "+1 202 555 012", "+999 1234567", "0" * 40], postgres=[0]
)
async def test_bad_number_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct, raw: str
) -> None:
    vm = await make_mailbox(runtime, account.id)
    r = await client.post(
        "/v1/numbers",
        json={"e164": raw, "dest_kind": "voicemail", "dest_id": vm},
        headers=account.headers,
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["error_id"] in ("invalid-phone-number", "validation-failed")
    if len(raw) <= 32:
        assert r.json()["error_id"] == "invalid-phone-number"
    assert await count_numbers(runtime) == 0


async def test_one_number_one_owner(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct, other_account: Acct
) -> None:
    vm = await make_mailbox(runtime, account.id)
    other_vm = await make_mailbox(runtime, other_account.id)
    first = await client.post(
        "/v1/numbers",
        json={"e164": US, "dest_kind": "voicemail", "dest_id": vm},
        headers=account.headers,
    )
    assert first.status_code == 201
    again = await client.post(
        "/v1/numbers",
        json={"e164": "2025550123", "dest_kind": "voicemail", "dest_id": vm},
        headers=account.headers,
    )
    problem_of(again, 409, "number-taken")
    elsewhere = await client.post(
        "/v1/numbers",
        json={"e164": "0012025550123", "dest_kind": "voicemail", "dest_id": other_vm},
        headers=other_account.headers,
    )
    problem_of(elsewhere, 409, "number-taken")
    assert await count_numbers(runtime) == 1

    second = await client.post(
        "/v1/numbers",
        json={"e164": "+12025550199", "dest_kind": "voicemail", "dest_id": vm},
        headers=account.headers,
    )
    assert second.status_code == 201
    moved = await client.patch(
        f"/v1/numbers/{second.json()['id']}", json={"e164": US}, headers=account.headers
    )
    problem_of(moved, 409, "number-taken")
    kept = await client.get(f"/v1/numbers/{second.json()['id']}", headers=account.headers)
    assert kept.json()["e164"] == "+12025550199"


async def test_references_must_be_in_the_account(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct, other_account: Acct
) -> None:
    mine = await make_mailbox(runtime, account.id)
    theirs = await make_mailbox(runtime, other_account.id)
    cases = [
        ({"dest_id": theirs}, "dest_id"),
        ({"dest_id": "vm_01jg8asp59ps9rtt7azhrhvcre"}, "dest_id"),
        ({"dest_id": "not-an-id\u0000"}, "dest_id"),
        (
            {"dest_id": mine, "closed_dest_kind": "voicemail", "closed_dest_id": theirs},
            "closed_dest_id",
        ),
    ]
    for fields, field in cases:
        r = await client.post(
            "/v1/numbers",
            json={"e164": US, "dest_kind": "voicemail", **fields},
            headers=account.headers,
        )
        body = problem_of(r, 422, "unknown-reference")
        assert body["errors"] == [
            {"field": field, "message": "no voicemail with this id in your account"}
        ]
    half = await client.post(
        "/v1/numbers",
        json={
            "e164": US,
            "dest_kind": "voicemail",
            "dest_id": mine,
            "closed_dest_kind": "voicemail",
        },
        headers=account.headers,
    )
    problem_of(half, 422, "invalid-input")
    assert await count_numbers(runtime) == 0

    created = await client.post(
        "/v1/numbers",
        json={"e164": US, "dest_kind": "voicemail", "dest_id": mine},
        headers=account.headers,
    )
    number_id = created.json()["id"]
    repointed = await client.patch(
        f"/v1/numbers/{number_id}", json={"dest_id": theirs}, headers=account.headers
    )
    problem_of(repointed, 422, "unknown-reference")
    assert (await client.get(f"/v1/numbers/{number_id}", headers=account.headers)).json()[
        "dest_id"
    ] == mine


async def test_unknown_destination_kinds(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    vm = await make_mailbox(runtime, account.id)
    for kind in ("conference", "forward"):
        r = await client.post(
            "/v1/numbers",
            json={"e164": US, "dest_kind": kind, "dest_id": vm},
            headers=account.headers,
        )
        problem_of(r, 422, "validation-failed")
    unknown_kind = await client.post(
        "/v1/numbers", json={"e164": US, "dest_kind": "fax", "dest_id": vm}, headers=account.headers
    )
    problem_of(unknown_kind, 422, "validation-failed")
    assert await count_numbers(runtime) == 0


async def test_bad_bodies(client: httpx.AsyncClient, runtime: Runtime, account: Acct) -> None:
    vm = await make_mailbox(runtime, account.id)
    extra = await client.post(
        "/v1/numbers",
        json={"e164": US, "dest_kind": "voicemail", "dest_id": vm, "owner": "me"},
        headers=account.headers,
    )
    problem_of(extra, 422, "validation-failed")
    missing = await client.post("/v1/numbers", json={"e164": US}, headers=account.headers)
    problem_of(missing, 422, "validation-failed")
    created = await client.post(
        "/v1/numbers",
        json={"e164": US, "dest_kind": "voicemail", "dest_id": vm},
        headers=account.headers,
    )
    number_id = created.json()["id"]
    null_dest = await client.patch(
        f"/v1/numbers/{number_id}", json={"dest_id": None}, headers=account.headers
    )
    assert problem_of(null_dest, 422, "invalid-input")["errors"] == [
        {"field": "dest_id", "message": "is required for a voicemail destination"}
    ]
    unknown = await client.patch(
        f"/v1/numbers/{number_id}", json={"colour": "red"}, headers=account.headers
    )
    problem_of(unknown, 422, "validation-failed")
    bad = await client.patch(
        f"/v1/numbers/{number_id}", json={"e164": "12"}, headers=account.headers
    )
    problem_of(bad, 422, "invalid-phone-number")
    assert (await client.get(f"/v1/numbers/{number_id}", headers=account.headers)).json()[
        "e164"
    ] == US
    no_auth = await client.get("/v1/numbers")
    problem_of(no_auth, 401, "unauthorized")


async def test_isolation(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct, other_account: Acct
) -> None:
    vm = await make_mailbox(runtime, account.id)
    other_vm = await make_mailbox(runtime, other_account.id)
    created = await client.post(
        "/v1/numbers",
        json={"e164": US, "dest_kind": "voicemail", "dest_id": vm},
        headers=account.headers,
    )
    number_id = created.json()["id"]
    h = other_account.headers
    problem_of(await client.get(f"/v1/numbers/{number_id}", headers=h), 404, "not-found")
    problem_of(
        await client.patch(f"/v1/numbers/{number_id}", json={"dest_id": other_vm}, headers=h),
        404,
        "not-found",
    )
    problem_of(await client.delete(f"/v1/numbers/{number_id}", headers=h), 404, "not-found")
    assert (await client.get("/v1/numbers", headers=h)).json()["items"] == []
    for malformed in ("nonsense", "a%00b", "num_" + "z" * 40):
        problem_of(await client.get(f"/v1/numbers/{malformed}", headers=h), 404, "not-found")
        problem_of(await client.delete(f"/v1/numbers/{malformed}", headers=h), 404, "not-found")
    still = await client.get(f"/v1/numbers/{number_id}", headers=account.headers)
    assert still.status_code == 200 and still.json()["dest_id"] == vm


async def test_resolve_and_pointing_to(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct
) -> None:
    vm = await make_mailbox(runtime, account.id)
    vm2 = await make_mailbox(runtime, account.id)
    created = await client.post(
        "/v1/numbers",
        json={
            "e164": US,
            "dest_kind": "voicemail",
            "dest_id": vm,
            "closed_dest_kind": "voicemail",
            "closed_dest_id": vm2,
        },
        headers=account.headers,
    )
    number_id = created.json()["id"]
    service = NumberService(runtime.uow, runtime.clock, "US")
    for dialed in (
        "+12025550123",
        "12025550123",
        "2025550123",
        "(202) 555-0123",
        "0012025550123",
        "01112025550123",
        "sip:+12025550123@pbx.example;user=phone",
        "tel:+1-202-555-0123",
    ):
        found = await service.resolve(dialed)
        assert found is not None, dialed
        assert found.id == number_id and found.account_id == account.id
    for dialed in ("+12025550124", "5550123", "", "sip:alice@example.com", "+442079460958"):
        assert await service.resolve(dialed) is None, dialed

    async with runtime.uow() as uow:
        direct = await uow.numbers.numbers_pointing_to(account.id, DestKind.VOICEMAIL, vm)
        closed = await uow.numbers.numbers_pointing_to(account.id, DestKind.VOICEMAIL, vm2)
        other = await uow.numbers.numbers_pointing_to("acc_nobody", DestKind.VOICEMAIL, vm)
    assert [n.id for n in direct] == [number_id]
    assert [n.id for n in closed] == [number_id]
    assert other == []


async def test_national_form_uses_configured_region(runtime: Runtime, account: Acct) -> None:
    vm = await make_mailbox(runtime, account.id)
    service = NumberService(runtime.uow, runtime.clock, "GB")
    number = await service.create(account.id, "020 7946 0958", DestKind.VOICEMAIL, vm)
    assert number.e164 == "+442079460958"
    found = await service.resolve("00442079460958")
    assert found is not None and found.id == number.id
