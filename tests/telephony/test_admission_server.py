"""Admission by health on a served TelephonyServer: late prompts and a lagging event loop close
the door to new INVITEs (503, counted by reason in /metrics), calls are taken again after a calm
spell; the prompts' lateness and the loop's lag are in /metrics."""

from __future__ import annotations

import asyncio
import time

import pytest

from afterbeep.domain.admission import AdmissionGate, AdmissionPolicy, Refusal
from afterbeep.metrics import CALLS_REFUSED, LOOP_LAG, PROMPT_LATE
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.server import Route, ServerLimits
from afterbeep.telephony.sip import IncomingInvite
from tests.telephony.test_server import _invite_with, serve

pytestmark = pytest.mark.timeout(60)


def sample(histogram: object, suffix: str) -> float:
    return sum(
        s.value
        for m in histogram.collect()  # type: ignore[attr-defined]
        for s in m.samples
        if s.name.endswith(suffix)
    )


def refused(reason: Refusal) -> float:
    return CALLS_REFUSED.labels(reason.value)._value.get()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def answer_and_leave(call: SipCall) -> None:
    await call.answer()


async def router(invite: IncomingInvite) -> Route:
    return answer_and_leave


async def test_late_prompts_refuse_new_calls_until_a_calm_spell() -> None:
    clock = FakeClock()
    before_late, before_refused = sample(PROMPT_LATE, "_count"), refused(Refusal.PROMPT_LATE)
    async with serve(router=router) as server:
        policy = AdmissionPolicy(loop_lag=0, prompt_late=0.05, calm=2.0, trips=2)
        server.admission = AdmissionGate(policy, clock)
        assert server.media.on_prompt_late is not None
        server.media.on_prompt_late(0.2)
        assert await _invite_with(server) == 200  # one late prompt is not a trend
        server.media.on_prompt_late(0.3)
        assert await _invite_with(server) == 503
        assert await _invite_with(server) == 503
        clock.now += 2.0
        assert await _invite_with(server) == 200
        assert server.stats.rejected_unhealthy == 2 and server.stats.rejected_overload == 0
    assert sample(PROMPT_LATE, "_count") == before_late + 2
    assert refused(Refusal.PROMPT_LATE) == before_refused + 2


async def test_a_blocked_event_loop_is_measured_and_closes_the_door() -> None:
    before_count, before_sum = sample(LOOP_LAG, "_count"), sample(LOOP_LAG, "_sum")
    before_refused = refused(Refusal.LOOP_LAG)
    limits = ServerLimits(
        admission=AdmissionPolicy(loop_lag=0.1, prompt_late=0, calm=600.0, trips=1)
    )
    async with serve(router=router, limits=limits) as server:
        await asyncio.sleep(0.12)  # the watcher is sampling
        time.sleep(0.4)  # noqa: ASYNC251 - the point: a callback that holds the loop
        await asyncio.sleep(0.01)  # the watcher's timer, overdue, runs at the next turn
        assert sample(LOOP_LAG, "_sum") - before_sum >= 0.3
        assert server.admission.refusal() is Refusal.LOOP_LAG
        assert await _invite_with(server) == 503
    assert sample(LOOP_LAG, "_count") > before_count
    assert refused(Refusal.LOOP_LAG) == before_refused + 1
