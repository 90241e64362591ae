"""Per-file seconds of a run, for tests/slowest_files.txt (the order `make unit` hands files out).

With AFTERBEEP_TEST_DURATIONS=PATH, the controlling process writes PATH at the end of the run:
each file's setup, call and teardown seconds summed, slowest first, in slowest_files.txt's
format, and says in the terminal summary when each worker ran its last test (the two should
end together; a long file handed out last shows as a gap). Session fixtures' teardown is
counted in the last test of each worker (a few seconds of the file that ended there).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path

import pytest

ENV = "AFTERBEEP_TEST_DURATIONS"

_seconds: dict[str, float] = defaultdict(float)
_last_report: dict[str, float] = {}
_started = time.monotonic()


def _target(config: pytest.Config) -> Path | None:
    path = os.environ.get(ENV)
    if not path or hasattr(config, "workerinput"):
        return None
    return Path(path)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not os.environ.get(ENV):
        return
    _seconds[report.nodeid.split("::", 1)[0]] += report.duration
    worker = getattr(getattr(report, "node", None), "gateway", None)
    _last_report[getattr(worker, "id", "main")] = time.monotonic() - _started


def table() -> str:
    lines = [f"{seconds:7.0f}  {path}" for path, seconds in sorted(_seconds.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines) + "\n"


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = _target(session.config)
    if target is None or not _seconds:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(table())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    target = _target(config)
    if target is None or not _last_report:
        return
    ends = ", ".join(f"{worker} at {at:.0f} s" for worker, at in sorted(_last_report.items()))
    terminalreporter.write_line(f"last test of each worker: {ends}; seconds per file in {target}")
