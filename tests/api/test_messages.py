"""Messages over HTTP on both backends: storing, listing, audio with Range, signed links,
folders, deletion, events and tenant isolation."""

from __future__ import annotations

import io
import json
import random
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from afterbeep.domain.errors import InvalidInput, NotFound
from afterbeep.domain.messages import Message
from afterbeep.services.messages import MessageService, message_audio_link
from tests.conftest import make_settings

if TYPE_CHECKING:
    from tests.conftest import Backend, TestAccount

PROBLEM = "application/problem+json"
START = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = START) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


def wav_bytes(seconds: float, seed: int, rate: int = 8000) -> bytes:
    rng = random.Random(seed)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(rng.randbytes(int(rate * seconds) * 2))
    return buffer.getvalue()


def assert_problem(
    response: httpx.Response, status: int, error_id: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if error_id is not None:
        assert body["error_id"] == error_id, body
    return body


@dataclass
class Deposit:
    """Leaves messages the way the SIP deposit will: a WAV on disk, then `store_message`."""

    service: MessageService
    account_id: str
    mailbox_id: str
    tmp: Path

    async def __call__(
        self, call_id: str, seconds: float = 0.5, seed: int = 0, **extra: Any
    ) -> tuple[Message, bytes]:
        data = wav_bytes(seconds, seed)
        path = self.tmp / f"deposit-{len(list(self.tmp.iterdir()))}.wav"
        path.write_bytes(data)
        fields: dict[str, Any] = {
            "account_id": self.account_id,
            "mailbox_id": self.mailbox_id,
            "call_id": call_id,
            "caller": "+12025550123",
            "caller_name": "Ada",
            "callee": "+12025550100",
            "duration_ms": int(seconds * 1000),
            **extra,
        }
        return await self.service.store_message(wav_path=path, **fields), data


async def make_mailbox(
    client: httpx.AsyncClient, account: TestAccount, **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/mailboxes", json={"name": "Front desk", **fields}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def deposit(
    client: httpx.AsyncClient,
    runtime: Runtime,
    account: TestAccount,
    clock: FakeClock,
    tmp_path: Path,
) -> Deposit:
    assert runtime.store is not None
    box = await make_mailbox(client, account)
    service = MessageService(runtime.uow, runtime.store, clock)
    return Deposit(service, account.id, box["id"], tmp_path)


async def message_rows(runtime: Runtime, account_id: str) -> int:
    async with runtime.db.engine.connect() as conn:
        query = select(func.count()).select_from(t.messages)
        query = query.where(t.messages.c.account_id == account_id)
        return int((await conn.execute(query)).scalar_one())


# -- Range parsing (pure) ---------------------------------------------------------


# -- storing ----------------------------------------------------------------------


async def test_store_message_uploads_then_lists(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, deposit: Deposit
) -> None:
    assert runtime.store is not None
    message, data = await deposit("call_01", seconds=1.0, seed=1)
    assert message.id.startswith("msg_")
    assert message.audio_key == f"{account.id}/vm/call_01.wav"
    assert await runtime.store.get_bytes(message.audio_key) == data

    response = await client.get(f"/v1/messages/{message.id}", headers=account.headers)
    assert response.status_code == 200
    assert response.json() == {
        "id": message.id,
        "mailbox_id": deposit.mailbox_id,
        "call_id": "call_01",
        "caller": "+12025550123",
        "caller_name": "Ada",
        "callee": "+12025550100",
        "duration_ms": 1000,
        "folder": "new",
        "read": False,
        "size_bytes": len(data),
        "recovered": False,
        "created_at": "2025-03-04T09:30:00.000Z",
        "updated_at": "2025-03-04T09:30:00.000Z",
        # A MessageService built without a transcription queue transcribes nothing.
        "transcript": None,
        "transcription_status": "skipped",
        "transcription_reason": "transcription is off",
    }
    listed = await client.get(
        f"/v1/mailboxes/{deposit.mailbox_id}/messages", headers=account.headers
    )
    assert listed.json() == {"items": [response.json()], "next_cursor": None}


async def test_same_call_id_gives_one_message(
    runtime: Runtime, account: TestAccount, deposit: Deposit
) -> None:
    assert runtime.store is not None
    first, data = await deposit("call_dup", seed=1)
    again, _ = await deposit("call_dup", seed=2, recovered=True)
    assert again == first
    assert await message_rows(runtime, account.id) == 1
    assert await runtime.store.get_bytes(first.audio_key) == data


async def test_store_message_refuses_bad_targets_and_uploads_nothing(
    runtime: Runtime, account: TestAccount, other_account: TestAccount, deposit: Deposit
) -> None:
    assert runtime.store is not None
    theirs = Deposit(deposit.service, other_account.id, deposit.mailbox_id, deposit.tmp)
    with pytest.raises(NotFound):
        await theirs("call_x")
    missing = Deposit(deposit.service, account.id, "vm_01jg8asp59ps9rtt7azhrhvcre", deposit.tmp)
    with pytest.raises(NotFound):
        await missing("call_y")
    for bad in ("../etc", "a/b", ".hidden", ""):
        with pytest.raises(InvalidInput):
            await deposit(bad)
    with pytest.raises(InvalidInput):
        await deposit("call_z", duration_ms=-1)
    assert await runtime.store.list("") == []
    assert await message_rows(runtime, account.id) == 0


async def test_caller_details_are_cleaned_not_refused(
    client: httpx.AsyncClient, account: TestAccount, deposit: Deposit
) -> None:
    message, _ = await deposit(
        "call_odd",
        caller=" sip:anon@example.org ",
        caller_name="Ad\x00a\x1b" + "x" * 300,
        callee="",
    )
    assert message.caller == "sip:anon@example.org"
    assert message.caller_name == "Ada" + "x" * 197
    assert message.callee is None
    fetched = await client.get(f"/v1/messages/{message.id}", headers=account.headers)
    assert fetched.json()["caller_name"] == message.caller_name


async def test_usage_and_full(
    client: httpx.AsyncClient, account: TestAccount, deposit: Deposit
) -> None:
    url = f"/v1/mailboxes/{deposit.mailbox_id}"
    await client.patch(url, json={"max_messages": 2}, headers=account.headers)
    _, one = await deposit("call_1", seed=1)
    assert not await deposit.service.is_full(account.id, deposit.mailbox_id)
    _, two = await deposit("call_2", seconds=0.25, seed=2)
    usage = await deposit.service.mailbox_usage(account.id, deposit.mailbox_id)
    assert (usage.messages, usage.bytes) == (2, len(one) + len(two))
    assert await deposit.service.is_full(account.id, deposit.mailbox_id)
    body = (await client.get(url, headers=account.headers)).json()
    assert body["usage"] == {"messages": 2, "bytes": len(one) + len(two), "full": True}
    listed = (await client.get("/v1/mailboxes", headers=account.headers)).json()
    assert listed["items"][0]["usage"] == body["usage"]


# -- listing ----------------------------------------------------------------------


async def test_list_filters_by_folder_and_time_and_pages(
    client: httpx.AsyncClient, account: TestAccount, deposit: Deposit, clock: FakeClock
) -> None:
    made: list[Message] = []
    for i in range(5):
        made.append((await deposit(f"call_{i}", seed=i))[0])
        clock.advance(minutes=10)
    url = f"/v1/mailboxes/{deposit.mailbox_id}/messages"
    saved = await client.patch(
        f"/v1/messages/{made[1].id}", json={"folder": "saved"}, headers=account.headers
    )
    assert saved.status_code == 200

    async def ids(**params: Any) -> list[str]:
        response = await client.get(url, params=params, headers=account.headers)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    newest_first = [m.id for m in reversed(made)]
    assert await ids() == newest_first
    assert await ids(folder="saved") == [made[1].id]
    assert await ids(folder="new") == [m for m in newest_first if m != made[1].id]
    assert await ids(folder="urgent") == []
    assert await ids(created_after="2025-03-04T09:50:00Z") == newest_first[:3]
    assert await ids(created_after="2025-03-04T11:00:00+01:00") == newest_first[:2]
    assert await ids(created_after="2025-03-04T10:05:00") == newest_first[:1]
    assert await ids(created_before="2025-03-04T09:50:00Z") == newest_first[3:]
    assert await ids(
        created_after="2025-03-04T09:50:00Z", created_before="2025-03-04T10:10:00Z"
    ) == newest_first[1:3]
    assert await ids(created_after="2025-03-04T09:40:00Z", folder="new") == [
        made[4].id,
        made[3].id,
        made[2].id,
    ]

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(url, params=params, headers=account.headers)).json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == newest_first

    bad_queries: list[dict[str, Any]] = [
        {"folder": "trash"},
        {"created_after": "yesterday"},
        {"created_after": "0001-01-01T00:00:00+01:00"},
        {"created_before": "1741081800"},
        {"since": "2025-03-04T09:50:00Z"},
        {"limit": 0},
        {"limit": 201},
        {"cursor": "***"},
    ]
    for bad in bad_queries:
        assert_problem(await client.get(url, params=bad, headers=account.headers), 422)


