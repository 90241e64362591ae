"""/v1/campaigns on both backends: create from a list or a CSV, refusals that store nothing,
pause / resume / cancel and their 409s, progress counts, another account's campaign.

No delivery worker runs here (the `runtime` fixture starts none): sends stay where the API and
the test put them; the delivery itself is `test_delivery.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from afterbeep.domain.campaigns import MAX_RECIPIENTS
from tests.conftest import TestAccount, on_backends
from tests.ringless.support import (
    LA_SENDER,
    NYC_SENDER,
    assert_problem,
    audio,
    make_setup,
    make_use_case,
)

pytestmark = pytest.mark.timeout(60)

NUMBERS = ["+12125550123", "(310) 555-0124", "+1 202 555 0125"]
E164 = ["+12125550123", "+13105550124", "+12025550125"]
RINGLESS_PROGRESS = {"accepted", "paused", "delivered", "failed", "skipped"}


async def media_of(client: httpx.AsyncClient, account: TestAccount, seconds: float = 12) -> str:
    files = {"file": ("reminder.mp3", audio(seconds), "audio/mpeg")}
    r = await client.post("/v1/media", files=files, headers=account.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def ringless(client: httpx.AsyncClient, account: TestAccount) -> tuple[str, str]:
    """(use case id, media id) of a ringless use case."""
    setup_id = await make_setup(client, account)
    return await make_use_case(client, account, setup_id), await media_of(client, account)


async def create(
    client: httpx.AsyncClient, account: TestAccount, body: dict[str, Any], status: int = 201
) -> dict[str, Any]:
    r = await client.post("/v1/campaigns", json=body, headers=account.headers)
    assert r.status_code == status, r.text
    data: dict[str, Any] = r.json()
    return data


async def upload_csv(
    client: httpx.AsyncClient, account: TestAccount, content: bytes, **fields: str
) -> httpx.Response:
    files = {"recipients": ("numbers.csv", content, "text/csv")}
    return await client.post("/v1/campaigns", files=files, data=fields, headers=account.headers)


async def stored(runtime: Runtime) -> tuple[int, int]:
    """(campaigns, sends) in the database."""
    async with runtime.db.begin() as conn:
        campaigns = (await conn.execute(select(func.count()).select_from(t.campaigns))).scalar_one()
        sends = (
            await conn.execute(select(func.count()).select_from(t.voicemail_sends))
        ).scalar_one()
    return int(campaigns), int(sends)


async def sends_of(
    client: httpx.AsyncClient, account: TestAccount, campaign_id: str
) -> list[dict[str, Any]]:
    r = await client.get(
        "/v1/voicemails", params={"campaign_id": campaign_id, "limit": 200}, headers=account.headers
    )
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def assert_adds_up(campaign: dict[str, Any]) -> None:
    assert sum(campaign["progress"].values()) == campaign["recipients_total"], campaign


# -- creating ------------------------------------------------------------------------------


async def test_create_from_a_list(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    use_case_id, media_id = await ringless(client, account)
    body = {
        "use_case_id": use_case_id,
        "media_id": media_id,
        "method": "ringless",
        "name": "Spring reminders",
        "recipients": [*NUMBERS, "212-555-0123"],  # the last one is the first again
    }
    campaign = await create(client, account, body)
    assert campaign["id"].startswith("camp_")
    assert campaign["status"] == "running"
    assert campaign["name"] == "Spring reminders"
    assert (campaign["method"], campaign["technique"]) == ("ringless", None)
    assert campaign["recipients_total"] == 3 and campaign["duplicates_removed"] == 1
    assert campaign["invalid_recipients"] == [] and campaign["invalid_count"] == 0
    assert set(campaign["progress"]) == RINGLESS_PROGRESS
    assert campaign["progress"]["accepted"] == 3 and campaign["recipients_finished"] == 0
    assert_adds_up(campaign)

    sends = await sends_of(client, account, campaign["id"])
    assert sorted(s["to"] for s in sends) == sorted(E164)
    assert all(s["id"].startswith("vmsend_") and s["status"] == "accepted" for s in sends)
    assert all(s["media_id"] == media_id and s["send_at"] is None for s in sends)
    by_to = {s["to"]: s["from"] for s in sends}
    assert by_to["+12125550123"] == NYC_SENDER  # local presence, as for a single send
    assert by_to["+13105550124"] == LA_SENDER
    assert await stored(runtime) == (1, 3)

    got = await client.get(f"/v1/campaigns/{campaign['id']}", headers=account.headers)
    assert got.status_code == 200
    shown = got.json()
    assert {k: shown[k] for k in ("id", "status", "recipients_total", "progress")} == {
        k: campaign[k] for k in ("id", "status", "recipients_total", "progress")
    }
    # The campaign's sends answer here, without a redirect, paged as the send list is.
    listed = await client.get(
        f"/v1/campaigns/{campaign['id']}/sends", params={"limit": 2}, headers=account.headers
    )
    assert listed.status_code == 200, listed.text
    first_page = listed.json()
    assert len(first_page["items"]) == 2 and first_page["next_cursor"]
    rest = await client.get(
        f"/v1/campaigns/{campaign['id']}/sends",
        params={"limit": 2, "cursor": first_page["next_cursor"]},
        headers=account.headers,
    )
    assert rest.status_code == 200
    assert [s["id"] for s in first_page["items"] + rest.json()["items"]] == [s["id"] for s in sends]
    assert campaign["sends_url"] == f"/v1/voicemails?campaign_id={campaign['id']}"


async def test_create_from_a_csv_upload_starting_later(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    use_case_id, media_id = await ringless(client, account)
    start = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    content = "name,to\nAnn,+12125550123\n\nBob,(310) 555-0124\nCid,+12025550125\nAnn,2125550123\n"
    r = await upload_csv(
        client,
        account,
        content.encode(),
        use_case_id=use_case_id,
        media_id=media_id,
        start_at=start.isoformat(),
    )
    assert r.status_code == 201, r.text
    campaign = r.json()
    assert campaign["status"] == "scheduled"
    assert campaign["method"] == "ringless"  # from the use case's channel
    assert campaign["recipients_total"] == 3 and campaign["duplicates_removed"] == 1
    assert datetime.fromisoformat(campaign["start_at"]) == start
    sends = await sends_of(client, account, campaign["id"])
    assert sorted(s["to"] for s in sends) == sorted(E164)
    assert {datetime.fromisoformat(s["send_at"]) for s in sends} == {start}
    async with runtime.db.begin() as conn:
        v = t.voicemail_sends.c
        due = (await conn.execute(select(v.next_attempt_at).distinct())).scalars().all()
    assert due == [start]  # the engine holds them until the start


# The CSV is read before anything is stored: its richest shape on PostgreSQL too.
@on_backends(
    "content",
    [
        b"+12125550123\n+13105550124\n",  # a single column, no header
        b"\xef\xbb\xbfnumber\r\n+12125550123\r\n+13105550124\r\n",  # BOM, CRLF, `number`
        b"phone number\n+12125550123\n+13105550124\n",  # a single column with any header
        b'"first","TO","note"\n"A","+12125550123","x"\n"B","+13105550124",""\n',
    ],
    postgres=[3],
)
async def test_csv_shapes(client: httpx.AsyncClient, account: TestAccount, content: bytes) -> None:
    use_case_id, media_id = await ringless(client, account)
    r = await upload_csv(client, account, content, use_case_id=use_case_id, media_id=media_id)
    assert r.status_code == 201, r.text
    assert r.json()["recipients_total"] == 2


async def test_invalid_rows_refuse_the_campaign_unless_skipped(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    use_case_id, media_id = await ringless(client, account)
    numbers = ["+12125550123", "not a number", "+13105550124", "+1 555"]
    body = {"use_case_id": use_case_id, "media_id": media_id, "recipients": numbers}
    r = await client.post("/v1/campaigns", json=body, headers=account.headers)
    assert_problem(r, 422, "invalid-recipients")
    problem = r.json()
    assert problem["invalid_count"] == 2
    assert [e["row"] for e in problem["invalid_recipients"]] == [2, 4]
    assert all(e["reason"] for e in problem["invalid_recipients"])
    assert await stored(runtime) == (0, 0)

    csv_body = b"to\n+12125550123\nnope\n"
    r = await upload_csv(client, account, csv_body, use_case_id=use_case_id, media_id=media_id)
    assert_problem(r, 422, "invalid-recipients")
    assert [e["row"] for e in r.json()["invalid_recipients"]] == [3]  # the header is row 1
    assert await stored(runtime) == (0, 0)

    campaign = await create(client, account, {**body, "skip_invalid": True})
    assert campaign["recipients_total"] == 2 and campaign["invalid_count"] == 2
    assert [e["row"] for e in campaign["invalid_recipients"]] == [2, 4]
    assert await stored(runtime) == (1, 2)


async def test_drop_campaign_on_a_drop_use_case(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    setup_id = await make_setup(client, account)
    use_case_id = await make_use_case(client, account, setup_id, channel="voicemail_drop")
    media_id = await media_of(client, account)
    body = {"use_case_id": use_case_id, "media_id": media_id, "recipients": NUMBERS}
    campaign = await create(client, account, {**body, "method": "drop"})
    assert (campaign["method"], campaign["technique"]) == ("drop", "two_call")
    assert "left_voicemail" in campaign["progress"] and "delivered" not in campaign["progress"]
    assert campaign["progress"]["accepted"] == 3
    assert campaign["sends_url"] == f"/v1/drops?campaign_id={campaign['id']}"
    single = await create(client, account, {**body, "technique": "single"})
    assert (single["method"], single["technique"]) == ("drop", "single")
    async with runtime.db.begin() as conn:
        v = t.voicemail_sends.c
        rows = (
            await conn.execute(
                select(v.id, v.kind, v.technique).where(v.campaign_id == campaign["id"])
            )
        ).all()
    assert len(rows) == 3
    assert all(
        r.id.startswith("drop_") and (r.kind, r.technique) == ("drop", "two_call") for r in rows
    )
    listed = await client.get(campaign["sends_url"], headers=account.headers)
    assert sorted(d["id"] for d in listed.json()["items"]) == sorted(r.id for r in rows)
    own = await client.get(f"/v1/campaigns/{campaign['id']}/sends", headers=account.headers)
    assert own.status_code == 200 and own.json() == listed.json()
    everything = await client.get("/v1/drops", headers=account.headers)
    assert len(everything.json()["items"]) == 6


# -- refusals: 4xx problem and nothing stored ------------------------------------------------


async def test_bad_inputs_are_refused_and_store_nothing(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, other_account: TestAccount
) -> None:
    use_case_id, media_id = await ringless(client, account)
    drop_uc = await make_use_case(
        client, account, await make_setup(client, account), channel="voicemail_drop"
    )
    other_uc, other_media = await ringless(client, other_account)
    good = {"use_case_id": use_case_id, "media_id": media_id, "recipients": NUMBERS}

    cases: list[tuple[dict[str, Any], int, str]] = [
        ({**good, "method": "drop"}, 422, "wrong-channel"),
        ({**good, "use_case_id": drop_uc, "method": "ringless"}, 422, "wrong-channel"),
        ({**good, "technique": "two_call"}, 422, "invalid-input"),
        ({**good, "use_case_id": other_uc}, 422, "unknown-reference"),
        ({**good, "use_case_id": "uc_nope"}, 422, "unknown-reference"),
        ({**good, "media_id": other_media}, 422, "unknown-reference"),
        ({**good, "recipients": []}, 422, "no-recipients"),
        (
            {**good, "recipients": ["+12125550123"] * (MAX_RECIPIENTS + 1)},
            422,
            "too-many-recipients",
        ),
        ({**good, "method": "fax"}, 422, "validation-failed"),
        ({**good, "start_at": "2026-06-01T10:00:00"}, 422, "validation-failed"),  # no offset
        ({**good, "extra": 1}, 422, "validation-failed"),
        ({k: v for k, v in good.items() if k != "recipients"}, 422, "validation-failed"),
    ]
    for body, status, error_id in cases:
        r = await client.post("/v1/campaigns", json=body, headers=account.headers)
        assert_problem(r, status, error_id)
    r = await client.post(
        "/v1/campaigns",
        content=b"{not json",
        headers={**account.headers, "content-type": "application/json"},
    )
    assert_problem(r, 400, "malformed-json")
    r = await client.post(
        "/v1/campaigns",
        content=b"to\n+12125550123",
        headers={**account.headers, "content-type": "text/csv"},
    )
    assert_problem(r, 415, "unsupported-media-type")

    fields = {"use_case_id": use_case_id, "media_id": media_id}
    csv_cases: list[tuple[bytes, int, str]] = [
        (b"", 422, "no-recipients"),
        (b"to\n", 422, "no-recipients"),
        (b"first,last\nAnn,Lee\n", 422, "bad-csv"),  # several columns, none named to/number
        (b"+12125550123,+13105550124\n", 422, "bad-csv"),  # two numbers on one row
        (b"to\n\xff\xfe+1212\n", 422, "bad-csv"),  # not UTF-8
        (
            "\n".join(["to"] + ["+12125550123"] * (MAX_RECIPIENTS + 1)).encode(),
            422,
            "too-many-recipients",
        ),
    ]
    for content, status, error_id in csv_cases:
        r = await upload_csv(client, account, content, **fields)
        assert_problem(r, status, error_id)
    r = await upload_csv(client, account, b"+12125550123\n", use_case_id=use_case_id)
    assert_problem(r, 422, "validation-failed")  # no media_id
    r = await upload_csv(client, account, b"+12125550123\n", **fields, colour="red")
    assert_problem(r, 422, "validation-failed")
    assert await stored(runtime) == (0, 0)
    assert list((runtime.data_dir / "tmp").iterdir()) == []


async def test_an_oversized_csv_is_refused_while_streaming(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    use_case_id, media_id = await ringless(client, account)
    line = b"+12125550123\n"
    content = line * (16 * 1024 * 1024 // len(line) + 1)
    r = await upload_csv(client, account, content, use_case_id=use_case_id, media_id=media_id)
    assert_problem(r, 413)
    assert await stored(runtime) == (0, 0)
    assert list((runtime.data_dir / "tmp").iterdir()) == []


async def test_media_must_be_a_valid_send_audio(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    use_case_id, _ = await ringless(client, account)
    short = await media_of(client, account, seconds=5)
    body = {"use_case_id": use_case_id, "media_id": short, "recipients": NUMBERS}
    r = await client.post("/v1/campaigns", json=body, headers=account.headers)
    assert_problem(r, 422, "audio-too-short")
    assert await stored(runtime) == (0, 0)


async def test_another_accounts_campaign_is_not_found(
    client: httpx.AsyncClient, account: TestAccount, other_account: TestAccount
) -> None:
    use_case_id, media_id = await ringless(client, account)
    body = {"use_case_id": use_case_id, "media_id": media_id, "recipients": NUMBERS}
    campaign = await create(client, account, body)
    path = f"/v1/campaigns/{campaign['id']}"
    h = other_account.headers
    assert_problem(await client.get(path, headers=h), 404)
    assert_problem(await client.get(path + "/sends", headers=h), 404)
    for action in ("pause", "resume", "cancel"):
        assert_problem(await client.post(f"{path}/{action}", headers=h), 404)
    assert (await client.get("/v1/campaigns", headers=h)).json()["items"] == []
    assert await sends_of(client, other_account, campaign["id"]) == []
    assert_problem(await client.get("/v1/campaigns/camp_nope", headers=account.headers), 404)
    assert (await client.get(path, headers=account.headers)).json()["status"] == "running"


# -- pause, resume, cancel ----------------------------------------------------------------


async def act(
    client: httpx.AsyncClient,
    account: TestAccount,
    campaign_id: str,
    action: str,
    status: int = 200,
) -> dict[str, Any]:
    r = await client.post(f"/v1/campaigns/{campaign_id}/{action}", headers=account.headers)
    if status == 409:
        assert_problem(r, 409, "campaign-transition-not-allowed")
    else:
        assert r.status_code == status, r.text
    data: dict[str, Any] = r.json()
    return data


async def set_sends(runtime: Runtime, campaign_id: str, to: str | None, **values: Any) -> None:
    v = t.voicemail_sends.c
    query = update(t.voicemail_sends).where(v.campaign_id == campaign_id)
    if to is not None:
        query = query.where(v.to_e164 == to)
    async with runtime.db.begin() as conn:
        await conn.execute(query.values(**values))


async def test_pause_resume_cancel(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    use_case_id, media_id = await ringless(client, account)
    numbers = [f"+1212555{n:04d}" for n in range(100, 110)]
    body = {"use_case_id": use_case_id, "media_id": media_id, "recipients": numbers}
    campaign = await create(client, account, body)
    cid = campaign["id"]
    now = datetime.now(UTC)
    # One send is in flight (a live lease), one has ended already.
    await set_sends(runtime, cid, numbers[0], claimed_until=now + timedelta(minutes=10), attempts=1)
    await set_sends(runtime, cid, numbers[1], status="delivered", attempts=1)

    await act(client, account, cid, "resume", 409)  # it is running
    paused = await act(client, account, cid, "pause")
    assert paused["status"] == "paused"
    assert (paused["progress"]["paused"], paused["progress"]["accepted"]) == (8, 1)
    assert paused["progress"]["delivered"] == 1 and paused["recipients_finished"] == 1
    assert_adds_up(paused)
    await act(client, account, cid, "pause", 409)
    listed = await sends_of(client, account, cid)
    assert {s["to"]: s["status"] for s in listed}[numbers[0]] == "accepted"

    resumed = await act(client, account, cid, "resume")
    assert resumed["status"] == "running"
    assert (resumed["progress"]["paused"], resumed["progress"]["accepted"]) == (0, 9)
    assert_adds_up(resumed)

    await act(client, account, cid, "pause")
    canceled = await act(client, account, cid, "cancel")
    assert canceled["status"] == "canceled"
    progress = canceled["progress"]
    assert (progress["skipped"], progress["accepted"], progress["delivered"]) == (8, 1, 1)
    assert progress["paused"] == 0
    assert_adds_up(canceled)
    skipped = [s for s in await sends_of(client, account, cid) if s["status"] == "skipped"]
    assert {s["skip_reason"] for s in skipped} == {"campaign_canceled"}
    for action in ("pause", "resume", "cancel"):
        await act(client, account, cid, action, 409)

    # The send in flight ends; a canceled campaign stays canceled.
    await set_sends(runtime, cid, numbers[0], status="failed", claimed_until=None)
    final = (await client.get(f"/v1/campaigns/{cid}", headers=account.headers)).json()
    assert final["status"] == "canceled" and final["recipients_finished"] == 10
    assert_adds_up(final)


async def test_a_retry_after_pause_or_cancel_is_held_by_the_engine(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    """A send in flight when its campaign was paused (or cancelled) comes back `accepted` for a
    retry; the engine then sets it aside (or skips it) instead of calling again."""
    use_case_id, media_id = await ringless(client, account)
    numbers = [f"+1212555{n:04d}" for n in range(200, 203)]
    campaign = await create(
        client, account, {"use_case_id": use_case_id, "media_id": media_id, "recipients": numbers}
    )
    cid = campaign["id"]
    past = datetime.now(UTC) - timedelta(seconds=1)
    await act(client, account, cid, "pause")
    await set_sends(runtime, cid, numbers[0], status="accepted", attempts=1, next_attempt_at=past)
    worker = runtime.delivery()
    assert await worker.run_once() == 1
    statuses = {s["to"]: s["status"] for s in await sends_of(client, account, cid)}
    assert statuses == dict.fromkeys(numbers, "paused")

    await act(client, account, cid, "cancel")
    await set_sends(runtime, cid, numbers[1], status="accepted", attempts=1, next_attempt_at=past)
    assert await worker.run_once() == 1
    sends = {s["to"]: s for s in await sends_of(client, account, cid)}
    assert {n: s["status"] for n, s in sends.items()} == dict.fromkeys(numbers, "skipped")
    assert sends[numbers[1]]["skip_reason"] == "campaign_canceled"
    async with runtime.db.begin() as conn:
        a = t.send_attempts.c
        attempts = await conn.scalar(
            select(func.count()).where(a.send_id.in_([s["id"] for s in sends.values()]))
        )
    assert attempts == 0  # no call was placed for either


async def test_scheduled_campaign_can_be_paused_and_resumes_scheduled(
    client: httpx.AsyncClient, account: TestAccount
) -> None:
    use_case_id, media_id = await ringless(client, account)
    start = datetime.now(UTC) + timedelta(hours=3)
    body = {
        "use_case_id": use_case_id,
        "media_id": media_id,
        "recipients": NUMBERS,
        "start_at": start.isoformat(),
    }
    campaign = await create(client, account, body)
    assert campaign["status"] == "scheduled"
    assert (await act(client, account, campaign["id"], "pause"))["status"] == "paused"
    assert (await act(client, account, campaign["id"], "resume"))["status"] == "scheduled"
    assert (await act(client, account, campaign["id"], "cancel"))["status"] == "canceled"


async def test_completed_when_every_send_is_final(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    use_case_id, media_id = await ringless(client, account)
    body = {"use_case_id": use_case_id, "media_id": media_id, "recipients": NUMBERS}
    campaign = await create(client, account, body)
    cid = campaign["id"]
    await set_sends(runtime, cid, E164[0], status="delivered")
    await set_sends(runtime, cid, E164[1], status="failed", failure_reason="486 Busy Here")
    running = (await client.get(f"/v1/campaigns/{cid}", headers=account.headers)).json()
    assert running["status"] == "running" and running["recipients_finished"] == 2
    await set_sends(runtime, cid, E164[2], status="skipped", skip_reason="suppressed")
    done = (await client.get(f"/v1/campaigns/{cid}", headers=account.headers)).json()
    assert done["status"] == "completed"
    assert (
        done["progress"]["delivered"],
        done["progress"]["failed"],
        done["progress"]["skipped"],
    ) == (1, 1, 1)
    assert_adds_up(done)
    for action in ("pause", "resume", "cancel"):
        await act(client, account, cid, action, 409)


async def test_list_is_paginated_newest_first(
    client: httpx.AsyncClient, account: TestAccount
) -> None:
    use_case_id, media_id = await ringless(client, account)
    body = {"use_case_id": use_case_id, "media_id": media_id, "recipients": NUMBERS}
    ids = [(await create(client, account, body))["id"] for _ in range(3)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/campaigns", params=params, headers=account.headers)).json()
        seen += [c["id"] for c in page["items"]]
        for c in page["items"]:
            assert_adds_up(c)
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids[::-1]
    assert_problem(
        await client.get("/v1/campaigns", params={"cursor": "bogus"}, headers=account.headers), 422
    )


async def test_idempotency_key_creates_one_campaign(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    use_case_id, media_id = await ringless(client, account)
    headers = {**account.headers, "Idempotency-Key": "camp-key-1"}
    content = b"to\n+12125550123\n+13105550124\n"
    fields = {"use_case_id": use_case_id, "media_id": media_id}
    files = {"recipients": ("numbers.csv", content, "text/csv")}
    first = await client.post("/v1/campaigns", files=files, data=fields, headers=headers)
    again = await client.post("/v1/campaigns", files=files, data=fields, headers=headers)
    assert first.status_code == again.status_code == 201, again.text
    assert first.json()["id"] == again.json()["id"]
    assert await stored(runtime) == (1, 2)
