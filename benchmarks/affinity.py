"""CPU pinning for the benchmarks: the service on one CPU, the load generator on the others.

On a 2-core machine the load generator (SIPp starts a thread per call's RTP stream; the
ringless clients) competes with the service for the same cores, and the service's event loop
then waits in the run queue while its packets pile up. Pinning measures the service on a core
of its own, as it would run next to a trunk rather than next to its load generator.
"""

from __future__ import annotations

import os
from pathlib import Path


def process_tree(pid: int) -> list[int]:
    """`pid` and every process it started (children, grandchildren ...) that is still alive."""
    parents: dict[int, list[int]] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = next(line for line in status.read_text().splitlines() if line.startswith("PPid:"))
        except (OSError, StopIteration):
            continue
        parents.setdefault(int(ppid.split()[1]), []).append(int(status.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def pin(pid: int, cpu: int) -> None:
    """Every thread of `pid` and of the processes it started (and the threads and processes
    they start later) on `cpu`; this process (every thread of it), and the processes it starts
    later, on the others."""
    for process in process_tree(pid):
        for task in Path(f"/proc/{process}/task").iterdir():
            os.sched_setaffinity(int(task.name), {cpu})
    others = set(os.sched_getaffinity(0)) - {cpu}
    if others:
        for task in Path("/proc/self/task").iterdir():  # the SMTP server's thread too
            os.sched_setaffinity(int(task.name), others)
