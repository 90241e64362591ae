"""What the admission gate is fed about the CPU, read from Linux's /proc (running totals).

* the process's CPU seconds over all its threads (`time.process_time`: the pacer and the
  receiver are native threads of this process);
* the CPU seconds it could have had, on the cores it may run on (``os.sched_getaffinity``;
  ``/proc/stat``): its own; what stayed idle (idle, iowait); what niced processes took (they give
  way to us); what its own children took (the post-call child runs at idle priority); and what
  others at our priority (the caller's SIPp, a neighbour) took past `FAIR_SHARE` of those cores:
  the scheduler shares a core between those who want it, so a neighbour that would take every
  core still leaves us our share when we want it. Added up between two readings, as a total;
* the seconds the calling thread waited on a run queue (``/proc/thread-self/schedstat``, its
  second field): read on the event loop's thread, the time the loop wanted a CPU and had none.

Each is None where the kernel does not say (no /proc, schedstats off). Read every 50 ms by the
server's lag watcher, never per packet.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FAIR_SHARE",
    "CpuReader",
    "CpuReading",
    "CpuTimes",
    "available",
    "cpu_times",
    "process_seconds",
    "run_queue_wait",
]

# Of the cores this process may run on, the share others at its priority are taken to hold
# against it (what they take past it, it could have): the scheduler's fair share of two.
FAIR_SHARE = 0.5

_STAT = Path("/proc/stat")
_SCHEDSTAT = Path("/proc/thread-self/schedstat")
_CHILDREN = Path("/proc/thread-self/children")  # what the loop's thread started (subprocesses)


@dataclass(frozen=True, slots=True)
class CpuReading:
    process: float  # the process's CPU seconds so far
    available: float | None  # the CPU seconds it could have had so far (see the module)
    loop_wait: float | None  # seconds the reading thread waited for a CPU so far


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """Seconds so far of some cores: all of their time, and what was free (idle, iowait, nice)."""

    total: float
    free: float


def cpu_times(stat: str, cpus: set[int], tick: float) -> CpuTimes | None:
    """``cpus``' times in the text of /proc/stat (``tick`` seconds per unit); None when none of
    them is listed."""
    total = free = 0
    seen = False
    for line in stat.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *fields = line.split()
        try:
            cpu = int(name[3:])
        except ValueError:
            continue
        if cpu in cpus and len(fields) >= 8:
            # user nice system idle iowait irq softirq steal (guest time is within user)
            total += sum(int(f) for f in fields[:8])
            free += int(fields[1]) + int(fields[3]) + int(fields[4])
            seen = True
    return CpuTimes(total * tick, free * tick) if seen else None


def available(total: float, free: float, ours: float, fair: float = FAIR_SHARE) -> float:
    """CPU seconds a process could have had in an interval where its cores had ``total``
    seconds, ``free`` of them free, and it (with its children) used ``ours``."""
    others = max(0.0, total - free - ours)
    return ours + free + max(0.0, others - fair * total)


def process_seconds(stat: str, tick: float) -> float | None:
    """User plus system seconds from the text of a /proc/<pid>/stat; None when it does not
    parse."""
    _, _, rest = stat.rpartition(")")  # the command name may hold spaces and parentheses
    fields = rest.split()
    if len(fields) < 13 or not fields[11].isdigit() or not fields[12].isdigit():
        return None
    return (int(fields[11]) + int(fields[12])) * tick


def run_queue_wait(schedstat: str) -> float | None:
    """Seconds waited on a run queue, from the text of a /proc/.../schedstat (run ns, wait ns,
    timeslices); None when it does not parse."""
    fields = schedstat.split()
    if len(fields) < 2 or not fields[1].isdigit():
        return None
    return int(fields[1]) / 1e9


class CpuReader:
    """``reader()`` → a `CpuReading`; call it on the event loop's thread."""

    def __init__(self) -> None:
        try:
            self._cpus: set[int] = set(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            self._cpus = set()
        self._tick = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
        self._stat_ok = bool(self._cpus)
        self._schedstat_ok = True
        self._last: tuple[CpuTimes, float] | None = None  # the cores' times, ours with children
        self._available = 0.0

    def __call__(self) -> CpuReading:
        process = time.process_time()
        return CpuReading(process, self._available_total(process), self._loop_wait())

    def _available_total(self, process: float) -> float | None:
        if not self._stat_ok:
            return None
        try:
            times = cpu_times(_STAT.read_text(), self._cpus, self._tick)
        except OSError:
            times = None
        if times is None:
            self._stat_ok = False
            return None
        ours = process + self._children()
        if self._last is not None:
            last, last_ours = self._last
            self._available += available(
                times.total - last.total, times.free - last.free, max(0.0, ours - last_ours)
            )
        self._last = (times, ours)
        return self._available

    def _children(self) -> float:
        try:
            pids = _CHILDREN.read_text().split()
        except OSError:
            return 0.0
        total = 0.0
        for pid in pids:
            try:
                total += process_seconds(Path(f"/proc/{pid}/stat").read_text(), self._tick) or 0.0
            except OSError:
                continue  # gone meanwhile
        return total

    def _loop_wait(self) -> float | None:
        if not self._schedstat_ok:
            return None
        try:
            wait = run_queue_wait(_SCHEDSTAT.read_text())
        except OSError:
            wait = None
        if wait is None:
            self._schedstat_ok = False
        return wait
