"""Shared helpers for the ringless API tests: MP3 fixtures, a setup and a use case, DB counts."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from functools import cache
from typing import Any

import httpx
import numpy as np
import soundfile as sf
from sqlalchemy import Table, func, insert, select

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from afterbeep.db.repos.ringless import send_values
from afterbeep.domain.ids import new_id
from afterbeep.domain.ringless import DropTechnique, SendKind, SendStatus, VoicemailSend
from tests.conftest import TestAccount

PROBLEM = "application/problem+json"
NYC_SENDER = "+12125550100"
LA_SENDER = "+13105550100"
UNVERIFIED = "+12125550199"
NYC_RECIPIENT = "+12125550123"


@cache
def audio(seconds: float, fmt: str = "MP3", rate: int = 16000) -> bytes:
    """A 440 Hz tone (mono, 0.3 full scale) encoded with soundfile."""
    t_axis = np.arange(int(rate * seconds)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t_axis)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt)
    return buffer.getvalue()


def setup_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Carrier A",
        "trunk_host": "sip.carrier.example",
        "trunk_port": 5060,
        "transport": "udp",
        "username": "acme",
        "password": "s3cret-pass",
        "max_calls_per_second": 2,
        "max_concurrent_calls": 5,
        "numbers": [
            {"e164": NYC_SENDER, "verified": True},
            {"e164": LA_SENDER, "verified": True},
            {"e164": UNVERIFIED, "verified": False},
        ],
        "deposit_uri": "sip:{to}@vm.carrier.example",
        "deposit_headers": {"X-Deposit": "1"},
    }
    body.update(changes)
    return body


async def make_setup(client: httpx.AsyncClient, account: TestAccount, **changes: Any) -> str:
    r = await client.post("/v1/telephony-setups", json=setup_body(**changes), headers=account.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def make_use_case(
    client: httpx.AsyncClient, account: TestAccount, setup_id: str, **changes: Any
) -> str:
    body: dict[str, Any] = {
        "channel": "ringless_voicemail",
        "name": "Appointment reminders",
        "setup_id": setup_id,
        "sender_selection": "local_presence",
    }
    body.update(changes)
    r = await client.post("/v1/use-cases", json=body, headers=account.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def count(runtime: Runtime, table: Table, account_id: str | None = None) -> int:
    query = select(func.count()).select_from(table)
    if account_id is not None:
        query = query.where(table.c.account_id == account_id)
    async with runtime.db.begin() as conn:
        return int((await conn.execute(query)).scalar_one())


async def assert_nothing_stored(runtime: Runtime, account_id: str) -> None:
    assert runtime.store is not None
    assert await count(runtime, t.voicemail_sends) == 0
    assert await count(runtime, t.media, account_id) == 0
    assert await runtime.store.list(f"{account_id}/") == []
    assert list((runtime.data_dir / "tmp").iterdir()) == []


def assert_problem(response: httpx.Response, status: int, error_id: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    if error_id is not None:
        assert response.json()["error_id"] == error_id, response.json()


async def subscribe(runtime: Runtime, account_id: str, event: str) -> None:
    """A webhook row written directly, so events for the account are queued."""
    async with runtime.db.begin() as conn:
        await conn.execute(
            insert(t.webhooks).values(
                id=new_id("wh"),
                account_id=account_id,
                url="http://127.0.0.1:9/hook",
                events=[event],
                secret="whsec_test",
                created_at=datetime.now(UTC),
            )
        )


async def insert_accepted_send(
    rt: Runtime,
    account_id: str,
    setup_id: str,
    use_case_id: str,
    media_id: str,
    *,
    from_e164: str,
    to: str,
    foreign_id: str | None = "f-1",
    kind: SendKind = SendKind.RINGLESS,
    technique: DropTechnique | None = None,
) -> str:
    """A send row due now, written straight to the database (no API, no audio checks)."""
    now = rt.clock.now()
    send = VoicemailSend(
        id=new_id("drop" if kind is SendKind.DROP else "vmsend"),
        account_id=account_id,
        use_case_id=use_case_id,
        setup_id=setup_id,
        media_id=media_id,
        from_e164=from_e164,
        to_e164=to,
        foreign_id=foreign_id,
        metadata=None,
        send_at=None,
        status=SendStatus.ACCEPTED,
        attempts=0,
        next_attempt_at=now,
        claimed_until=None,
        method=None,
        failure_reason=None,
        skip_reason=None,
        created_at=now,
        updated_at=now,
        kind=kind,
        technique=technique,
    )
    async with rt.db.begin() as conn:
        await conn.execute(insert(t.voicemail_sends).values(**send_values(send)))
    return send.id
