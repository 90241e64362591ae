"""Admission with time passed in.

Backstop: a lag or lateness sustained over the window (more than half of the last samples past
the limit) closes the door, a single stall does not; it opens again after a short calm spell at
or under the resume level (hysteresis). Prediction: the gate learns what a call costs of the event loop's
time from calm windows, stops a burst at the calls that fit under the busy target before the
busy fraction shows them, caps new calls per 100 ms on a loaded node, and opens again under
the limit and the target with hysteresis. `Node` is a loop whose thread is busy by a rule the
test chooses: an idle part, a cost per call, a set-up cost in each call's first moments.
"""

from __future__ import annotations

import pytest

from afterbeep.domain.admission import AdmissionGate, AdmissionPolicy, Refusal

POLICY = AdmissionPolicy(
    loop_lag=0.04, prompt_late=0.03, resume=0.5, calm=0.5, trips=5, samples=10, min_calls=0
)
STEP = 0.05  # the server samples the loop every 50 ms


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def gate() -> tuple[AdmissionGate, FakeClock]:
    clock = FakeClock()
    return AdmissionGate(POLICY, clock), clock


def lag(g: AdmissionGate, clock: FakeClock, seconds: float, n: int = 1) -> None:
    """``n`` samples of the watcher (it sleeps 50 ms, wakes ``seconds`` late)."""
    for _ in range(n):
        clock.now += STEP + seconds
        g.loop_lag(seconds)


def test_a_healthy_node_takes_calls() -> None:
    g, clock = gate()
    lag(g, clock, 0.039, 20)
    for _ in range(20):
        g.prompt_late(0.029)
    assert g.refusal() is None and g.closings == 0


def test_a_single_stall_does_not_close_the_door() -> None:
    g, clock = gate()
    lag(g, clock, 0.002, 10)
    lag(g, clock, 1.5)  # one long stall: a collection, a long callback, no CPU for a while
    assert g.refusal() is None
    lag(g, clock, 0.002, 10)
    assert g.refusal() is None and g.closings == 0


def test_a_stall_as_the_first_sample_is_not_judged_alone() -> None:
    g, clock = gate()
    lag(g, clock, 0.8)  # a node starting up
    assert g.refusal() is None
    lag(g, clock, 0.002, 4)
    assert g.refusal() is None and g.closings == 0


def test_stalls_short_of_half_the_window_do_not_close_it() -> None:
    g, clock = gate()
    lag(g, clock, 0.002, 10)
    for _ in range(6):
        lag(g, clock, 0.3, 2)
        lag(g, clock, 0.002, 3)
    assert g.refusal() is None and g.closings == 0


def test_sustained_lag_closes_the_door() -> None:
    g, clock = gate()
    lag(g, clock, 0.002, 10)
    lag(g, clock, 0.06, 5)  # half of the last 10
    assert g.refusal() is None
    lag(g, clock, 0.06)  # more than half
    assert g.refusal() is Refusal.LOOP_LAG and g.closings == 1
    lag(g, clock, 0.06, 20)
    assert g.refusal() is Refusal.LOOP_LAG and g.closings == 1  # one closing, no flapping


def test_the_door_opens_again_shortly_after_the_lag_ends() -> None:
    g, clock = gate()
    lag(g, clock, 0.1, 10)
    assert g.refusal() is Refusal.LOOP_LAG
    ended = clock.now
    lag(g, clock, 0.005, 4)  # the median still past the resume level (0.02)
    assert g.refusal() is Refusal.LOOP_LAG
    lag(g, clock, 0.005)  # now at it: calm from the sample before
    assert g.refusal() is Refusal.LOOP_LAG
    clock.now += POLICY.calm - 0.1
    assert g.refusal() is Refusal.LOOP_LAG
    lag(g, clock, 0.005, 2)
    assert g.refusal() is None
    assert clock.now - ended < 1.0 and g.closings == 1


