"""CPU pinning for the benchmarks: the service on one CPU, the load generator on the others.

On a 2-core machine the load generator (SIPp starts a thread per call's RTP stream; the
ringless clients) competes with the service for the same cores, and the service's event loop
then waits in the run queue while its packets pile up. Pinning measures the service on a core
of its own, as it would run next to a trunk rather than next to its load generator.
"""

from __future__ import annotations

import os
from pathlib import Path


def pin(pid: int, cpu: int) -> None:
    """Every thread of `pid` (and those it starts later) on `cpu`; this process, and the
    processes it starts later, on the others."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpu})
    others = set(os.sched_getaffinity(0)) - {cpu}
    if others:
        os.sched_setaffinity(0, others)
