"""Admission by health: whether a node that is not full should still take a new call.

A node that takes one call too many makes every call it holds late: its event loop lags, the
beep comes after the caller started talking. So besides the count of calls (max_calls), the
node samples its event loop's lag and the lateness of each prompt's first frame, and refuses
new calls (503 with Retry-After: the proxy tries another node) while they are too late.

Hysteresis, so the door does not flap at the edge: ``trips`` samples in a row past a signal's
limit close the door (one slow timer, a garbage collection, is not a trend); it opens again once
no sample went past ``resume`` times its limit for ``calm`` seconds.
Pure: samples are passed in, time is read from an injected monotonic clock (seconds).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AdmissionGate", "AdmissionPolicy", "Refusal"]


class Refusal(enum.StrEnum):
    """Why a new call is refused (the ``reason`` label of the refusals' metric)."""

    MAX_CALLS = "max_calls"
    LOOP_LAG = "loop_lag"
    PROMPT_LATE = "prompt_late"
    DRAINING = "draining"


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    """Limits in seconds (0 turns a signal off); ``resume`` is a fraction of the limit."""

    loop_lag: float = 0.05
    prompt_late: float = 0.05
    resume: float = 0.5
    calm: float = 3.0
    trips: int = 3

    def __post_init__(self) -> None:
        if self.loop_lag < 0 or self.prompt_late < 0 or self.calm < 0:
            raise ValueError("admission limits must not be negative")
        if self.trips < 1:
            raise ValueError("admission trips must be at least 1")
        if not 0 < self.resume <= 1:
            raise ValueError("admission resume must be in (0, 1]")


class AdmissionGate:
    """Feed it samples (`loop_lag`, `prompt_late`); ask `refusal()` at each new call."""

    def __init__(self, policy: AdmissionPolicy, clock: Callable[[], float]) -> None:
        self.policy = policy
        self._clock = clock
        self._reason: Refusal | None = None
        self._last_bad = 0.0  # when a sample last went past the resume level, while closed
        self._over: dict[Refusal, int] = {}  # samples in a row past the limit, per signal
        self.closings = 0  # times the door closed (each is logged once by the caller)

    def loop_lag(self, seconds: float) -> None:
        self._sample(Refusal.LOOP_LAG, seconds, self.policy.loop_lag)

    def prompt_late(self, seconds: float) -> None:
        self._sample(Refusal.PROMPT_LATE, seconds, self.policy.prompt_late)

    def refusal(self) -> Refusal | None:
        """The reason to refuse a new call now, or None to take it."""
        if self._reason is not None and self._clock() - self._last_bad >= self.policy.calm:
            self._reason = None
        return self._reason

    def _sample(self, reason: Refusal, seconds: float, limit: float) -> None:
        if limit <= 0:
            return
        if seconds > limit:
            over = self._over[reason] = self._over.get(reason, 0) + 1
            if self._reason is not None:
                self._last_bad = self._clock()
            elif over >= self.policy.trips:
                self.closings += 1
                self._reason = reason
                self._last_bad = self._clock()
            return
        self._over[reason] = 0
        if self._reason is not None and seconds > limit * self.policy.resume:
            self._last_bad = self._clock()
