"""The delivery engine on drops, with a scripted DropDialer and a real database: every outcome,
retries with the use case's backoff, the webhook, and a ringless send falling back to a drop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from afterbeep.app import Runtime
from afterbeep.domain.drops import DropOutcome, DropResult
from afterbeep.domain.ringless import DropTechnique
from tests.conftest import Backend
from tests.drops.support import (
    RECIPIENT,
    SENDER,
    ScriptedDropper,
    attempts_of,
    events_of,
    insert_media,
    insert_send,
    insert_setup,
    insert_use_case,
    row_of,
    worker_with,
)
from tests.e2e.rig import api_of, speech
from tests.ringless.support import subscribe
from tests.ringless.test_delivery import NOON_EDT, FakeClock, account_id_of, runtime_of

SQLITE = pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
LEFT = DropResult(
    DropOutcome.LEFT_VOICEMAIL, 200, None, 14_000, "machine_end_beep", 3300, 3250
)
HUMAN = DropResult(DropOutcome.HUMAN_ANSWERED, 200, None, 1500, "human", 1300)
BUSY = DropResult(DropOutcome.BUSY, 486, "486 Busy Here", 40)
NO_ANSWER = DropResult(DropOutcome.NO_ANSWER, 408, "408 Request Timeout", 45_000)


class Env:
    def __init__(self, rt: Runtime, clock: FakeClock, account_id: str) -> None:
        self.rt, self.clock, self.account_id = rt, clock, account_id

    async def drop(self, *, technique: str = "two_call", **use_case: object) -> tuple[str, str]:
        setup = await insert_setup(self.rt, self.account_id)
        uc = await insert_use_case(self.rt, self.account_id, setup, **use_case)  # type: ignore[arg-type]
        media = await insert_media(self.rt, self.account_id, speech(10.0))
        return await insert_send(self.rt, self.account_id, setup, uc, media, technique=technique), uc


@pytest.fixture
async def env(backend: Backend) -> AsyncIterator[Env]:
    clock = FakeClock(NOON_EDT)
    async with runtime_of(backend, clock) as rt, api_of(rt) as api:
        yield Env(rt, clock, await account_id_of(rt, api))


async def test_left_voicemail_is_final_with_its_detection_and_event(env: Env) -> None:
    await subscribe(env.rt, env.account_id, "drop.status")
    send_id, uc = await env.drop(technique="single")
    dropper = ScriptedDropper(LEFT)
    assert await worker_with(env.rt, dropper).run_once() == 1
    row = await row_of(env.rt, send_id)
    assert (row.status, row.method, row.attempts) == ("left_voicemail", "drop", 1)
    assert (row.answered_by, row.detection_ms, row.beep_ms) == ("machine_end_beep", 3300, 3250)
    assert row.delivered_at is not None and row.failure_reason is None
    (attempt,) = await attempts_of(env.rt, send_id)
    assert (attempt.outcome, attempt.sip_code, attempt.method) == ("left_voicemail", 200, "drop")
    (request,) = dropper.requests
    assert request.technique is DropTechnique.SINGLE
    assert request.to_uri == f"sip:{RECIPIENT}@127.0.0.1:9"
    assert request.from_uri == f"sip:{SENDER}@afterbeep-a.test"
    assert len(request.audio) == 80_000
    assert await events_of(env.rt, "drop.status") == [
        {
            "id": send_id,
            "status": "left_voicemail",
            "failure_reason": None,
            "skip_reason": None,
            "to": RECIPIENT,
            "foreign_id": "f-1",
            "use_case_id": uc,
            "campaign_id": None,
            "answered_by": "machine_end_beep",
            "detection_ms": 3300,
            "beep_ms": 3250,
        }
    ]
    assert await events_of(env.rt, "voicemail.status") == []


async def test_a_person_is_final_at_once(env: Env) -> None:
    send_id, _ = await env.drop()
    dropper = ScriptedDropper(HUMAN)
    await worker_with(env.rt, dropper).run_once()
    row = await row_of(env.rt, send_id)
    assert (row.status, row.answered_by, row.attempts) == ("human_answered", "human", 1)
    assert dropper.requests[0].technique is DropTechnique.TWO_CALL
    assert dropper.requests[0].second_call_delay_ms == 2000
    assert dropper.requests[0].first_call_bound_ms == 6000


@pytest.mark.parametrize(
    ("result", "final"), [(BUSY, "busy"), (NO_ANSWER, "no_answer")], ids=["busy", "no_answer"]
)
async def test_busy_and_no_answer_are_retried_with_backoff_then_final(
    env: Env, result: DropResult, final: str
) -> None:
    send_id, _ = await env.drop(max_attempts=3, backoff=60)
    worker = worker_with(env.rt, ScriptedDropper(result, result, result))
    seen = []
    for wait in (0, 59, 1, 119, 1):  # backoff doubles: 60 s, then 120 s
        env.clock.advance(wait)
        await worker.run_once()
        row = await row_of(env.rt, send_id)
        seen.append((row.status, row.attempts))
    assert seen == [
        ("accepted", 1),
        ("accepted", 1),
        ("accepted", 2),
        ("accepted", 2),
        (final, 3),
    ]
    attempts = await attempts_of(env.rt, send_id)
    assert [a.outcome for a in attempts] == [final] * 3
    assert [a.sip_code for a in attempts] == [result.sip_code] * 3


@pytest.mark.parametrize("reason", ["sit_tone", "fax", "invalid_number"])
async def test_final_failures_are_not_retried(env: Env, reason: str) -> None:
    send_id, _ = await env.drop()
    await worker_with(env.rt, ScriptedDropper(DropResult(DropOutcome.FAILED, 404, reason))).run_once()
    row = await row_of(env.rt, send_id)
    assert (row.status, row.failure_reason, row.attempts) == ("failed", reason, 1)


async def test_trunk_errors_are_retried_then_failed(env: Env) -> None:
    send_id, _ = await env.drop(max_attempts=2, backoff=10)
    error = DropResult(DropOutcome.FAILED, 503, "trunk_error")
    worker = worker_with(env.rt, ScriptedDropper(error, error))
    await worker.run_once()
    assert (await row_of(env.rt, send_id)).status == "accepted"
    env.clock.advance(10)
    await worker.run_once()
    row = await row_of(env.rt, send_id)
    assert (row.status, row.failure_reason, row.attempts) == ("failed", "trunk_error", 2)


async def test_no_dialer_on_this_node_is_a_trunk_error(env: Env) -> None:
    send_id, _ = await env.drop(max_attempts=1)
    await worker_with(env.rt, None).run_once()
    row = await row_of(env.rt, send_id)
    assert (row.status, row.failure_reason) == ("failed", "trunk_error")


async def test_a_ringless_send_without_a_deposit_method_falls_back_to_a_drop(env: Env) -> None:
    rt, account = env.rt, env.account_id
    await subscribe(rt, account, "voicemail.status")
    drop_setup = await insert_setup(rt, account, trunk_port=5099)
    drop_uc = await insert_use_case(
        rt, account, drop_setup, second_call_delay_ms=1500, first_call_bound_ms=4000
    )
    ringless_setup = await insert_setup(rt, account)  # no deposit_uri
    ringless_uc = await insert_use_case(
        rt, account, ringless_setup, channel="ringless_voicemail", fallback=drop_uc, backoff=30
    )
    media = await insert_media(rt, account, speech(10.0))
    send_id = await insert_send(
        rt, account, ringless_setup, ringless_uc, media, kind="ringless"
    )
    dropper = ScriptedDropper(BUSY, LEFT)
    worker = worker_with(rt, dropper)
    await worker.run_once()
    row = await row_of(rt, send_id)
    assert (row.status, row.failure_reason, row.attempts) == ("accepted", "busy", 1)
    env.clock.advance(30)
    await worker.run_once()
    row = await row_of(rt, send_id)
    assert (row.status, row.method, row.attempts, row.answered_by) == (
        "delivered",
        "drop",
        2,
        "machine_end_beep",
    )
    first, _second = dropper.requests
    assert first.setup_id == drop_setup and first.to_uri.endswith("@127.0.0.1:5099")
    assert (first.second_call_delay_ms, first.first_call_bound_ms) == (1500, 4000)
    events = await events_of(rt, "voicemail.status")
    assert [e["status"] for e in events] == ["delivered"]


async def test_a_ringless_fallback_reached_by_a_person_fails_with_the_reason(env: Env) -> None:
    rt, account = env.rt, env.account_id
    drop_uc = await insert_use_case(rt, account, await insert_setup(rt, account))
    ringless_setup = await insert_setup(rt, account)
    ringless_uc = await insert_use_case(
        rt, account, ringless_setup, channel="ringless_voicemail", fallback=drop_uc
    )
    media = await insert_media(rt, account, speech(10.0))
    send_id = await insert_send(rt, account, ringless_setup, ringless_uc, media, kind="ringless")
    await worker_with(rt, ScriptedDropper(HUMAN)).run_once()
    row = await row_of(rt, send_id)
    assert (row.status, row.failure_reason, row.method) == ("failed", "human_answered", "drop")


async def test_a_ringless_send_with_no_method_at_all_fails_without_an_attempt(env: Env) -> None:
    rt, account = env.rt, env.account_id
    setup = await insert_setup(rt, account)
    uc = await insert_use_case(rt, account, setup, channel="ringless_voicemail")
    media = await insert_media(rt, account, speech(10.0))
    send_id = await insert_send(rt, account, setup, uc, media, kind="ringless")
    dropper = ScriptedDropper()
    await worker_with(rt, dropper).run_once()
    row = await row_of(rt, send_id)
    assert (row.status, row.failure_reason) == ("failed", "no deposit method for this recipient")
    assert await attempts_of(rt, send_id) == [] and dropper.requests == []


@SQLITE
async def test_a_drop_outside_the_window_is_held(backend: Backend) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import update

    from afterbeep.db import tables as t

    clock = FakeClock(datetime(2026, 6, 1, 7, 0, tzinfo=UTC))  # 03:00 in Washington DC
    async with runtime_of(backend, clock) as rt, api_of(rt) as api:
        env = Env(rt, clock, await account_id_of(rt, api))
        send_id, uc = await env.drop()
        async with rt.db.begin() as conn:
            await conn.execute(
                update(t.use_cases)
                .where(t.use_cases.c.id == uc)
                .values(window_start="08:00", window_end="21:00")
            )
        dropper = ScriptedDropper(LEFT)
        await worker_with(rt, dropper).run_once()
        row = await row_of(rt, send_id)
        assert (row.status, row.attempts) == ("accepted", 0) and dropper.requests == []
        clock.set(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
        await worker_with(rt, dropper).run_once()
        assert (await row_of(rt, send_id)).status == "left_voicemail"