def test_lag_between_resume_and_limit_keeps_a_closed_door_closed_but_does_not_close_it() -> None:
    g, clock = gate()
    lag(g, clock, 0.03, 20)  # under the limit (0.04): an open door stays open
    assert g.refusal() is None
    lag(g, clock, 0.05, 10)
    assert g.refusal() is Refusal.LOOP_LAG
    lag(g, clock, 0.03, 60)  # above resume (0.02): not calm, however long
    assert g.refusal() is Refusal.LOOP_LAG
    lag(g, clock, 0.01, 20)
    assert g.refusal() is None and g.closings == 1


def test_late_prompts_close_the_door_with_their_own_reason() -> None:
    g, clock = gate()
    for _ in range(5):
        g.prompt_late(0.001)
    for _ in range(5):
        g.prompt_late(0.2)
        g.prompt_late(0.001)  # one prompt in two late: not most
    assert g.refusal() is None
    for _ in range(3):
        g.prompt_late(0.2)
    assert g.refusal() is Refusal.PROMPT_LATE and g.closings == 1
    lag(g, clock, 0.002, 20)  # the loop is fine, but no prompt says the prompts are
    assert g.refusal() is None  # calm: prompts no longer late are not kept past calm


def test_late_prompts_long_ago_are_forgotten() -> None:
    g, clock = gate()
    for _ in range(4):
        g.prompt_late(0.2)
    clock.now += POLICY.stale + 0.1
    g.prompt_late(0.2)  # five late prompts, but four of them from a while ago
    assert g.refusal() is None and g.closings == 0


def test_after_the_door_opens_a_signal_is_judged_afresh() -> None:
    """Refused calls play no prompt: the late ones that closed the door must not keep closing it
    at the first prompt after it opened."""
    g, clock = gate()
    for _ in range(5):
        g.prompt_late(0.2)
    assert g.refusal() is Refusal.PROMPT_LATE
    clock.now += POLICY.calm
    assert g.refusal() is None
    g.prompt_late(0.2)
    g.prompt_late(0.001)
    assert g.refusal() is None and g.closings == 1


def test_a_node_with_few_calls_takes_one_more_even_while_late() -> None:
    g = AdmissionGate(AdmissionPolicy(loop_lag=0.04, trips=1, samples=1), FakeClock())
    g.loop_lag(0.3)  # a node starting up on a busy machine
    assert g.refusal(9) is None  # under min_calls (10)
    assert g.refusal(10) is Refusal.LOOP_LAG


def test_a_zero_limit_turns_its_signal_off() -> None:
    g = AdmissionGate(
        AdmissionPolicy(loop_lag=0, prompt_late=0, busy_target=0, answers_per_burst=0),
        FakeClock(),
    )
    g.loop_lag(10.0)
    g.prompt_late(10.0)
    busy = 0.0
    for _ in range(40):
        busy += STEP  # the loop never rests
        g.loop_busy(busy, 500)
    for _ in range(50):
        assert g.refusal(500) is None
        g.admitted()
    assert g.limit is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"resume": 0.0},
        {"resume": 1.5},
        {"loop_lag": -1.0},
        {"trips": 0},
        {"trips": 11},
        {"stale": 0.0},
        {"busy_target": 1.2},
        {"window": 0.0},
        {"cost_rise": 0.0},
        {"min_calls": -1},
        {"answers_per_burst": -1},
    ],
)
def test_a_policy_out_of_range_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdmissionPolicy(**kwargs)


# --- prediction ---------------------------------------------------------------------------------

PREDICT = AdmissionPolicy(loop_lag=0, prompt_late=0)  # the defaults, the backstop off


