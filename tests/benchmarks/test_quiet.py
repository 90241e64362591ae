"""The quiet check before a benchmark run (benchmarks.sip_load.quiet), on a fake clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from benchmarks.sip_load.quiet import load_average, wait_quiet


class FakeMachine:
    def __init__(self, loads: list[float]) -> None:
        self.now = 100.0
        self._loads: Iterator[float] = iter(loads)
        self.last = 0.0

    def load(self) -> float:
        self.last = next(self._loads, self.last)
        return self.last

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def clock(self) -> float:
        return self.now


def test_waits_until_the_load_is_under_the_limit() -> None:
    machine = FakeMachine([2.0, 1.2, 0.7, 0.45, 0.1])
    found = wait_quiet(0.5, 600, machine.load, machine.sleep, machine.clock)
    assert found.quiet and found.load_1min == 0.45 and found.load_at_first_look == 2.0
    assert found.waited_s == pytest.approx(15.0)


def test_a_quiet_machine_is_not_waited_for() -> None:
    machine = FakeMachine([0.2])
    found = wait_quiet(0.5, 600, machine.load, machine.sleep, machine.clock)
    assert found.quiet and found.waited_s == 0


def test_gives_up_at_the_timeout() -> None:
    machine = FakeMachine([3.0])
    found = wait_quiet(0.5, 60, machine.load, machine.sleep, machine.clock)
    assert not found.quiet and found.load_1min == 3.0
    assert found.waited_s == pytest.approx(60.0)


def test_reads_the_machine_load() -> None:
    assert load_average() >= 0.0
