"""Shared helpers for the drop tests: rows written straight into the tables, a scripted
DropDialer, and a DeliveryWorker around any dialer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from afterbeep.db.repos.delivery import SqlDeliveryStore
from afterbeep.domain.drops import DropResult
from afterbeep.domain.ringless import DropTechnique, SendKind
from afterbeep.services.delivery import DeliveryService
from afterbeep.services.ports.drops import DropDialer, DropRequest
from afterbeep.telephony.delivery_worker import DeliveryWorker
from tests.ringless.support import (
    SENDER,
    insert_accepted_send,
    insert_media,
    insert_setup,
    insert_use_case,
)

__all__ = [
    "RECIPIENT",
    "SENDER",
    "ScriptedDropper",
    "attempts_of",
    "events_of",
    "insert_media",
    "insert_send",
    "insert_setup",
    "insert_use_case",
    "row_of",
    "worker_with",
]

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
