"""What the admission gate is fed about the CPU: /proc's texts parsed, and read live."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from afterbeep.telephony.cpu import (
    CpuReader,
    available,
    cpu_times,
    process_seconds,
    run_queue_wait,
)

STAT = """cpu  6980768 128071 1564645 4096668 65101 0 88936 376572 0 0
cpu0 3371245 65596 750097 2216686 22705 0 31863 189683 0 0
cpu1 3609523 62474 814548 1879982 42395 0 57072 186888 0 0
intr 125619626 0 0 0
ctxt 1
"""


def test_the_times_of_the_cores_given_and_what_was_free() -> None:
    times = cpu_times(STAT, {1}, 0.01)
    assert times is not None
    assert times.total == pytest.approx(
        (3609523 + 62474 + 814548 + 1879982 + 42395 + 0 + 57072 + 186888) / 100
    )
    assert times.free == pytest.approx((62474 + 1879982 + 42395) / 100)
    both = cpu_times(STAT, {0, 1}, 0.01)
    assert both is not None and both.free == pytest.approx(
        (65596 + 2216686 + 22705 + 62474 + 1879982 + 42395) / 100
    )
    assert cpu_times(STAT, {7}, 0.01) is None  # the all-CPU line is never taken for one


def test_what_others_take_past_their_fair_share_is_ours_to_have() -> None:
    # 2 cores for a second: we used 0.5, 0.3 was free, others took 1.2 (0.2 past their half)
    assert available(2.0, 0.3, 0.5) == pytest.approx(0.5 + 0.3 + 0.2)
    # others under their half: only what was free is added to ours
    assert available(2.0, 1.0, 0.4) == pytest.approx(1.4)
    # hogs take everything but what we used: half the cores are still ours to have
    assert available(2.0, 0.0, 0.05) == pytest.approx(1.0)
    assert available(2.0, 0.0, 0.05, fair=1.0) == pytest.approx(0.05)


def test_run_queue_wait_is_the_second_field_of_schedstat() -> None:
    assert run_queue_wait("386953 1226281 2\n") == pytest.approx(0.001226281)
    assert run_queue_wait("") is None


def test_process_seconds_reads_user_and_system_past_a_strange_name() -> None:
    stat = "4242 (a) b (c)) S 1 1 1 0 -1 4194304 126 0 0 0 250 50 0 0 20 0 1 0 66 3133 363"
    assert process_seconds(stat, 0.01) == pytest.approx(3.0)
    assert process_seconds("4242 (x) S 1", 0.01) is None


@pytest.mark.skipif(not Path("/proc/thread-self/schedstat").exists(), reason="needs schedstats")
def test_the_reader_follows_the_process_its_children_and_the_reading_thread() -> None:
    read = CpuReader()
    read()  # the first reading starts the count of what was available
    first = read()
    assert first.available is not None and first.loop_wait is not None
    started = time.process_time()
    while time.process_time() - started < 0.05:  # CPU of this process
        pass
    child = subprocess.Popen(  # a child of this thread, using a CPU: counted as available
        [
            sys.executable,
            "-c",
            "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ninput()",
        ],
        stdin=subprocess.PIPE,
    )
    try:
        # the child spins 0.3 s of CPU, then waits on its stdin: its /proc/<pid>/stat says so
        stat = Path(f"/proc/{child.pid}/stat")
        for _ in range(600):
            seconds = process_seconds(stat.read_text(), 1 / os.sysconf("SC_CLK_TCK"))
            if seconds is not None and seconds >= 0.3:
                break
            time.sleep(0.01)
        second = read()
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()
    assert second.process - first.process >= 0.05
    assert second.available is not None
    assert second.available - first.available >= 0.05 + 0.3 - 0.02  # /proc/stat's ticks
    assert second.loop_wait is not None and second.loop_wait >= first.loop_wait
