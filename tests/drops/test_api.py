"""/v1/drops on both backends: accepting drops (multipart and JSON), refusals that store
nothing, the wrong channel both ways, idempotency, listing, detail, cancel, stats, and the
drop settings of use cases (fallback, two-call timings)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import update

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from tests.conftest import TestAccount, on_backends
from tests.drops.support import events_of
from tests.ringless.support import (
    LA_SENDER,
    NYC_RECIPIENT,
    NYC_SENDER,
    assert_nothing_stored,
    assert_problem,
    audio,
    count,
    make_setup,
    make_use_case,
    subscribe,
)


async def drop_use_case(client: httpx.AsyncClient, account: TestAccount, **changes: object) -> str:
    setup = await make_setup(client, account, deposit_uri="")
    return await make_use_case(client, account, setup, channel="voicemail_drop", **changes)


@pytest.fixture
async def use_case(client: httpx.AsyncClient, account: TestAccount) -> str:
    return await drop_use_case(client, account)


async def post_drop(
    client: httpx.AsyncClient,
    account: TestAccount,
    use_case_id: str,
    data: bytes,
    to: str = NYC_RECIPIENT,
    filename: str = "drop.mp3",
    headers: dict[str, str] | None = None,
    **fields: str,
) -> httpx.Response:
    return await client.post(
        "/v1/drops",
        files={"audio": (filename, data, "audio/mpeg")},
        data={"to": to, "use_case_id": use_case_id, **fields},
        headers=headers or account.headers,
    )


async def upload_media(client: httpx.AsyncClient, account: TestAccount, data: bytes) -> str:
    r = await client.post(
        "/v1/media", files={"file": ("m.mp3", data, "audio/mpeg")}, headers=account.headers
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_upload_is_accepted_with_its_event(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, use_case: str
) -> None:
    await subscribe(runtime, account.id, "drop.status")
    r = await post_drop(client, account, use_case, audio(12), to="(212) 555-0123", foreign_id="crm-7")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["id"].startswith("drop_")
    assert (body["status"], body["technique"], body["to"], body["from"]) == (
        "accepted",
        "two_call",
        NYC_RECIPIENT,
        NYC_SENDER,
    )
    assert body["use_case_id"] == use_case and body["media_id"].startswith("media_")
    assert body["foreign_id"] == "crm-7" and body["setup_id"].startswith("setup_")
    assert body["answered_by"] is None and body["failure_reason"] is None
    assert "created_at" in body
    (event,) = await events_of(runtime, "drop.status")
    assert (event["id"], event["status"]) == (body["id"], "accepted")
    assert await events_of(runtime, "voicemail.status") == []


async def test_json_with_a_media_id_and_single_technique(
    client: httpx.AsyncClient, account: TestAccount, use_case: str
) -> None:
    media_id = await upload_media(client, account, audio(15))
    r = await client.post(
        "/v1/drops",
        json={"to": "+1 310 555 0123", "use_case_id": use_case, "media_id": media_id,
              "technique": "single"},
        headers=account.headers,
    )
    assert r.status_code == 202, r.text
    assert (r.json()["media_id"], r.json()["technique"], r.json()["from"]) == (
        media_id,
        "single",
        LA_SENDER,
    )


# Nothing is stored before every check has passed (services/media.py): on PostgreSQL + S3 the
# audio refused last (after the look-up of its hash) and the use cases looked up and refused.
@on_backends(
    ("case", "status", "error_id"),
    [
        ("9s", 422, "audio-too-short"),
        ("61s", 422, "audio-too-long"),
        ("wav-renamed", 422, "audio-format-not-allowed"),
        ("corrupt", 422, "invalid-audio"),
        ("invalid-number", 422, "invalid-phone-number"),
        ("other-account", 422, "unknown-reference"),
        ("ringless-use-case", 422, "wrong-channel"),
        ("bad-technique", 422, "validation-failed"),
        ("not-a-form", 415, None),
    ],
    postgres=[0, 5, 6],
)
async def test_refusals_store_nothing(
    client: httpx.AsyncClient,
    runtime: Runtime,
    account: TestAccount,
    other_account: TestAccount,
    use_case: str,
    case: str,
    status: int,
    error_id: str | None,
) -> None:
    if case == "9s":
        r = await post_drop(client, account, use_case, audio(9))
    elif case == "61s":
        r = await post_drop(client, account, use_case, audio(61))
    elif case == "wav-renamed":
        r = await post_drop(client, account, use_case, audio(12, "WAV"))
    elif case == "corrupt":
        mp3 = audio(12)
        r = await post_drop(client, account, use_case, mp3[: len(mp3) // 2])
    elif case == "invalid-number":
        r = await post_drop(client, account, use_case, audio(12), to="+1 555 0100")
    elif case == "other-account":
        r = await post_drop(client, account, await drop_use_case(client, other_account), audio(12))
    elif case == "ringless-use-case":
        ringless = await make_use_case(client, account, await make_setup(client, account))
        r = await post_drop(client, account, ringless, audio(12))
    elif case == "bad-technique":
        r = await post_drop(client, account, use_case, audio(12), technique="triple")
    else:
        r = await client.post("/v1/drops", content=b"to=1", headers={
            **account.headers, "Content-Type": "application/x-www-form-urlencoded"})
    assert_problem(r, status, error_id)
    await assert_nothing_stored(runtime, account.id)


async def test_a_drop_use_case_is_refused_by_voicemails(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, use_case: str
) -> None:
    r = await client.post(
        "/v1/voicemails",
        files={"audio": ("r.mp3", audio(12), "audio/mpeg")},
        data={"to": NYC_RECIPIENT, "use_case_id": use_case},
        headers=account.headers,
    )
    assert_problem(r, 422, "wrong-channel")
    await assert_nothing_stored(runtime, account.id)


async def test_same_idempotency_key_twice_is_one_drop(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, use_case: str
) -> None:
    headers = {**account.headers, "Idempotency-Key": "drop-1"}
    first = await post_drop(client, account, use_case, audio(12), headers=headers)
    second = await post_drop(client, account, use_case, audio(12), headers=headers)
    assert first.status_code == second.status_code == 202, second.text
    assert first.json()["id"] == second.json()["id"]
    assert await count(runtime, t.voicemail_sends) == 1


async def test_list_detail_cancel_stats_and_separation_from_voicemails(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, other_account: TestAccount,
    use_case: str,
) -> None:
    ringless = await make_use_case(client, account, await make_setup(client, account))
    vm = await client.post(
        "/v1/voicemails",
        files={"audio": ("r.mp3", audio(12), "audio/mpeg")},
        data={"to": NYC_RECIPIENT, "use_case_id": ringless},
        headers=account.headers,
    )
    assert vm.status_code == 202
    a = (await post_drop(client, account, use_case, audio(12))).json()
    b = (await post_drop(client, account, use_case, audio(12), to="+13105550123")).json()
    h = account.headers
    items = (await client.get("/v1/drops", headers=h)).json()["items"]
    assert [d["id"] for d in items] == [b["id"], a["id"]]  # newest first, no ringless send
    vms = (await client.get("/v1/voicemails", headers=h)).json()["items"]
    assert [v["id"] for v in vms] == [vm.json()["id"]]
    by_to = (await client.get("/v1/drops", params={"to": "+13105550123"}, headers=h)).json()
    assert [d["id"] for d in by_to["items"]] == [b["id"]]
    assert (await client.get("/v1/drops", headers=other_account.headers)).json()["items"] == []

    detail = (await client.get(f"/v1/drops/{a['id']}", headers=h)).json()
    assert detail["attempts"] == [] and detail["status"] == "accepted"
    assert_problem(await client.get(f"/v1/drops/{vm.json()['id']}", headers=h), 404)
    assert_problem(await client.get(f"/v1/voicemails/{a['id']}", headers=h), 404)
    assert_problem(await client.get(f"/v1/drops/{a['id']}", headers=other_account.headers), 404)

    cancelled = await client.post(f"/v1/drops/{a['id']}/cancel", headers=h)
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["status"], cancelled.json()["skip_reason"]) == ("skipped", "cancelled")
    assert_problem(await client.post(f"/v1/drops/{a['id']}/cancel", headers=h), 409, "drop-not-cancellable")

    async with runtime.db.begin() as conn:
        await conn.execute(
            update(t.voicemail_sends)
            .where(t.voicemail_sends.c.id == b["id"])
            .values(status="left_voicemail", answered_by="machine_end_beep", beep_ms=3100)
        )
    left = (await client.get("/v1/drops", params={"status": "left_voicemail"}, headers=h)).json()
    assert [(d["id"], d["beep_ms"]) for d in left["items"]] == [(b["id"], 3100)]
    stats = (await client.get("/v1/drops/stats", headers=h)).json()
    assert stats["total"] == 2
    assert stats["counts"]["left_voicemail"] == 1 and stats["counts"]["skipped"] == 1
    assert "delivered" not in stats["counts"] and stats["left_voicemail_rate"] == 1.0
    vm_stats = (await client.get("/v1/voicemails/stats", headers=h)).json()
    assert vm_stats["total"] == 1 and "left_voicemail" not in vm_stats["counts"]


async def test_use_case_drop_settings_and_fallback(
    client: httpx.AsyncClient, account: TestAccount, other_account: TestAccount
) -> None:
    h = account.headers
    setup = await make_setup(client, account, deposit_uri="")
    drop = await make_use_case(
        client, account, setup, channel="voicemail_drop",
        second_call_delay_ms=1500, first_call_bound_ms=5000,
    )
    shown = (await client.get(f"/v1/use-cases/{drop}", headers=h)).json()
    assert (shown["second_call_delay_ms"], shown["first_call_bound_ms"]) == (1500, 5000)
    ringless = await make_use_case(client, account, setup, fallback_use_case_id=drop)
    shown = (await client.get(f"/v1/use-cases/{ringless}", headers=h)).json()
    assert shown["fallback_use_case_id"] == drop and shown["second_call_delay_ms"] is None

    async def create(**body: object) -> httpx.Response:
        base = {"channel": "ringless_voicemail", "name": "x", "setup_id": setup}
        return await client.post("/v1/use-cases", json={**base, **body}, headers=h)

    assert_problem(await create(fallback_use_case_id=ringless), 422, "unknown-reference")
    theirs = await drop_use_case(client, other_account)
    assert_problem(await create(fallback_use_case_id=theirs), 422, "unknown-reference")
    assert_problem(await create(channel="voicemail_drop", fallback_use_case_id=drop), 422)
    assert_problem(await create(second_call_delay_ms=2000), 422)
    assert_problem(await create(channel="voicemail_drop", second_call_delay_ms=100), 422)
    assert_problem(
        await create(channel="voicemail_drop", second_call_delay_ms=3000, first_call_bound_ms=2000),
        422,
    )
    patched = await client.patch(f"/v1/use-cases/{drop}", json={"second_call_delay_ms": 2500}, headers=h)
    assert patched.status_code == 200 and patched.json()["second_call_delay_ms"] == 2500
    assert_problem(
        await client.patch(f"/v1/use-cases/{ringless}", json={"first_call_bound_ms": 5000}, headers=h),
        422,
    )
    unset = await client.patch(f"/v1/use-cases/{ringless}", json={"fallback_use_case_id": None}, headers=h)
    assert unset.status_code == 200 and unset.json()["fallback_use_case_id"] is None
    again = await client.patch(f"/v1/use-cases/{ringless}", json={"fallback_use_case_id": drop}, headers=h)
    assert again.status_code == 200
    assert_problem(await client.delete(f"/v1/use-cases/{drop}", headers=h), 409, "use-case-in-use")
    to_ringless = {"channel": "ringless_voicemail"}
    moved = await client.patch(f"/v1/use-cases/{drop}", json=to_ringless, headers=h)
    assert_problem(moved, 409, "use-case-in-use")
    renamed = await client.patch(f"/v1/use-cases/{drop}", json={"name": "renamed"}, headers=h)
    assert renamed.status_code == 200


async def test_setups_may_have_no_deposit_uri(client: httpx.AsyncClient, account: TestAccount) -> None:
    setup = await make_setup(client, account, deposit_uri="")
    shown = (await client.get(f"/v1/telephony-setups/{setup}", headers=account.headers)).json()
    assert shown["deposit_uri"] == ""
    body = {"name": "t", "trunk_host": "127.0.0.1", "deposit_uri": "http://x/{to}"}
    r = await client.post("/v1/telephony-setups", json=body, headers=account.headers)
    assert_problem(r, 422)
