"""Shared helpers for the drop tests: rows written straight into the tables, a scripted
DropDialer, and a DeliveryWorker around any dialer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, select

from afterbeep.app import Runtime
from afterbeep.audio.rendition import telephony_wav_bytes
from afterbeep.db import tables as t
from afterbeep.db.repos.delivery import SqlDeliveryStore
from afterbeep.domain.drops import DropResult
from afterbeep.domain.ids import new_id
from afterbeep.domain.ringless import DropTechnique, SendKind
from afterbeep.services.delivery import DeliveryService
from afterbeep.services.ports.drops import DropDialer, DropRequest
from afterbeep.services.ports.storage import media_telephony_key
from afterbeep.telephony.delivery_worker import DeliveryWorker
from afterbeep.telephony.interface import Audio
from tests.ringless.support import insert_accepted_send

SENDER = "+12025550177"
RECIPIENT = "+12025550188"


class ScriptedDropper:
    """A DropDialer answering each drop with the next scripted result; keeps the requests."""

    def __init__(self, *results: DropResult) -> None:
        self.results = list(results)
        self.requests: list[DropRequest] = []

    async def drop(self, request: DropRequest) -> DropResult:
        self.requests.append(request)
        return self.results.pop(0)


def worker_with(rt: Runtime, dropper: DropDialer | None) -> DeliveryWorker:
    assert rt.store is not None and rt.deposits is not None
    service = DeliveryService(
        SqlDeliveryStore(rt.db),
        rt.store,
        rt.clock,
        rt.call_router(),
        rt.deposits,
        None,
        dropper=dropper,
    )
    return DeliveryWorker(SqlDeliveryStore(rt.db), service, rt.clock, lease=timedelta(minutes=5))


async def insert_setup(
    rt: Runtime,
    account_id: str,
    *,
    trunk_port: int = 9,
    deposit_uri: str = "",
    calls_per_second: float = 50.0,
    max_concurrent: int = 10,
) -> str:
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
                deposit_headers={},
                created_at=now,
                updated_at=now,
            )
        )
        await conn.execute(
            insert(t.setup_numbers).values(
                setup_id=setup_id, e164=SENDER, account_id=account_id, verified=True, position=0
            )
        )
    return setup_id


async def insert_use_case(
    rt: Runtime,
    account_id: str,
    setup_id: str,
    *,
    channel: str = "voicemail_drop",
    max_attempts: int = 3,
    backoff: int = 60,
    fallback: str | None = None,
    second_call_delay_ms: int = 2000,
    first_call_bound_ms: int = 6000,
) -> str:
    now = rt.clock.now()
    uc_id = new_id("uc")
    async with rt.db.begin() as conn:
        await conn.execute(
            insert(t.use_cases).values(
                id=uc_id,
                account_id=account_id,
                channel=channel,
                name="drops",
                description=None,
                setup_id=setup_id,
                sender_selection="fixed",
                sender_number=SENDER,
                require_consent=False,
                window_start="00:00",
                window_end="00:00",
                max_attempts=max_attempts,
                retry_backoff_seconds=backoff,
                cap_attempts=100,
                cap_period_hours=72,
                fallback_use_case_id=fallback,
                second_call_delay_ms=second_call_delay_ms,
                first_call_bound_ms=first_call_bound_ms,
                created_at=now,
                updated_at=now,
            )
        )
    return uc_id


async def insert_media(rt: Runtime, account_id: str, audio: Audio) -> str:
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
                name="drop.mp3",
                format="MP3",
                content_type="audio/mpeg",
                duration_ms=len(audio) // 8,
                sample_rate=8000,
                channels=1,
                size_bytes=len(wav),
                sha256="0" * 64,
                original_key=key,
                telephony_key=key,
                created_at=now,
            )
        )
    return media_id


async def insert_send(
    rt: Runtime,
    account_id: str,
    setup_id: str,
    use_case_id: str,
    media_id: str,
    *,
    to: str = RECIPIENT,
    kind: str = "drop",
    technique: str | None = "two_call",
) -> str:
    return await insert_accepted_send(
        rt,
        account_id,
        setup_id,
        use_case_id,
        media_id,
        from_e164=SENDER,
        to=to,
        kind=SendKind(kind),
        technique=DropTechnique(technique) if kind == "drop" and technique else None,
    )


async def row_of(rt: Runtime, send_id: str) -> Any:
    async with rt.db.begin() as conn:
        s = t.voicemail_sends
        return (await conn.execute(select(s).where(s.c.id == send_id))).one()


async def attempts_of(rt: Runtime, send_id: str) -> Sequence[Any]:
    async with rt.db.begin() as conn:
        a = t.send_attempts.c
        query = select(t.send_attempts).where(a.send_id == send_id).order_by(a.number)
        return list((await conn.execute(query)).all())


async def events_of(rt: Runtime, event: str) -> list[dict[str, Any]]:
    async with rt.db.begin() as conn:
        d = t.webhook_deliveries.c
        rows = (await conn.execute(select(d.payload).where(d.event == event))).all()
    return [json.loads(row.payload)["data"] for row in rows]
