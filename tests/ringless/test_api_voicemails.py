"""/v1/voicemails on both backends: accepting sends (multipart and JSON), the refusals that
store nothing, idempotency, listing, detail, cancel, stats and the voicemail.status event."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import insert, select, update

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from afterbeep.domain.ids import new_id
from tests.conftest import TestAccount, on_backends
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

EIGHT_MB = 8 * 1024 * 1024


async def send_multipart(
    client: httpx.AsyncClient,
    account: TestAccount,
    use_case_id: str,
    data: bytes,
    to: str = NYC_RECIPIENT,
    filename: str = "reminder.mp3",
    **fields: str,
) -> httpx.Response:
    return await client.post(
        "/v1/voicemails",
        files={"audio": (filename, data, "audio/mpeg")},
        data={"to": to, "use_case_id": use_case_id, **fields},
        headers=account.headers,
    )


@pytest.fixture
async def use_case(client: httpx.AsyncClient, account: TestAccount) -> str:
    return await make_use_case(client, account, await make_setup(client, account))


async def upload_media(client: httpx.AsyncClient, account: TestAccount, data: bytes, name: str) -> str:
    r = await client.post(
        "/v1/media", files={"file": (name, data, "application/octet-stream")}, headers=account.headers
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_multipart_send_is_accepted_and_stored_with_its_event(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, use_case: str
) -> None:
    await subscribe(runtime, account.id, "voicemail.status")
    r = await send_multipart(
        client, account, use_case, audio(12), to="(212) 555-0123",
        foreign_id="crm-42", metadata=json.dumps({"patient": 7}),
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["id"].startswith("vmsend_")
    assert body["status"] == "accepted"
    assert body["to"] == NYC_RECIPIENT
    assert body["from"] == NYC_SENDER  # local presence: the 212 number for a 212 recipient
    assert body["use_case_id"] == use_case
    assert body["media_id"].startswith("media_")
    assert body["foreign_id"] == "crm-42"
    assert body["metadata"] == {"patient": 7}
    async with runtime.db.begin() as conn:
        row = (await conn.execute(select(t.voicemail_sends))).one()
        media = (await conn.execute(select(t.media))).one()
        events = (await conn.execute(select(t.webhook_deliveries))).all()
    assert row.id == body["id"] and row.status == "accepted" and row.attempts == 0
    assert row.next_attempt_at == row.created_at
    assert row.setup_id == body["setup_id"]
    assert media.format == "mp3" and 11_500 <= media.duration_ms <= 12_500
    assert [e.event for e in events] == ["voicemail.status"]
    payload = json.loads(events[0].payload)
    data = payload.get("data", payload)
    assert data["voicemail_id"] == body["id"]
    assert data["status"] == "accepted"
    assert data["to"] == NYC_RECIPIENT
    assert data["foreign_id"] == "crm-42"
    assert data["failure_reason"] is None
    assert list((runtime.data_dir / "tmp").iterdir()) == []


async def test_json_send_with_a_stored_media(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, use_case: str
) -> None:
    media_id = await upload_media(client, account, audio(15), "r.mp3")
    send_at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    r = await client.post(
        "/v1/voicemails",
        json={"to": "+1 310 555 0123", "use_case_id": use_case, "media_id": media_id,
              "send_at": send_at.isoformat()},
        headers=account.headers,
    )
    assert r.status_code == 202, r.text
    assert r.json()["media_id"] == media_id
    assert r.json()["from"] == LA_SENDER
    async with runtime.db.begin() as conn:
        row = (await conn.execute(select(t.voicemail_sends))).one()
    assert row.next_attempt_at == send_at


async def test_json_send_refuses_other_media(
    client: httpx.AsyncClient,
    runtime: Runtime,
    account: TestAccount,
    other_account: TestAccount,
    use_case: str,
) -> None:
    foreign = await upload_media(client, other_account, audio(15), "x.mp3")
    wav = await upload_media(client, account, audio(15, "WAV"), "x.wav")
    short = await upload_media(client, account, audio(5), "short.mp3")
    for media_id, error_id in (
        (foreign, "unknown-reference"),
        (wav, "audio-format-not-allowed"),
        (short, "audio-too-short"),
    ):
        r = await client.post(
            "/v1/voicemails",
            json={"to": NYC_RECIPIENT, "use_case_id": use_case, "media_id": media_id},
            headers=account.headers,
        )
        assert_problem(r, 422, error_id)
    assert await count(runtime, t.voicemail_sends) == 0


async def _oversized() -> AsyncIterator[bytes]:
    boundary = b"xyzzy"
    yield (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="to"\r\n\r\n'
        + NYC_RECIPIENT.encode() + b"\r\n"
    )
    yield b"--" + boundary + b'\r\nContent-Disposition: form-data; name="audio"; filename="big.mp3"\r\n\r\n'
    mp3 = audio(12)
    yield mp3
    remaining = EIGHT_MB + 1 - len(mp3)
    while remaining > 0:
        step = min(remaining, 256 * 1024)
        yield b"\0" * step
        remaining -= step
    yield b"\r\n--" + boundary + b"--\r\n"


# Nothing is stored before every check has passed (services/media.py): on PostgreSQL + S3 the
# audio refused last (after the look-up of its hash) and the use case of another account.
@on_backends(
    ("case", "status", "error_id"),
    [
        ("9s", 422, "audio-too-short"),
        ("61s", 422, "audio-too-long"),
        ("8MB+1", 413, "payload-too-large"),
        ("wav-renamed", 422, "audio-format-not-allowed"),
        ("corrupt", 422, "invalid-audio"),
        ("invalid-number", 422, "invalid-phone-number"),
        ("other-use-case", 422, "unknown-reference"),
        ("no-audio", 422, "validation-failed"),
        ("bad-metadata", 422, "validation-failed"),
    ],
    postgres=[0, 6],
)
async def test_refusals_store_nothing(
    client: httpx.AsyncClient,
    runtime: Runtime,
    account: TestAccount,
    other_account: TestAccount,
    use_case: str,
    case: str,
    status: int,
    error_id: str,
) -> None:
    if case == "9s":
        r = await send_multipart(client, account, use_case, audio(9))
    elif case == "61s":
        r = await send_multipart(client, account, use_case, audio(61))
    elif case == "8MB+1":
        r = await client.post(
            "/v1/voicemails",
            content=_oversized(),
            headers={**account.headers, "Content-Type": "multipart/form-data; boundary=xyzzy"},
        )
    elif case == "wav-renamed":
        r = await send_multipart(client, account, use_case, audio(12, "WAV"), filename="renamed.mp3")
    elif case == "corrupt":
        mp3 = audio(12)
        r = await send_multipart(client, account, use_case, mp3[: len(mp3) // 2])
    elif case == "invalid-number":
        r = await send_multipart(client, account, use_case, audio(12), to="+1 555 0100")
    elif case == "other-use-case":
        theirs = await make_use_case(client, other_account, await make_setup(client, other_account))
        r = await send_multipart(client, account, theirs, audio(12))
    elif case == "no-audio":
        r = await client.post(
            "/v1/voicemails",
            files={"to": (None, NYC_RECIPIENT), "use_case_id": (None, use_case)},
            headers=account.headers,
        )
    else:
        r = await send_multipart(client, account, use_case, audio(12), metadata="[1, 2")
    assert_problem(r, status, error_id)
    await assert_nothing_stored(runtime, account.id)


async def test_same_idempotency_key_twice_is_one_send(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, use_case: str
) -> None:
    headers = {**account.headers, "Idempotency-Key": "send-1"}
    files = {"audio": ("r.mp3", audio(12), "audio/mpeg")}
    data = {"to": NYC_RECIPIENT, "use_case_id": use_case}
    first = await client.post("/v1/voicemails", files=files, data=data, headers=headers)
    second = await client.post("/v1/voicemails", files=files, data=data, headers=headers)
    assert first.status_code == 202, first.text
    assert second.status_code == 202, second.text
    assert first.json()["id"] == second.json()["id"]
    assert await count(runtime, t.voicemail_sends) == 1
    assert await count(runtime, t.media, account.id) == 1


async def test_list_filters_detail_and_isolation(
    client: httpx.AsyncClient,
    runtime: Runtime,
    account: TestAccount,
    other_account: TestAccount,
) -> None:
    h = account.headers
    setup_a = await make_setup(client, account)
    setup_b = await make_setup(client, account, name="B")
    uc_a = await make_use_case(client, account, setup_a)
    uc_b = await make_use_case(client, account, setup_b)
    media_id = await upload_media(client, account, audio(10.5), "m.mp3")
    ids: list[str] = []
    for uc, to in ((uc_a, NYC_RECIPIENT), (uc_a, "+13105550123"), (uc_b, NYC_RECIPIENT)):
        r = await client.post(
            "/v1/voicemails", json={"to": to, "use_case_id": uc, "media_id": media_id}, headers=h
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])

    async def listed(query: str) -> list[str]:
        r = await client.get(f"/v1/voicemails?{query}", headers=h)
        assert r.status_code == 200, r.text
        return [item["id"] for item in r.json()["items"]]

    assert await listed("") == ids[::-1]
    assert await listed(f"use_case_id={uc_a}") == ids[1::-1]
    assert await listed(f"setup_id={setup_b}") == [ids[2]]
    assert await listed("to=%2B12125550123") == [ids[2], ids[0]]
    assert await listed("status=accepted") == ids[::-1]
    assert await listed("status=delivered") == []
    assert await listed("created_before=2000-01-01T00:00:00Z") == []
    assert await listed("created_after=2000-01-01T00:00:00Z") == ids[::-1]
    first = await client.get("/v1/voicemails?limit=2", headers=h)
    assert [i["id"] for i in first.json()["items"]] == ids[:0:-1]
    cursor = first.json()["next_cursor"]
    rest = await client.get(f"/v1/voicemails?limit=2&cursor={cursor}", headers=h)
    assert [i["id"] for i in rest.json()["items"]] == [ids[0]]

    now = datetime.now(UTC)
    async with runtime.db.begin() as conn:
        await conn.execute(
            insert(t.send_attempts).values(
                id=new_id("att"), account_id=account.id, send_id=ids[0], to_e164=NYC_RECIPIENT,
                number=1, method="sip_deposit", started_at=now, ended_at=now, sip_code=486,
                duration_ms=1200, outcome="busy", reason="busy",
            )
        )
    detail = await client.get(f"/v1/voicemails/{ids[0]}", headers=h)
    assert detail.status_code == 200, detail.text
    assert detail.json()["attempts"] == [
        {"number": 1, "method": "sip_deposit", "started_at": detail.json()["attempts"][0]["started_at"],
         "ended_at": detail.json()["attempts"][0]["ended_at"], "sip_code": 486,
         "duration_ms": 1200, "outcome": "busy", "reason": "busy"}
    ]
    assert detail.json()["from"] == NYC_SENDER

    oh = other_account.headers
    assert_problem(await client.get(f"/v1/voicemails/{ids[0]}", headers=oh), 404)
    assert_problem(await client.post(f"/v1/voicemails/{ids[1]}/cancel", headers=oh), 404)
    assert (await client.get("/v1/voicemails", headers=oh)).json()["items"] == []


async def test_cancel_before_the_first_attempt_only(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, use_case: str
) -> None:
    h = account.headers
    media_id = await upload_media(client, account, audio(11), "m.mp3")
    ids = []
    for _ in range(2):
        r = await client.post(
            "/v1/voicemails",
            json={"to": NYC_RECIPIENT, "use_case_id": use_case, "media_id": media_id},
            headers=h,
        )
        ids.append(r.json()["id"])
    cancelled = await client.post(f"/v1/voicemails/{ids[0]}/cancel", headers=h)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "skipped"
    assert cancelled.json()["skip_reason"] == "cancelled"
    assert_problem(await client.post(f"/v1/voicemails/{ids[0]}/cancel", headers=h), 409,
                   "voicemail-not-cancellable")
    async with runtime.db.begin() as conn:
        await conn.execute(update(t.voicemail_sends).where(t.voicemail_sends.c.id == ids[1]).values(attempts=1))
    assert_problem(await client.post(f"/v1/voicemails/{ids[1]}/cancel", headers=h), 409)
    assert_problem(await client.post("/v1/voicemails/vmsend_nope/cancel", headers=h), 404)


async def test_stats_arithmetic(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, use_case: str
) -> None:
    h = account.headers
    media_id = await upload_media(client, account, audio(11), "m.mp3")
    ids = []
    for _ in range(6):
        r = await client.post(
            "/v1/voicemails",
            json={"to": NYC_RECIPIENT, "use_case_id": use_case, "media_id": media_id},
            headers=h,
        )
        ids.append(r.json()["id"])
    outcomes = [
        ("delivered", None, None),
        ("delivered", None, None),
        ("delivered", None, None),
        ("failed", "busy", None),
        ("failed", "busy", None),
        ("skipped", None, "suppressed"),
    ]
    async with runtime.db.begin() as conn:
        for send_id, (status, failure, skip) in zip(ids, outcomes, strict=True):
            await conn.execute(
                update(t.voicemail_sends)
                .where(t.voicemail_sends.c.id == send_id)
                .values(status=status, failure_reason=failure, skip_reason=skip)
            )
        await conn.execute(
            update(t.voicemail_sends).where(t.voicemail_sends.c.id == ids[4]).values(failure_reason="no_answer")
        )
    r = await client.get(f"/v1/voicemails/stats?use_case_id={use_case}", headers=h)
    assert r.status_code == 200, r.text
    stats = r.json()
    assert stats["counts"] == {"accepted": 0, "delivered": 3, "failed": 2, "skipped": 1, "paused": 0}
    assert stats["total"] == 6
    assert stats["delivery_rate"] == pytest.approx(0.6)
    assert stats["failure_reasons"] == [{"reason": "busy", "count": 1}, {"reason": "no_answer", "count": 1}]
    empty = await client.get("/v1/voicemails/stats?created_before=2000-01-01T00:00:00Z", headers=h)
    assert empty.json()["total"] == 0 and empty.json()["delivery_rate"] is None
