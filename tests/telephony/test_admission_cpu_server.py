"""Admission on a served TelephonyServer whose cores CPU hogs take: the node reads its CPU from
/proc (its process's share of what it could have, its loop thread's wait for a CPU). A loop that
waits for a CPU behind them closes the door: new INVITEs get 503, counted as `cpu_wait` in
/metrics; an idle node keeps its share (hogs do not make it look full). The hogs are bounded to
the test (a few seconds) and are not children of the node (a child's CPU counts as the node's)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from afterbeep.domain.admission import AdmissionPolicy, Refusal
from afterbeep.metrics import CALLS_REFUSED, LOOP_CPU_WAIT, PROCESS_CPU_SHARE
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.server import Route, ServerLimits
from afterbeep.telephony.sip import IncomingInvite
from tests.telephony.test_server import _invite_with, serve

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        not Path("/proc/thread-self/schedstat").exists(), reason="needs Linux schedstats"
    ),
]

HOG = "while True: pass"
SAMPLES = 200  # the most watcher intervals (50 ms) a test waits for the gate to see the hogs


def refused(reason: Refusal) -> float:
    return CALLS_REFUSED.labels(reason.value)._value.get()


def gauge(metric: object) -> float:
    return next(iter(metric.collect())).samples[0].value  # type: ignore[attr-defined]


@contextmanager
def hogs(per_core: int) -> Iterator[None]:
    """``per_core`` busy loops for each core this process may run on, started by a shell (so
    they are its children, not ours), all killed on exit."""
    count = per_core * len(os.sched_getaffinity(0))
    script = " ".join(f"{sys.executable} -c '{HOG}' &" for _ in range(count)) + " wait"
    shell = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    try:
        yield
    finally:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()


async def answer_and_leave(call: SipCall) -> None:
    await call.answer()


async def router(invite: IncomingInvite) -> Route:
    return answer_and_leave


async def test_hogs_on_every_core_leave_an_idle_node_its_share() -> None:
    """Hogs at the node's priority take every core: nothing is idle, but the scheduler would
    share the cores with the node if it wanted them, so its share of what it could have stays
    small and its capacity door open (were what others take counted whole against it, an idle
    node would look full and refuse every call)."""
    policy = AdmissionPolicy(
        loop_lag=0, prompt_late=0, cpu_wait=0, min_calls=0, answers_per_burst=0
    )
    async with serve(router=router, limits=ServerLimits(admission=policy)) as server:
        with hogs(per_core=2):
            seen = 0
            for _ in range(SAMPLES):
                await asyncio.sleep(0.05)
                if server.admission.cpu_share is not None:
                    seen += 1
                    if seen == 20:  # a second of samples with the hogs
                        break
            share = server.admission.cpu_share
            assert share is not None and share < policy.cpu_target / 2
            assert server.admission.refusal() is None
            assert await _invite_with(server) == 200
        assert 0 <= gauge(PROCESS_CPU_SHARE) < policy.cpu_target
        assert server.stats.rejected_unhealthy == 0


async def test_a_loop_that_waits_for_a_cpu_behind_hogs_refuses_by_cpu_wait() -> None:
    """The loop wants a CPU (it computes in slices) and three hogs per core compete for it: it
    waits more than it runs, the wait closes the door: 503, counted as `cpu_wait`."""
    policy = AdmissionPolicy(
        loop_lag=0,
        prompt_late=0,
        busy_target=0,
        answers_per_burst=0,
        min_calls=0,
        cpu_wait=0.4,
        calm=600.0,
    )
    before = refused(Refusal.CPU_WAIT)
    async with serve(router=router, limits=ServerLimits(admission=policy)) as server:
        assert server.admission.refusal() is None
        with hogs(per_core=3):
            for _ in range(SAMPLES * 5):  # slices of 10 ms of CPU, the watcher between them
                started = time.thread_time()
                while time.thread_time() - started < 0.01:
                    pass
                await asyncio.sleep(0)
                if server.admission.refusal() is Refusal.CPU_WAIT:
                    break
            level = server.admission.level(Refusal.CPU_WAIT)
            assert level is not None and level > policy.cpu_wait
            assert gauge(LOOP_CPU_WAIT) > 0
        assert await _invite_with(server) == 503
        assert server.stats.rejected_unhealthy == 1
    assert refused(Refusal.CPU_WAIT) == before + 1
