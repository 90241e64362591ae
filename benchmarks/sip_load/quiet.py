"""The quiet check before a run: wait until the machine's 1-minute load average is under a
limit, for at most a timeout (issue 24: each run of the side by side behind it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


@dataclass(frozen=True, slots=True)
class Quiet:
    quiet: bool
    load_1min: float  # when the wait ended
    load_at_first_look: float
    waited_s: float


def wait_quiet(
    limit: float,
    timeout: float,
    load: Callable[[], float] = load_average,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    every: float = 5.0,
) -> Quiet:
    """Looks at the load every ``every`` seconds until it is under ``limit`` or ``timeout``
    seconds have passed."""
    started = clock()
    first = current = load()
    while current >= limit and clock() - started < timeout:
        sleep(every)
        current = load()
    return Quiet(current < limit, current, first, clock() - started)