class Node:
    """A loop whose thread is busy ``idle`` + ``cost`` per call + ``setup`` per call in its
    first ``setup_s`` seconds + ``teardown`` per call in the ``teardown_s`` seconds after it
    ended; calls end after ``hold_s``. Every 50 ms the gate gets a sample."""

    def __init__(
        self,
        policy: AdmissionPolicy = PREDICT,
        *,
        idle: float = 0.02,
        cost: float = 0.004,
        setup: float = 0.0,
        setup_s: float = 0.3,
        hold_s: float = 1e9,
        shows_after_s: float = 0.0,
        teardown: float = 0.0,
        teardown_s: float = 0.5,
    ) -> None:
        self.clock = FakeClock()
        self.gate = AdmissionGate(policy, self.clock)
        self.idle, self.cost, self.setup, self.setup_s = idle, cost, setup, setup_s
        self.hold_s, self.shows_after_s = hold_s, shows_after_s
        self.teardown, self.teardown_s = teardown, teardown_s
        self.ended: list[float] = []
        self.started: list[float] = []
        self.busy_total = 0.0
        self.refused: dict[Refusal, int] = {}
        self.highest_busy = 0.0

    @property
    def calls(self) -> int:
        return len(self.started)

    def busy_now(self) -> float:
        now = self.clock.now
        busy = self.idle
        for t in self.started:
            age = now - t
            if age >= self.shows_after_s:
                busy += self.cost
            if age < self.setup_s:
                busy += self.setup
        busy += self.teardown * sum(1 for t in self.ended if now - t < self.teardown_s)
        return min(1.0, busy)

    def offer(self, n: int = 1) -> int:
        """``n`` INVITEs now; how many were taken."""
        taken = 0
        for _ in range(n):
            reason = self.gate.refusal(self.calls)
            if reason is None:
                self.gate.admitted()
                self.started.append(self.clock.now)
                taken += 1
            else:
                self.refused[reason] = self.refused.get(reason, 0) + 1
        return taken

    def run(self, seconds: float, per_step: int = 0) -> None:
        """``seconds`` of 50 ms steps, ``per_step`` INVITEs at each."""
        for _ in range(round(seconds / STEP)):
            self.clock.now += STEP
            up = [t for t in self.started if self.clock.now - t < self.hold_s]
            self.ended += [self.clock.now] * (len(self.started) - len(up))
            self.started = up
            self.busy_total += self.busy_now() * STEP
            self.gate.loop_busy(self.busy_total, self.calls)
            self.highest_busy = max(self.highest_busy, self.busy_now())
            self.offer(per_step)


def test_learns_the_idle_loop_and_the_cost_of_a_call() -> None:
    node = Node(idle=0.05, cost=0.004)
    node.run(2.0)
    assert node.gate.idle_busy == pytest.approx(0.05, abs=0.005)
    assert node.gate.cost is None and node.gate.limit is None
    node.offer(50)  # a burst: its window teaches nothing
    node.run(0.3)
    assert node.gate.cost is None
    node.run(3.0)
    assert node.gate.cost == pytest.approx(0.004, rel=0.05)
    assert node.gate.limit == pytest.approx((0.75 - 0.05) / 0.004, abs=3)  # 175


def test_a_node_with_few_calls_takes_one_more_however_busy() -> None:
    node = Node(idle=0.95)
    node.offer(5)
    node.run(2.0)
    assert node.gate.busy == pytest.approx(0.97, abs=0.01)
    assert node.offer(5) == 5  # under min_calls (10): not the calls' doing
    assert node.offer(3) == 0 and node.refused == {Refusal.CAPACITY: 3}


