"""Shared helpers for the ringless API tests: MP3 fixtures, a setup and a use case, DB counts."""

from __future__ import annotations

import io
import secrets
from datetime import UTC, datetime
from functools import cache
from typing import Any

import httpx
import numpy as np
import soundfile as sf
from sqlalchemy import Table, func, insert, select

from afterbeep.app import Runtime
from afterbeep.audio.rendition import telephony_wav_bytes
from afterbeep.db import tables as t
from afterbeep.db.repos.ringless import send_values
from afterbeep.domain.ids import new_id
from afterbeep.domain.ringless import DropTechnique, SendKind, VoicemailSend
from afterbeep.services.ports.storage import media_telephony_key
from afterbeep.telephony.interface import Audio
from tests.conftest import ADMIN_HEADERS, TestAccount

PROBLEM = "application/problem+json"
SENDER = "+12025550177"  # the verified number of the setups written by `insert_setup`
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
        "numbers": [{"e164": NYC_SENDER}, {"e164": LA_SENDER}, {"e164": UNVERIFIED}],
        "deposit_uri": "sip:{to}@vm.carrier.example",
        "deposit_headers": {"X-Deposit": "1"},
    }
    body.update(changes)
    return body


async def verify_sender(client: httpx.AsyncClient, account_id: str, number: str) -> httpx.Response:
    """The operator verifies `number` for the account (the admin API)."""
    return await client.post(
        "/v1/admin/numbers/verify",
        json={"account_id": account_id, "number": number},
        headers=ADMIN_HEADERS,
    )


async def make_setup(client: httpx.AsyncClient, account: TestAccount, **changes: Any) -> str:
    """A setup of `setup_body`; NYC_SENDER and LA_SENDER verified for the account by the
    operator, unless another account has them already."""
    r = await client.post("/v1/telephony-setups", json=setup_body(**changes), headers=account.headers)
    assert r.status_code == 201, r.text
    for number in (NYC_SENDER, LA_SENDER):
        verified = await verify_sender(client, account.id, number)
        assert verified.status_code in (200, 409), verified.text
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
    send = VoicemailSend.accepted(
        account_id=account_id,
        use_case_id=use_case_id,
        setup_id=setup_id,
        media_id=media_id,
        from_e164=from_e164,
        to_e164=to,
        now=rt.clock.now(),
        foreign_id=foreign_id,
        kind=kind,
        technique=technique,
    )
    async with rt.db.begin() as conn:
        await conn.execute(insert(t.voicemail_sends).values(**send_values(send)))
    return send.id


async def insert_setup(
    rt: Runtime,
    account_id: str,
    *,
    trunk_port: int = 9,
    deposit_uri: str = "",
    deposit_headers: dict[str, str] | None = None,
    calls_per_second: float = 50.0,
    max_concurrent: int = 10,
) -> str:
    """A telephony setup with SENDER verified, written straight to the database."""
    now = rt.clock.now()
    setup_id = new_id("setup")
    async with rt.db.begin() as conn:
        await conn.execute(
            insert(t.telephony_setups).values(
                id=setup_id,
                account_id=account_id,
                name="trunk",
                trunk_host="127.0.0.1",
                trunk_port=trunk_port,
                transport="udp",
                username=None,
                password_ref=None,
                outbound_proxy=None,
                from_domain="afterbeep-a.test",
                max_calls_per_second=calls_per_second,
                max_concurrent_calls=max_concurrent,
                deposit_uri=deposit_uri,
                deposit_headers=deposit_headers or {},
                created_at=now,
                updated_at=now,
            )
        )
        await conn.execute(
            insert(t.setup_numbers).values(
                setup_id=setup_id, e164=SENDER, account_id=account_id, verified=True, position=0
            )
        )
        held = select(t.verified_senders).where(t.verified_senders.c.e164 == SENDER)
        if (await conn.execute(held)).first() is None:
            await conn.execute(
                insert(t.verified_senders).values(e164=SENDER, account_id=account_id, verified_at=now)
            )
    return setup_id


async def insert_use_case(
    rt: Runtime,
    account_id: str,
    setup_id: str,
    *,
    channel: str = "voicemail_drop",
    name: str = "drops",
    require_consent: bool = False,
    window: tuple[str, str] = ("00:00", "00:00"),
    max_attempts: int = 3,
    backoff: int = 60,
    cap_attempts: int = 100,
    fallback: str | None = None,
    second_call_delay_ms: int = 2000,
    first_call_bound_ms: int = 6000,
) -> str:
    """A use case sending from SENDER over `setup_id`, written straight to the database."""
    now = rt.clock.now()
    uc_id = new_id("uc")
    async with rt.db.begin() as conn:
        await conn.execute(
            insert(t.use_cases).values(
                id=uc_id,
                account_id=account_id,
                channel=channel,
                name=name,
                description=None,
                setup_id=setup_id,
                sender_selection="fixed",
                sender_number=SENDER,
                require_consent=require_consent,
                window_start=window[0],
                window_end=window[1],
                max_attempts=max_attempts,
                retry_backoff_seconds=backoff,
                cap_attempts=cap_attempts,
                cap_period_hours=72,
                fallback_use_case_id=fallback,
                second_call_delay_ms=second_call_delay_ms,
                first_call_bound_ms=first_call_bound_ms,
                created_at=now,
                updated_at=now,
            )
        )
    return uc_id


async def insert_media(
    rt: Runtime, account_id: str, audio: Audio, *, name: str = "drop.mp3"
) -> str:
    """A media whose telephony rendition is `audio` (8 kHz PCM), stored and written as a row."""
    now = rt.clock.now()
    media_id = new_id("media")
    assert rt.store is not None
    key = media_telephony_key(account_id, media_id)
    wav = telephony_wav_bytes(audio)
    await rt.store.put_bytes(key, wav, "audio/wav")
    async with rt.db.begin() as conn:
        await conn.execute(
            insert(t.media).values(
                id=media_id,
                account_id=account_id,
                name=name,
                format="MP3",
                content_type="audio/mpeg",
                duration_ms=len(audio) // 8,
                sample_rate=8000,
                channels=1,
                size_bytes=len(wav),
                sha256=secrets.token_hex(32),
                original_key=key,
                telephony_key=key,
                created_at=now,
            )
        )
    return media_id
