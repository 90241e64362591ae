"""Admission: whether a node that is not full should still take a new call.

A node that takes one call too many makes every call it holds late: its event loop saturates,
the beep comes after the caller started talking. Waiting for lateness to show before refusing
is too late: the calls admitted meanwhile already have late beeps. So the gate predicts:

* **Capacity.** The loop thread's busy fraction (its CPU time over wall time, fed as a running
  total with the calls in progress at each sample) is measured over a short window (``window``
  seconds). From calm windows (few calls just admitted: a burst's set-up work is not a call's
  steady cost) the gate learns the loop's own busy with no call and the busy fraction each
  call adds (it rises at once, and falls as fast when learned at more calls than before, else
  slowly; learned at under half the calls it was last learned at, it rises slowly too). A
  window is calm when few calls were taken **and few ended** in it and the second before: as a
  run ends, the work of the calls ending falls on ever fewer calls in progress, which would
  make a call look dear and leave the node with a limit far under what it held. The call limit
  is what fits under ``busy_target``: ``(busy_target - idle busy) / cost per call``. A new call past the limit, or while the window's busy fraction is past the
  target, is refused; the door opens again ``resume_calls`` under the limit and under the
  target (``busy_hysteresis`` under it while no limit is known). The limit counts calls at
  once, while the busy fraction of calls just admitted shows only later: a burst stops at the
  limit, not a window after it.
* **Bursts.** Each new call's SIP, database reads and first prompt land at once; on a loaded
  node (past half its call limit, or past half the busy target while no cost is known) at most
  ``answers_per_burst`` calls are admitted in any ``burst_window`` seconds.
* **Backstop, by health: refuse only while the calls already up are harmed.** Each signal (the
  loop's lag, a prompt's lateness) keeps its last ``samples`` samples, none older than
  ``stale`` seconds; once it has ``trips`` of them, the door closes when **more than half** are
  past the signal's limit (the lower median): a lag or a lateness sustained over the window,
  not one stall. A single stall (a garbage collection, one long callback, a moment without a
  CPU) is one sample: it is over when it is measured, and refusing after it protects no call.
  The door opens again once the lower median stayed at or under ``resume`` times the limit for
  ``calm`` seconds (short: the window itself is the hysteresis); the signal then starts afresh.

  Why these limits (defaults: 50 ms, the median of the last 10 samples, 0.5 s calm). Prompts are
  paced by a native thread and timed from the answer, and a recording starts at the beep's end
  on the media clock, so the loop's lag no longer makes a beep late or cuts a message: what it
  harms is what the loop still does, SIP and call set-up. An INVITE waits for the loop as its
  timers do; the issue's goal is INVITE→200 within 50 ms at p99 through the proxy, so a loop
  whose timers are late by more than 50 ms most of the time answers most calls past that goal,
  and its work queue is growing (it is saturated, not stalled). SIP's own timers are coarser
  (T1 = 500 ms retransmissions, the proxy's failover on no answer): they are safe at that lag.
  Prompts: the beep may be at most 60 ms late; most prompts leaving more than 50 ms late means
  the next beeps will be too. The lag is sampled every 50 ms, so the window is at least half a
  second of the loop, and a door closed by it opens again about 0.75 s after the lag ends.

* **The CPU, not only the loop thread.** The packet work runs on native threads (the pacer, the
  receiver), so the loop thread's busy fraction says little about what a call costs the machine:
  on a machine whose cores are taken (by those threads, the caller, a neighbour) the loop looks
  cheap per call while it waits for a CPU. So the capacity above is also learned from the
  process's CPU over all its threads, as a share of the CPU it can have (its own use, what is
  idle on the cores it may run on, what others take there past their share: the adapter says),
  fed as running totals with `loop_busy`; that share counts against ``cpu_target`` (scaled onto
  ``busy_target``: the busy fraction is the larger of the two, the loop's and the process's
  share times ``busy_target / cpu_target``). And the loop thread's wait for a CPU (seconds
  runnable but not running per wall second, between two samples: `cpu_wait`, fed as a running
  total) is a signal like the lag: past ``cpu_wait`` for more than half of its last samples, the
  door closes (`Refusal.CPU_WAIT`), and opens after ``calm`` at or under ``resume`` times it. It
  rises as soon as the machine is short of CPU, before the lag builds a backlog of seconds that
  the calls already up would pay for.

With few calls (under ``min_calls``) nothing here refuses: what keeps such a node busy or late
is not its calls, and refusing them would not make it less so (a node starting up on a busy
machine lags without a call). Pure: samples are passed in, time is read from an injected
monotonic clock (seconds).
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AdmissionGate", "AdmissionPolicy", "Refusal"]


class Refusal(enum.StrEnum):
    """Why a new call is refused (the ``reason`` label of the refusals' metric)."""

    MAX_CALLS = "max_calls"
    LOOP_LAG = "loop_lag"
    PROMPT_LATE = "prompt_late"
    DRAINING = "draining"
    CAPACITY = "capacity"
    ANSWER_RATE = "answer_rate"
    CPU_WAIT = "cpu_wait"


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    """Limits in seconds (0 turns a signal off); ``resume`` is a fraction of the limit.

    ``busy_target`` is a fraction of the loop thread's time (0 turns capacity off);
    ``answers_per_burst`` 0 turns the burst cap off."""

    loop_lag: float = 0.05
    prompt_late: float = 0.05
    resume: float = 0.5
    calm: float = 0.5
    trips: int = 5  # the fewest samples a signal is judged on
    samples: int = 10  # the last samples of a signal judged together
    stale: float = 5.0  # seconds: older samples are forgotten
    busy_target: float = 0.75
    busy_hysteresis: float = 0.1
    window: float = 0.5
    min_calls: int = 10
    resume_calls: int = 2
    calm_admissions: float = 0.2  # a window teaches the cost when at most this share was new
    settle: float = 1.0  # seconds before a window that count as part of it for that share
    cost_rise: float = 0.5  # seconds: time constant of the cost per call going up
    cost_fall: float = 10.0  # ... and going down
    idle_busy: float = 0.02  # the loop's busy with no call, until one is measured
    answers_per_burst: int = 6
    burst_window: float = 0.1
    cpu_target: float = 0.9  # the process's share of the CPU it can have (0: not judged)
    cpu_wait: float = 0.4  # seconds the loop waits for a CPU per wall second (0: off)

    def __post_init__(self) -> None:
        if self.loop_lag < 0 or self.prompt_late < 0 or self.calm < 0:
            raise ValueError("admission limits must not be negative")
        if not 1 <= self.trips <= self.samples:
            raise ValueError("admission trips must be from 1 to samples")
        if self.stale <= 0:
            raise ValueError("admission stale must be positive")
        if not 0 < self.resume <= 1:
            raise ValueError("admission resume must be in (0, 1]")
        if not 0 <= self.busy_target <= 1 or not 0 <= self.busy_hysteresis < 1:
            raise ValueError("admission busy target and hysteresis must be in [0, 1]")
        if self.window <= 0 or self.burst_window <= 0 or self.settle < 0:
            raise ValueError("admission windows must be positive")
        if self.cost_rise <= 0 or self.cost_fall <= 0:
            raise ValueError("admission cost time constants must be positive")
        if self.min_calls < 0 or self.resume_calls < 0 or self.answers_per_burst < 0:
            raise ValueError("admission call counts out of range")
        if not 0 <= self.cpu_target <= 1 or not 0 <= self.cpu_wait <= 1:
            raise ValueError("admission CPU target and wait must be in [0, 1]")


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    busy_total: float  # the loop thread's busy seconds so far
    calls: int
    admitted_total: int  # calls admitted so far
    cpu_total: float | None = None  # the process's CPU seconds so far (all threads)
    available_total: float | None = None  # ... and the CPU seconds it could have had


class AdmissionGate:
    """Feed it samples (`loop_lag`, `prompt_late`, `loop_busy`); ask `refusal()` at each new
    call and tell it `admitted()` when the call is taken."""

    def __init__(self, policy: AdmissionPolicy, clock: Callable[[], float]) -> None:
        self.policy = policy
        self._clock = clock
        self._reason: Refusal | None = None
        self._last_bad = 0.0  # when a signal was last past its resume level, while closed
        self._signals: dict[Refusal, deque[tuple[float, float]]] = {}  # (when, value) kept
        self.closings = 0  # times the door closed (each is logged once by the caller)
        self._samples: deque[_Sample] = deque()
        self._admitted = 0
        self._answers: deque[float] = deque()  # when the calls of the last burst window came
        self.busy: float | None = None  # the loop's busy fraction over the last window
        self.cost: float | None = None  # busy fraction one call adds, once learned
        self._cost_calls = 0.0  # the calls (window mean) of the sample the cost last followed
        self.idle_busy = policy.idle_busy
        self._idle_known = False
        self._full = False  # capacity refusing, until the calls and the busy are back under
        self._full_by_busy = False  # ... closed (or kept closed) by the busy fraction itself
        self.loop_share: float | None = None  # the loop thread's busy fraction, last window
        self.cpu_share: float | None = None  # the process's share of the CPU it could have
        self.wait: float | None = None  # the loop's wait for a CPU per wall second, last window
        self._waits: deque[tuple[float, float]] = deque()  # (when, wait total)

    # --- samples ------------------------------------------------------------------------------

    def loop_lag(self, seconds: float) -> None:
        self._sample(Refusal.LOOP_LAG, seconds, self.policy.loop_lag)

    def prompt_late(self, seconds: float) -> None:
        self._sample(Refusal.PROMPT_LATE, seconds, self.policy.prompt_late)

    def cpu_wait(self, wait_total: float) -> None:
        """The seconds the loop thread waited for a CPU so far (a running total)."""
        if self.policy.cpu_wait <= 0:
            return
        now = self._clock()
        waits = self._waits
        waits.append((now, wait_total))
        start = now - self.policy.window
        while len(waits) > 2 and waits[1][0] <= start:
            waits.popleft()
        if len(waits) < 2:
            return
        (last_at, last_total), (first_at, first_total) = waits[-2], waits[0]
        if now > last_at:
            # judged per sample, as the lag is: one moment without a CPU is one sample
            self._sample(
                Refusal.CPU_WAIT,
                max(0.0, (wait_total - last_total) / (now - last_at)),
                self.policy.cpu_wait,
            )
        if now - first_at >= self.policy.window / 2:
            self.wait = max(0.0, (wait_total - first_total) / (now - first_at))

    def loop_busy(
        self,
        busy_total: float,
        calls: int,
        cpu_total: float | None = None,
        available_total: float | None = None,
    ) -> None:
        """The loop thread's busy seconds so far (a running total: its CPU time) and the calls
        in progress now; optionally the process's CPU seconds so far (all threads) and the CPU
        seconds it could have had so far (`afterbeep.telephony.cpu` says how it is counted)."""
        now = self._clock()
        samples = self._samples
        dt = now - samples[-1].at if samples else 0.0
        samples.append(_Sample(now, busy_total, calls, self._admitted, cpu_total, available_total))
        keep = self.policy.window + self.policy.settle
        while len(samples) > 2 and samples[1].at <= now - keep:
            samples.popleft()
        start = now - self.policy.window
        first = next((s for s in reversed(samples) if s.at <= start), None)
        if first is None:
            first = samples[0]
            if now - first.at < self.policy.window / 2:
                return
        span = now - first.at
        busy = min(1.0, max(0.0, (busy_total - first.busy_total) / span))
        self.loop_share = busy
        p = self.policy
        if (
            p.cpu_target
            and cpu_total is not None
            and available_total is not None
            and first.cpu_total is not None
            and first.available_total is not None
            and available_total > first.available_total
        ):
            used = cpu_total - first.cpu_total
            share = min(1.0, max(0.0, used / (available_total - first.available_total)))
            self.cpu_share = share
            busy = max(busy, min(1.0, share * p.busy_target / p.cpu_target))
        self.busy = busy
        window = [s for s in samples if s.at >= first.at]
        mean_calls = sum(s.calls for s in window) / len(window)
        new = self._admitted - samples[0].admitted_total
        ended = new - (calls - samples[0].calls)
        if max(new, ended) > self.policy.calm_admissions * max(mean_calls, 1.0):
            # set-up work of calls just taken, or cost not yet shown, is not a call's; nor is the
            # work of calls ending (hang-up, the recording handed over), which at a run's end
            # falls on ever fewer calls in progress
            return
        if max(s.calls for s in window) == 0:
            weight = _weight(dt, self.policy.cost_fall) if self._idle_known else 1.0
            self.idle_busy += weight * (busy - self.idle_busy)
            self._idle_known = True
        elif mean_calls >= self.policy.min_calls:
            cost = max(busy - self.idle_busy, 0.0) / mean_calls
            # A loop's cost is not quite linear (some work is per wake-up, not per call): what
            # more calls cost each is news, not noise, and falls as fast as a rise would; what
            # far fewer calls cost each (under half of those it was learned at) is mostly that
            # fixed work shared among few, and rises only slowly.
            fast = (
                self.cost is None
                or mean_calls > self._cost_calls
                or (cost > self.cost and 2 * mean_calls >= self._cost_calls)
            )
            if self.cost is None:
                self.cost = cost
            else:
                tau = self.policy.cost_rise if fast else self.policy.cost_fall
                self.cost += _weight(dt, tau) * (cost - self.cost)
            if fast:
                self._cost_calls = max(self._cost_calls, mean_calls)

    # --- decisions ----------------------------------------------------------------------------

    @property
    def limit(self) -> int | None:
        """The calls that fit under the busy target, once a call's cost is known."""
        target = self.policy.busy_target
        if not target or self.cost is None or self.cost <= 0:
            return None
        return max(0, math.floor((target - self.idle_busy) / self.cost))

    def refusal(self, calls: int = 0) -> Refusal | None:
        """The reason to refuse a new call now (``calls`` in progress), or None to take it."""
        if self._reason is not None and self._clock() - self._last_bad >= self.policy.calm:
            self._reason = None
            self._signals.clear()  # judged afresh: what was kept is what closed the door
        if calls < self.policy.min_calls:
            return None
        if self._reason is not None:
            return self._reason
        if self._over_capacity(calls):
            return Refusal.CAPACITY
        if self._burst_full(calls):
            return Refusal.ANSWER_RATE
        return None

    def admitted(self) -> None:
        """A new call was taken (counted against the burst cap and the calm of a window)."""
        self._admitted += 1
        if self.policy.answers_per_burst:
            now = self._clock()
            self._answers.append(now)
            self._forget_answers(now)

    def _forget_answers(self, now: float) -> None:
        answers = self._answers
        while answers and answers[0] <= now - self.policy.burst_window:
            answers.popleft()

    def _over_capacity(self, calls: int) -> bool:
        """Closes at the limit or the busy target; opens ``resume_calls`` under the limit and
        under the target (``busy_hysteresis`` under it while no limit is known)."""
        p = self.policy
        if not p.busy_target:
            return False
        busy = self.busy or 0.0
        limit = self.limit
        if not self._full:
            self._full_by_busy = busy >= p.busy_target
            if self._full_by_busy or (limit is not None and calls >= limit):
                self._full = True
                self.closings += 1
            return self._full
        if busy >= p.busy_target:
            self._full_by_busy = True
        # with a limit known, its own margin (resume_calls) is the hysteresis; without, the
        # busy fraction needs one
        hysteresis = p.busy_hysteresis if self._full_by_busy and limit is None else 0.0
        line = p.busy_target - hysteresis
        if busy < line and (limit is None or calls < limit - p.resume_calls):
            self._full = self._full_by_busy = False
        return self._full

    def _burst_full(self, calls: int) -> bool:
        p = self.policy
        if not p.answers_per_burst:
            return False
        limit = self.limit
        if limit is not None:
            loaded = calls >= limit / 2
        else:
            loaded = (self.busy or 0.0) >= p.busy_target / 2
        if not loaded:
            return False
        self._forget_answers(self._clock())
        return len(self._answers) >= p.answers_per_burst

    def level(self, reason: Refusal) -> float | None:
        """What a signal (``LOOP_LAG``, ``PROMPT_LATE``) is judged by now: the lower median of
        its samples kept (past its limit: more than half of them are), in seconds; None with
        none kept."""
        kept = self._signals.get(reason)
        if not kept:
            return None
        return sorted(value for _, value in kept)[(len(kept) - 1) // 2]

    def _sample(self, reason: Refusal, seconds: float, limit: float) -> None:
        if limit <= 0:
            return
        p = self.policy
        now = self._clock()
        kept = self._signals.get(reason)
        if kept is None:
            kept = self._signals[reason] = deque(maxlen=p.samples)
        kept.append((now, seconds))
        while kept[0][0] < now - p.stale:
            kept.popleft()
        if len(kept) < p.trips:
            return
        level = self.level(reason)
        assert level is not None
        if self._reason is not None:
            if level > limit * p.resume:
                self._last_bad = now
        elif level > limit:
            self.closings += 1
            self._reason = reason
            self._last_bad = now


def _weight(dt: float, tau: float) -> float:
    """The weight of a sample ``dt`` seconds after the last in an average with time constant
    ``tau`` (seconds)."""
    return 1.0 - math.exp(-max(dt, 0.0) / tau)