def test_a_burst_stops_at_the_limit_before_the_busy_fraction_shows_it() -> None:
    """The calls of a burst cost the loop only later (here: half a second after they are taken);
    the gate stops at the learned limit, not a window past it."""
    node = Node(idle=0.02, cost=0.004, shows_after_s=0.5, hold_s=1e9)
    node.offer(8)
    node.run(1.0)
    for _ in range(10):  # a ramp of 2 calls per 50 ms teaches the cost
        node.run(STEP, per_step=2)
    node.run(3.0)
    limit = node.gate.limit
    assert limit == pytest.approx((0.75 - 0.02) / 0.004, abs=3)  # 182
    assert node.gate.busy is not None and node.gate.busy < 0.75
    for _ in range(150):  # 2 INVITEs per 50 ms: under the burst cap
        node.run(STEP, per_step=2)
    assert limit - 3 <= node.calls <= limit
    assert node.refused == {Refusal.CAPACITY: 300 - (node.calls - 28)}
    node.run(3.0)
    assert node.highest_busy <= 0.75  # once the burst's calls show


def test_a_ramp_fills_the_node_to_its_target_and_no_further() -> None:
    """INVITEs at 60/s, each call costing set-up work in its first 300 ms, held 15 s: the
    node refuses the excess and keeps its loop under saturation, near the target once the
    cost is learned, without refusing so early that capacity goes unused."""
    node = Node(idle=0.03, cost=0.003, setup=0.01, hold_s=15.0)
    node.run(10.0, per_step=3)
    assert node.gate.cost is not None
    assert node.highest_busy < 0.9
    highest_window = 0.0
    for _ in range(50 * 20):
        node.run(STEP, per_step=3)
        highest_window = max(highest_window, node.gate.busy or 0.0)
    capacity = (0.75 - 0.03) / 0.003  # 240 calls
    assert node.highest_busy < 0.9  # the loop never saturates
    assert highest_window <= 0.8
    assert node.calls >= 0.85 * capacity
    assert sum(node.refused.values()) > 1000


def test_the_burst_cap_holds_a_loaded_node_to_its_answers_per_100ms() -> None:
    node = Node(idle=0.02, cost=0.004)
    node.offer(100)
    node.run(3.0)
    assert node.gate.limit is not None and node.calls >= node.gate.limit / 2
    assert node.offer(10) == 6  # answers_per_burst
    assert node.refused == {Refusal.ANSWER_RATE: 4}
    node.clock.now += 0.05
    assert node.offer(1) == 0  # the first six were within the last 100 ms
    node.clock.now += 0.06
    assert node.offer(3) == 3


def test_a_lightly_loaded_node_takes_a_burst() -> None:
    node = Node(idle=0.02, cost=0.001)
    node.offer(20)
    node.run(3.0)
    assert node.gate.limit is not None and node.calls < node.gate.limit / 2
    assert node.offer(20) == 20 and not node.refused
    node.run(1.0)
    node.offer(1)
    assert len(node.gate._answers) == 1  # what it keeps of the answers stays bounded


def test_recovery_with_hysteresis() -> None:
    """Closed by the busy fraction (other work on the loop), the door stays closed while the
    busy is between target - hysteresis and the target, and opens under both lines."""
    node = Node(idle=0.02, cost=0.004)
    node.offer(100)
    node.run(3.0)  # cost learned: limit 182
    node.idle = 0.5  # something else keeps the loop busy: 0.9 in all
    node.run(1.0)
    assert node.offer(1) == 0 and node.refused == {Refusal.CAPACITY: 1}
    assert node.gate.closings == 1
    node.idle = 0.3  # busy 0.7: under the target, not under 0.65
    node.run(1.0)
    assert node.gate.busy == pytest.approx(0.7, abs=0.01)
    assert node.offer(5) == 0
    node.idle = 0.02
    node.started = node.started[:60]  # calls ended meanwhile
    node.run(1.0)
    assert node.offer(1) == 1
    assert node.gate.closings == 1  # one closing for the whole spell: no flapping


def test_at_the_limit_the_door_opens_again_a_few_calls_under_it() -> None:
    node = Node(idle=0.02, cost=0.004)
    node.offer(100)
    node.run(3.0)
    limit = node.gate.limit
    assert limit is not None
    while node.calls < limit:
        node.offer(1)
        node.run(0.2)
    assert node.offer(1) == 0 and node.refused == {Refusal.CAPACITY: 1}
    node.started.pop()
    assert node.offer(1) == 0  # one under the limit: still closed (resume_calls 2)
    node.started = node.started[:-2]
    assert node.offer(1) == 1
    assert node.gate.closings == 1


