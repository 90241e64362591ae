"""Admission by the CPU, with time passed in.

The packet work runs on native threads, so a call costs the loop thread little while it costs
the machine a lot: the gate learns the call limit from the process's CPU (all threads) as a
share of the CPU it could have (its own plus what is idle on its cores), and refuses while the
loop thread waits for a CPU. `Machine` is a node whose loop thread, process and neighbours use
the CPU by rules the test chooses.
"""

from __future__ import annotations

import pytest

from afterbeep.domain.admission import AdmissionGate, AdmissionPolicy, Refusal

STEP = 0.05  # the server samples every 50 ms
POLICY = AdmissionPolicy(loop_lag=0, prompt_late=0, min_calls=0, answers_per_burst=0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Machine:
    """A node on cores of which ``available`` per second are its to use (the rest taken by
    others): its loop thread busy ``loop_idle`` + ``loop_cost`` per call, its process (all
    threads) ``cpu_idle`` + ``cpu_cost`` per call, in cores."""

    def __init__(
        self,
        policy: AdmissionPolicy = POLICY,
        *,
        loop_idle: float = 0.01,
        loop_cost: float = 0.0005,
        cpu_idle: float = 0.05,
        cpu_cost: float = 0.004,
        available: float = 1.0,
        process: bool = True,
    ) -> None:
        self.clock = FakeClock()
        self.gate = AdmissionGate(policy, self.clock)
        self.loop_idle, self.loop_cost = loop_idle, loop_cost
        self.cpu_idle, self.cpu_cost = cpu_idle, cpu_cost
        self.available = available
        self.process = process  # False: the process's figures are not fed
        self.calls = 0
        self.loop_total = self.cpu_total = self.available_total = 0.0
        self.refused: dict[Refusal, int] = {}

    def offer(self, n: int) -> int:
        taken = 0
        for _ in range(n):
            reason = self.gate.refusal(self.calls)
            if reason is None:
                self.gate.admitted()
                self.calls += 1
                taken += 1
            else:
                self.refused[reason] = self.refused.get(reason, 0) + 1
        return taken

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / STEP)):
            self.clock.now += STEP
            self.loop_total += (self.loop_idle + self.loop_cost * self.calls) * STEP
            self.cpu_total += (self.cpu_idle + self.cpu_cost * self.calls) * STEP
            self.available_total += self.available * STEP
            if self.process:
                self.gate.loop_busy(
                    self.loop_total, self.calls, self.cpu_total, self.available_total
                )
            else:
                self.gate.loop_busy(self.loop_total, self.calls)


def test_the_call_limit_is_learned_from_the_whole_process_not_the_loop_thread() -> None:
    """The loop thread alone would take (0.75 - 0.01) / 0.0005 = 1480 calls; the process uses
    0.004 of a core per call of the one core it has: (0.9 - 0.05) / 0.004 = 212 fit."""
    node = Machine()
    node.run(2.0)
    assert node.gate.cpu_share == pytest.approx(0.05, abs=0.005)
    node.offer(50)
    node.run(3.0)
    assert node.gate.loop_share == pytest.approx(0.035, abs=0.005)
    assert node.gate.cpu_share == pytest.approx(0.25, abs=0.01)
    assert node.gate.limit == pytest.approx(212, abs=3)
    assert node.offer(500) == node.gate.limit - 50  # a burst stops at the limit
    assert node.refused == {Refusal.CAPACITY: 500 - (node.gate.limit - 50)}


def test_without_the_process_figures_the_loop_thread_alone_is_judged() -> None:
    node = Machine(process=False)
    node.run(2.0)
    node.offer(50)
    node.run(3.0)
    assert node.gate.cpu_share is None
    assert node.gate.limit == pytest.approx(1480, rel=0.02)


def test_a_neighbour_taking_the_cores_lowers_the_limit() -> None:
    """Half the core is taken by others (the caller, a neighbour): a call's share of what is
    left doubles, and so does the work already there; the limit falls to about half."""
    node = Machine()
    node.run(2.0)
    node.offer(50)
    node.run(3.0)
    before = node.gate.limit
    assert before is not None
    node.available = 0.5
    node.run(3.0)
    after = node.gate.limit
    assert after is not None and after < 0.55 * before
    assert node.offer(200) == after - 50
    assert node.refused == {Refusal.CAPACITY: 200 - (after - 50)}