# -- audio ------------------------------------------------------------------------


async def test_audio_download_and_ranges(
    client: httpx.AsyncClient, account: TestAccount, deposit: Deposit
) -> None:
    message, data = await deposit("call_audio", seconds=1.0, seed=7)
    url = f"/v1/messages/{message.id}/audio"
    size = len(data)

    whole = await client.get(url, headers=account.headers)
    assert whole.status_code == 200
    assert whole.content == data
    assert whole.headers["content-type"] == "audio/wav"
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-length"] == str(size)
    etag = whole.headers["etag"]

    cases = {
        "bytes=0-99": (0, 99),
        "bytes=1000-": (1000, size - 1),
        "bytes=-44": (size - 44, size - 1),
        f"bytes=10-{size + 100}": (10, size - 1),
    }
    for header, (start, end) in cases.items():
        part = await client.get(url, headers={**account.headers, "Range": header})
        assert part.status_code == 206, header
        assert part.headers["content-range"] == f"bytes {start}-{end}/{size}"
        assert part.content == data[start : end + 1]
        assert part.headers["content-length"] == str(end - start + 1)

    beyond = await client.get(url, headers={**account.headers, "Range": f"bytes={size}-"})
    assert_problem(beyond, 416, "range-not-satisfiable")
    assert beyond.headers["content-range"] == f"bytes */{size}"

    ignored = await client.get(url, headers={**account.headers, "Range": "items=0-1"})
    assert ignored.status_code == 200 and ignored.content == data
    stale = await client.get(
        url, headers={**account.headers, "Range": "bytes=0-9", "If-Range": '"stale"'}
    )
    assert stale.status_code == 200 and stale.content == data
    fresh = await client.get(
        url, headers={**account.headers, "Range": "bytes=0-9", "If-Range": etag}
    )
    assert fresh.status_code == 206 and fresh.content == data[:10]