def test_the_cost_rises_at_once_and_falls_slowly() -> None:
    node = Node(idle=0.02, cost=0.002)
    node.offer(100)
    node.run(3.0)
    assert node.gate.cost == pytest.approx(0.002, rel=0.05)
    node.cost = 0.004  # calls got dearer (say their prompts started)
    node.run(2.0)
    assert node.gate.cost == pytest.approx(0.004, rel=0.05)
    node.cost = 0.002
    node.run(2.0)
    cost = node.gate.cost
    assert cost is not None and 0.003 < cost < 0.004  # still near the dearer cost
    node.run(30.0)
    assert node.gate.cost == pytest.approx(0.002, rel=0.05)


def test_a_cost_learned_at_few_calls_gives_way_to_one_learned_at_more() -> None:
    """Some of a loop's work is per wake-up, not per call: each call costs less at 120 calls than
    at 20. The limit learned at 20 calls would refuse early; the cost measured at more calls
    replaces it at once rather than over the slow fall."""
    node = Node(idle=0.02, cost=0.006)
    node.offer(20)
    node.run(3.0)
    assert node.gate.limit == pytest.approx((0.75 - 0.02) / 0.006, abs=2)  # 121
    node.cost = 0.004
    for _ in range(20):  # a calm ramp: a call every 0.5 s
        node.offer(1)
        node.run(0.5)
    assert node.calls == 40
    assert node.gate.cost == pytest.approx(0.004, rel=0.05)
    node.cost = 0.005  # fewer calls again would cost more each: rises at once
    node.started = node.started[:20]
    node.run(1.5)  # (the 20 calls that ended leave the window and the second before it)
    node.run(2.0)
    assert node.gate.cost == pytest.approx(0.005, rel=0.05)


def test_the_limit_learned_holds_as_a_run_ends() -> None:
    """As the calls of a run end, the work of those ending (hang-up, the recording handed over)
    falls on ever fewer calls in progress: that is not what a call costs, and the node keeps
    about the limit it learned in the steady state (session 15: 34 after holding 400)."""
    node = Node(idle=0.02, cost=0.002, teardown=0.02, hold_s=15.0)
    for _ in range(30 * 10):  # 30 s at 10 calls/s: 150 calls up in the steady state
        node.offer(1)
        node.run(0.1)
    steady = node.gate.limit
    assert node.calls == 150 and steady is not None
    assert steady == pytest.approx((0.75 - 0.02) / (0.3 + 0.1) * 150, rel=0.1)  # about 274
    node.run(16.0)  # no new call: they all end
    assert node.calls == 0
    assert node.gate.limit is not None and steady / 2 <= node.gate.limit <= steady * 1.1
    assert not node.refused


def test_lag_most_of_the_time_closes_the_door_though_not_in_a_row() -> None:
    g, clock = gate()
    lag(g, clock, 0.002, 10)
    for _ in range(3):
        lag(g, clock, 0.08, 3)  # three timers late in four, the fourth on time
        lag(g, clock, 0.002)
    assert g.refusal() is Refusal.LOOP_LAG and g.closings == 1


def test_a_signals_level_is_the_median_it_is_judged_by() -> None:
    g, clock = gate()
    assert g.level(Refusal.LOOP_LAG) is None
    lag(g, clock, 0.002, 6)
    lag(g, clock, 0.3, 4)
    assert g.level(Refusal.LOOP_LAG) == 0.002  # four of ten stalled: the median is not
    lag(g, clock, 0.3, 2)
    assert g.level(Refusal.LOOP_LAG) == 0.3
    assert g.refusal() is Refusal.LOOP_LAG