def test_a_machine_without_idle_cpu_closes_the_door_before_a_cost_is_known() -> None:
    """Others take all but what the node uses: its share is whole, past the target, with no
    call limit learned yet."""
    node = Machine(available=0.06)  # just what it uses itself, with a few calls
    node.offer(5)
    node.run(1.0)
    assert node.gate.cpu_share == pytest.approx(1.0)
    assert node.gate.refusal(node.calls) is Refusal.CAPACITY


def test_the_capacity_door_opens_again_under_the_limit_by_its_margin() -> None:
    node = Machine()
    node.run(2.0)
    node.offer(50)
    node.run(3.0)
    limit = node.gate.limit
    assert limit is not None
    node.offer(limit)
    assert node.gate.refusal(node.calls) is Refusal.CAPACITY
    node.calls = limit - 2  # two ended: still within the margin (resume_calls = 2)
    assert node.gate.refusal(node.calls) is Refusal.CAPACITY
    node.calls = limit - 3
    assert node.gate.refusal(node.calls) is None


class Waiting:
    """The loop thread's run-queue wait: ``rate`` seconds per wall second."""

    def __init__(self, policy: AdmissionPolicy) -> None:
        self.clock = FakeClock()
        self.gate = AdmissionGate(policy, self.clock)
        self.total = 0.0

    def run(self, seconds: float, rate: float) -> None:
        for _ in range(round(seconds / STEP)):
            self.clock.now += STEP
            self.total += rate * STEP
            self.gate.cpu_wait(self.total)


WAIT_POLICY = AdmissionPolicy(
    loop_lag=0, prompt_late=0, busy_target=0, answers_per_burst=0, cpu_wait=0.4, calm=0.5
)


def test_a_loop_waiting_for_a_cpu_closes_the_door() -> None:
    node = Waiting(WAIT_POLICY)
    node.run(2.0, 0.3)
    assert node.gate.wait == pytest.approx(0.3)
    assert node.gate.refusal(20) is None
    node.run(1.0, 0.6)
    assert node.gate.wait == pytest.approx(0.6)
    assert node.gate.refusal(20) is Refusal.CPU_WAIT
    assert node.gate.closings == 1
    assert node.gate.refusal(5) is None  # under min_calls: not the calls' doing


def test_one_moment_without_a_cpu_does_not_close_the_door() -> None:
    node = Waiting(WAIT_POLICY)
    node.run(2.0, 0.1)
    node.run(0.1, 3.0)  # 0.3 s without a CPU, then nothing
    node.run(2.0, 0.1)
    assert node.gate.closings == 0 and node.gate.refusal(20) is None


def test_the_cpu_wait_door_opens_after_a_calm_spell_under_the_resume_level() -> None:
    node = Waiting(WAIT_POLICY)
    node.run(1.0, 0.8)
    assert node.gate.refusal(20) is Refusal.CPU_WAIT
    node.run(3.0, 0.3)  # better, but over half the limit (resume = 0.5): stays closed
    assert node.gate.refusal(20) is Refusal.CPU_WAIT
    node.run(0.5, 0.05)  # the window's rate falls; the calm spell starts once it is low
    assert node.gate.refusal(20) is Refusal.CPU_WAIT
    node.run(1.0, 0.05)
    assert node.gate.refusal(20) is None
    assert node.gate.closings == 1


def test_cpu_wait_off() -> None:
    policy = AdmissionPolicy(loop_lag=0, prompt_late=0, busy_target=0, cpu_wait=0)
    node = Waiting(policy)
    node.run(2.0, 1.0)
    assert node.gate.wait is None and node.gate.refusal(20) is None


def test_policy_checks_the_cpu_settings() -> None:
    with pytest.raises(ValueError):
        AdmissionPolicy(cpu_target=1.5)
    with pytest.raises(ValueError):
        AdmissionPolicy(cpu_wait=-0.1)
