"""Admission on a served TelephonyServer: late prompts and a lagging event loop close the door to
new INVITEs (503, counted by reason in /metrics), calls are taken again after a calm spell; past
the call limit learned from the loop's busy fraction, new INVITEs get 503 with Retry-After; the
prompts' lateness, the loop's lag, its busy fraction and the call limit are in /metrics."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from afterbeep.domain.admission import AdmissionGate, AdmissionPolicy, Refusal
from afterbeep.metrics import ADMISSION_CALL_LIMIT, CALLS_REFUSED, LOOP_BUSY, LOOP_LAG, PROMPT_LATE
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.server import Route, ServerLimits
from afterbeep.telephony.sip import IncomingInvite
from tests.sip import conftest as sip_rig
from tests.telephony.test_server import Answering, _invite_with, serve, sipp_call

sipp_bin = sip_rig.sipp_bin

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
        policy = AdmissionPolicy(loop_lag=0, prompt_late=0.05, calm=2.0, trips=2, min_calls=0)
        server.admission = AdmissionGate(policy, clock)
        server.cpu = lambda: None
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
        admission=AdmissionPolicy(
            loop_lag=0.1, prompt_late=0, calm=600.0, trips=1, samples=1, min_calls=0, cpu_wait=0
        )
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


async def test_past_the_learned_call_limit_new_invites_get_503_with_retry_after(
    sipp_bin: str, tmp_path: Path
) -> None:
    """A call that keeps half the loop busy: the limit learned is one call, so a second INVITE
    gets 503 with Retry-After (counted as `capacity`), with nothing late yet."""
    clock = FakeClock()
    cpu = [0.0]
    script = Answering()
    before = refused(Refusal.CAPACITY)
    async with serve(script, limits=ServerLimits(retry_after=7)) as server:
        policy = AdmissionPolicy(loop_lag=0, prompt_late=0, min_calls=1, settle=0.0)
        server.admission = gate = AdmissionGate(policy, clock)
        server.loop_cpu = lambda: cpu[0]
        server.cpu = lambda: None  # the gate judged on the test's samples alone
        first = asyncio.ensure_future(
            sipp_call(sipp_bin, "media_uac_short_call.xml", tmp_path, server)
        )
        async with asyncio.timeout(5):
            await script.answered.wait()
        gate.loop_busy(cpu[0], 0)
        for _ in range(3):  # calm windows: one call, the loop half busy
            clock.now += 0.5
            cpu[0] += 0.25
            gate.loop_busy(cpu[0], 1)
        assert gate.limit == 1 and gate.busy == pytest.approx(0.5)
        answer = await sipp_call(sipp_bin, "media_uac_expect_503.xml", tmp_path, server)
        assert answer.returncode == 0, answer.output
        assert "Retry-After: 7" in answer.messages
        assert server.stats.rejected_unhealthy == 1 and server.stats.rejected_overload == 0
        done = await first
        assert done.returncode == 0, done.output
    assert refused(Refusal.CAPACITY) == before + 1
    assert sample(ADMISSION_CALL_LIMIT, "") == 1  # the watcher published it


async def test_the_loop_busy_fraction_is_measured_and_published() -> None:
    """The watcher reads the loop thread's CPU: a callback that computes for 0.3 s of CPU shows
    in the busy fraction of the window that holds it (however long the machine made it take)."""
    async with serve(router=router) as server:
        await asyncio.sleep(0.6)
        assert (server.admission.loop_share or 0.0) < 0.2  # an idle loop
        started, cpu = time.monotonic(), time.thread_time()
        while time.thread_time() - cpu < 0.3:  # busy, not asleep
            pass
        await asyncio.sleep(0.06)
        busy = server.admission.loop_share
        span = time.monotonic() - started + 0.6  # the window reaches back at most this far
        assert busy is not None and busy >= 0.3 / span
        assert sample(LOOP_BUSY, "") == pytest.approx(busy)


async def test_a_burst_on_a_loaded_node_is_cut_at_its_answers_per_window() -> None:
    """The loop half busy (past half its target, no limit learned): one new call per window;
    the next INVITE in the same window gets 503 (`answer_rate`), one in the next is taken."""
    clock = FakeClock()
    cpu = [0.0]
    before = refused(Refusal.ANSWER_RATE)
    async with serve(router=router) as server:
        policy = AdmissionPolicy(
            loop_lag=0, prompt_late=0, min_calls=0, answers_per_burst=1, burst_window=10.0
        )
        server.admission = gate = AdmissionGate(policy, clock)
        server.loop_cpu = lambda: cpu[0]
        server.cpu = lambda: None  # the gate judged on the test's samples alone
        gate.loop_busy(cpu[0], 0)
        clock.now += 1.0
        cpu[0] += 0.5
        gate.loop_busy(cpu[0], 0)
        assert gate.busy == pytest.approx(0.5) and gate.limit is None
        assert await _invite_with(server) == 200
        assert await _invite_with(server) == 503
        clock.now += 10.0
        cpu[0] += 5.0
        gate.loop_busy(cpu[0], 0)
        assert gate.busy == pytest.approx(0.5)  # still loaded: the window has passed
        assert await _invite_with(server) == 200
        assert server.stats.rejected_unhealthy == 1
    assert refused(Refusal.ANSWER_RATE) == before + 1


async def test_a_probe_hears_200_while_the_health_backstop_refuses_and_503_at_the_limit() -> None:
    """The backstop refuses INVITEs (a proxy tries the next node for each), but a probe's 503
    would take the node out of the proxy's set for seconds: only the call limit answers it 503."""
    clock = FakeClock()
    cpu = [0.0]
    async with serve(router=router) as server:
        policy = AdmissionPolicy(
            loop_lag=0.05, prompt_late=0, trips=1, samples=1, min_calls=0, settle=0.0
        )
        server.admission = gate = AdmissionGate(policy, clock)
        server.loop_cpu = lambda: cpu[0]
        server.cpu = lambda: None  # the gate judged on the test's samples alone
        assert server.accepting_calls()
        gate.loop_lag(0.2)
        assert gate.refusal() is Refusal.LOOP_LAG
        assert server.accepting_calls()  # what an OPTIONS probe is told
        assert await _invite_with(server) == 503  # while the INVITE itself is refused
        clock.now += policy.calm
        gate.loop_lag(0.0)
        assert gate.refusal() is None
        gate.loop_busy(cpu[0], 0)
        for _ in range(3):  # the loop fully busy with one call: the limit learned is 0 calls
            clock.now += 0.5
            cpu[0] += 0.5
            gate.loop_busy(cpu[0], 1)
        assert gate.limit == 0
        assert gate.refusal() is Refusal.CAPACITY
        assert not server.accepting_calls()
