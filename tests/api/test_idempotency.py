"""Idempotency records: written only for a valid key, scoped by account, swept after 24 hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select

from afterbeep.api.idempotency import RETENTION, IdempotencySweeper
from afterbeep.app import Runtime
from afterbeep.db import tables as t
from tests.conftest import TestAccount

JUNK_REQUESTS = 60


async def idempotency_rows(runtime: Runtime) -> int:
    async with runtime.db.engine.connect() as conn:
        query = select(func.count()).select_from(t.idempotency_keys)
        return int((await conn.execute(query)).scalar_one())


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at


async def test_requests_with_junk_keys_write_no_records(
    runtime: Runtime, client: httpx.AsyncClient, account: TestAccount
) -> None:
    for i in range(JUNK_REQUESTS):
        authorization = [f"Bearer abk_junk{i}", f"Bearer {account.key}x", "Basic xyz", ""][i % 4]
        response = await client.post(
            "/v1/mailboxes",
            json={"name": f"box {i}"},
            headers={"Authorization": authorization, "Idempotency-Key": f"junk-{i}"},
        )
        assert response.status_code == 401, response.text
    assert await idempotency_rows(runtime) == 0


async def test_the_scope_is_the_account_whatever_the_case_of_bearer(
    runtime: Runtime, client: httpx.AsyncClient, account: TestAccount, other_account: TestAccount
) -> None:
    first = await client.post(
        "/v1/mailboxes",
        json={"name": "Support"},
        headers={"Authorization": f"Bearer {account.key}", "Idempotency-Key": "box-1"},
    )
    again = await client.post(
        "/v1/mailboxes",
        json={"name": "Support"},
        headers={"Authorization": f"bearer  {account.key}", "Idempotency-Key": "box-1"},
    )
    assert first.status_code == 201 and again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    # The same key from another account is that account's own.
    theirs = await client.post(
        "/v1/mailboxes",
        json={"name": "Support"},
        headers={**other_account.headers, "Idempotency-Key": "box-1"},
    )
    assert theirs.status_code == 201 and "idempotent-replayed" not in theirs.headers
    assert theirs.json()["id"] != first.json()["id"]
    assert await idempotency_rows(runtime) == 2


async def test_records_expire_after_a_day(
    runtime: Runtime, client: httpx.AsyncClient, account: TestAccount
) -> None:
    headers = {**account.headers, "Idempotency-Key": "box-2"}
    first = await client.post("/v1/mailboxes", json={"name": "Sales"}, headers=headers)
    assert first.status_code == 201
    written = datetime.now(UTC)

    clock = FixedClock(written + RETENTION - timedelta(minutes=5))
    sweeper = IdempotencySweeper(runtime.idempotency, clock)
    assert await sweeper.run_once() == 0
    kept = await client.post("/v1/mailboxes", json={"name": "Sales"}, headers=headers)
    assert kept.headers.get("idempotent-replayed") == "true"

    clock.at = written + RETENTION + timedelta(minutes=5)
    assert await sweeper.run_once() == 1
    assert await idempotency_rows(runtime) == 0
    fresh = await client.post("/v1/mailboxes", json={"name": "Sales"}, headers=headers)
    assert fresh.status_code == 201 and "idempotent-replayed" not in fresh.headers
    assert fresh.json()["id"] != first.json()["id"]


async def test_the_sweeper_runs_as_a_task_until_stopped(runtime: Runtime, account: TestAccount) -> None:
    await runtime.idempotency.reserve(account.id, "old")
    sweeper = IdempotencySweeper(runtime.idempotency, FixedClock(datetime.now(UTC) + 2 * RETENTION))
    sweeper.start()
    await sweeper.stop()
    assert await idempotency_rows(runtime) == 0