# -- signed links -----------------------------------------------------------------


def link_path(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


async def test_signed_link_works_without_a_key(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, deposit: Deposit
) -> None:
    message, data = await deposit("call_link", seed=3)
    response = await client.post(f"/v1/messages/{message.id}/audio-link", headers=account.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["url"].startswith(runtime.settings.resolved_public_url() + "/v1/links/messages/")
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert timedelta(0) < expires - datetime.now(UTC) <= timedelta(minutes=15)

    path, params = link_path(body["url"])
    fetched = await client.get(path, params=params)
    assert fetched.status_code == 200 and fetched.content == data
    assert fetched.headers["content-type"] == "audio/wav"
    part = await client.get(path, params=params, headers={"Range": "bytes=4-7"})
    assert part.status_code == 206 and part.content == data[4:8]

    short = await client.post(
        f"/v1/messages/{message.id}/audio-link", json={"ttl_seconds": 60}, headers=account.headers
    )
    assert short.status_code == 200
    for ttl in (0, 901):
        too = await client.post(
            f"/v1/messages/{message.id}/audio-link",
            json={"ttl_seconds": ttl},
            headers=account.headers,
        )
        assert_problem(too, 422)


async def test_tampered_links_are_refused(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, deposit: Deposit
) -> None:
    message, _ = await deposit("call_tamper", seed=4)
    other, _ = await deposit("call_other", seed=5)
    body = (
        await client.post(f"/v1/messages/{message.id}/audio-link", headers=account.headers)
    ).json()
    path, params = link_path(body["url"])
    sig = params["sig"]
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    forged_key = message_audio_link(
        runtime.settings.resolved_public_url(), b"not-the-key", message.id, now=datetime.now(UTC)
    )
    attempts = [
        (path, {**params, "sig": flipped}),
        (path, {**params, "exp": str(int(params["exp"]) + 1)}),
        (path, {**params, "exp": str(int(params["exp"]) + 100_000)}),
        (path.replace(message.id, other.id), params),
        link_path(forged_key.url),
    ]
    for attempt_path, attempt_params in attempts:
        assert_problem(await client.get(attempt_path, params=attempt_params), 403, "invalid-link")
    assert_problem(await client.get(path, params={"exp": params["exp"]}), 422)


@pytest.fixture
async def clocked(
    backend: Backend, clock: FakeClock
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    rt = Runtime(make_settings(backend), clock=clock)
    await rt.start(workers=False)
    try:
        transport = httpx.ASGITransport(app=rt.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://afterbeep.test") as c:
            yield rt, c
    finally:
        await rt.stop()


async def test_expired_link_is_refused(
    clocked: tuple[Runtime, httpx.AsyncClient], clock: FakeClock, tmp_path: Path
) -> None:
    rt, client = clocked
    assert rt.store is not None
    issued = await rt.accounts.create_account("Clocked")
    headers = {"Authorization": f"Bearer {issued.secret}"}
    box = (await client.post("/v1/mailboxes", json={"name": "Box"}, headers=headers)).json()
    service = MessageService(rt.uow, rt.store, clock)
    message, data = await Deposit(service, issued.account_id, box["id"], tmp_path)("call_exp")

    body = (await client.post(f"/v1/messages/{message.id}/audio-link", headers=headers)).json()
    assert body["expires_at"] == "2025-03-04T09:45:00.000Z"
    path, params = link_path(body["url"])
    clock.advance(minutes=14, seconds=59)
    assert (await client.get(path, params=params)).content == data
    clock.advance(seconds=1)
    assert_problem(await client.get(path, params=params), 403, "invalid-link")


# -- changing and deleting --------------------------------------------------------


async def subscribe(client: httpx.AsyncClient, account: TestAccount) -> None:
    response = await client.post(
        "/v1/webhooks",
        json={
            "url": "https://hooks.example/afterbeep",
            "events": ["message.created", "message.updated", "message.deleted"],
        },
        headers=account.headers,
    )
    assert response.status_code == 201, response.text


async def events_of(runtime: Runtime, account_id: str) -> list[tuple[str, dict[str, Any]]]:
    d = t.webhook_deliveries.c
    async with runtime.db.engine.connect() as conn:
        query = select(d.event, d.payload).where(d.account_id == account_id).order_by(d.id)
        rows = (await conn.execute(query)).all()
    return [(row.event, json.loads(row.payload)["data"]) for row in rows]


async def test_patch_and_delete_publish_events(
    client: httpx.AsyncClient,
    runtime: Runtime,
    account: TestAccount,
    deposit: Deposit,
    clock: FakeClock,
) -> None:
    assert runtime.store is not None
    await subscribe(client, account)
    message, _ = await deposit("call_events", seed=6)
    url = f"/v1/messages/{message.id}"

    runtime_clock_patch = await client.patch(
        url, json={"folder": "saved", "read": True}, headers=account.headers
    )
    assert runtime_clock_patch.status_code == 200, runtime_clock_patch.text
    patched = runtime_clock_patch.json()
    assert (patched["folder"], patched["read"]) == ("saved", True)
    assert (await client.get(url, headers=account.headers)).json() == patched
    unchanged = await client.patch(url, json={"read": True}, headers=account.headers)
    assert unchanged.json() == patched
    marked = await client.patch(url, json={"read": False}, headers=account.headers)
    assert (marked.json()["folder"], marked.json()["read"]) == ("saved", False)

    for bad in ({"folder": "trash"}, {"folder": None}, {"read": None}, {"starred": True}):
        assert_problem(await client.patch(url, json=bad, headers=account.headers), 422)

    deleted = await client.delete(url, headers=account.headers)
    assert deleted.status_code == 204 and deleted.content == b""
    assert_problem(await client.get(url, headers=account.headers), 404)
    assert_problem(await client.get(f"{url}/audio", headers=account.headers), 404)
    assert_problem(await client.delete(url, headers=account.headers), 404)
    assert not await runtime.store.exists(message.audio_key)
    assert await message_rows(runtime, account.id) == 0

    events = await events_of(runtime, account.id)
    assert [name for name, _ in events] == [
        "message.created",
        "message.updated",
        "message.updated",
        "message.deleted",
    ]
    assert all(data["id"] == message.id for _, data in events)
    assert events[0][1]["folder"] == "new" and events[1][1]["folder"] == "saved"
    assert events[3][1]["read"] is False


# -- tenant isolation -------------------------------------------------------------


async def test_another_account_gets_404_for_every_message_route(
    client: httpx.AsyncClient,
    runtime: Runtime,
    account: TestAccount,
    other_account: TestAccount,
    deposit: Deposit,
) -> None:
    assert runtime.store is not None
    message, data = await deposit("call_mine", seed=8)
    url = f"/v1/messages/{message.id}"
    them = other_account.headers
    assert_problem(await client.get(url, headers=them), 404)
    assert_problem(await client.get(f"{url}/audio", headers=them), 404)
    assert_problem(await client.get(f"{url}/audio", headers={**them, "Range": "bytes=0-1"}), 404)
    assert_problem(await client.post(f"{url}/audio-link", headers=them), 404)
    assert_problem(await client.patch(url, json={"read": True}, headers=them), 404)
    assert_problem(await client.delete(url, headers=them), 404)
    assert_problem(
        await client.get(f"/v1/mailboxes/{deposit.mailbox_id}/messages", headers=them), 404
    )

    mine = await client.get(url, headers=account.headers)
    assert mine.status_code == 200 and mine.json()["read"] is False
    assert await runtime.store.get_bytes(message.audio_key) == data
    for malformed in ("nope", "msg_%00", "vm_01jg8asp59ps9rtt7azhrhvcre"):
        assert_problem(await client.get(f"/v1/messages/{malformed}", headers=them), 404)
        assert_problem(await client.get(f"/v1/messages/{malformed}/audio", headers=them), 404)
    assert_problem(await client.get(url), 401)
    assert_problem(await client.get(f"{url}/audio"), 401)
