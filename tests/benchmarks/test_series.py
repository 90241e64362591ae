"""Series of fixed-time runs (benchmarks.sip_load.series): the clean-level search, ABBA and the
overload run, with a fake runner; and one real overload run at a tiny size (3 calls at once on
a node that takes 2), where the excess gets 503 and the admitted calls are measured apart."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks.sip_load.series import (
    Outcome,
    RunSpec,
    abba,
    cores_ratio,
    find_clean_level,
    overload,
    run_command,
)

REPO = Path(__file__).resolve().parents[2]


class FakeRuns:
    """Clean up to ``clean_up_to[target]``; each run takes ``minutes`` on a fake clock."""

    def __init__(self, clean_up_to: dict[str, int], minutes: float = 10.0) -> None:
        self.clean_up_to = clean_up_to
        self.minutes = minutes
        self.now = 0.0
        self.specs: list[RunSpec] = []

    def __call__(self, spec: RunSpec) -> Outcome:
        self.specs.append(spec)
        self.now += self.minutes * 60
        clean = spec.level <= self.clean_up_to[spec.target]
        return Outcome(spec, {"clean": clean, "admitted_whole": clean}, 0 if clean else 1)

    def clock(self) -> float:
        return self.now


def test_the_search_steps_up_alternating_targets_until_each_is_not_clean() -> None:
    runs = FakeRuns({"afterbeep": 500, "asterisk": 400})
    found = find_clean_level(
        runs, [450, 400, 500, 550, 600], ["afterbeep", "asterisk"], 1e9, runs.clock
    )
    assert found.highest == {"afterbeep": 500, "asterisk": 400}
    assert [(s.target, s.level) for s in runs.specs] == [
        ("afterbeep", 400),
        ("asterisk", 400),
        ("asterisk", 450),  # the other first at the next level
        ("afterbeep", 450),
        ("afterbeep", 500),
        ("afterbeep", 550),
    ]
    assert not found.stopped_by_time
    assert [o.clean for o in found.runs] == [True, True, False, True, True, False]


def test_the_search_is_bounded_in_time() -> None:
    runs = FakeRuns({"afterbeep": 2000}, minutes=25.0)
    found = find_clean_level(runs, [400, 450, 500, 550, 600], ["afterbeep"], 60 * 60, runs.clock)
    assert found.stopped_by_time
    assert [s.level for s in runs.specs] == [400, 450, 500]  # the 4th would start after 75 min
    assert found.highest == {"afterbeep": 500}


def test_no_clean_level_at_all() -> None:
    runs = FakeRuns({"afterbeep": 100})
    found = find_clean_level(runs, [400, 450], ["afterbeep"], 1e9, runs.clock)
    assert found.highest == {"afterbeep": None} and len(runs.specs) == 1


def test_abba_and_overload_runs() -> None:
    runs = FakeRuns({"afterbeep": 1000, "asterisk": 1000})
    abba(runs, 400, 2)
    assert [s.target for s in runs.specs] == ["afterbeep", "asterisk", "asterisk", "afterbeep"] * 2
    assert len({s.label for s in runs.specs}) == 8
    assert overload(runs, 450, 1.5).spec == RunSpec("afterbeep", 675, "overload_afterbeep_675")


def test_the_cores_ratio_of_an_abba_series() -> None:
    def run(target: str, cores: float) -> Outcome:
        return Outcome(
            RunSpec(target, 400, "x"), {"cores_per_100_calls": {"during_calls": cores}}, 0
        )

    series = [
        run("afterbeep", 0.30),
        run("asterisk", 0.40),
        run("asterisk", 0.44),
        run("afterbeep", 0.34),
    ]
    assert cores_ratio(series) == pytest.approx(0.32 / 0.42)
    assert cores_ratio(series[:1]) is None
    assert cores_ratio([*series, Outcome(RunSpec("asterisk", 400, "y"), {}, 1)]) == pytest.approx(
        0.32 / 0.42
    )


def _args(**kwargs: object) -> argparse.Namespace:
    base: dict[str, object] = {
        "waves": 2.0, "rate_divisor": 12.0, "hold_seconds": 5.0, "quiet_load": 0.5,
        "quiet_timeout": 600.0, "quiet_check": True, "max_calls": 0,
        "asterisk_prefix": Path("/work/asterisk/inst"),
    }  # fmt: skip
    return argparse.Namespace(**{**base, **kwargs})


def test_a_run_is_the_fixed_time_deposit_without_email_behind_the_quiet_check(
    tmp_path: Path,
) -> None:
    cmd = run_command(RunSpec("asterisk", 400, "x"), _args(), tmp_path / "x.json")
    line = " ".join(cmd)
    assert "--mode deposit --caller fixed-time --no-email --no-transcribe" in line
    assert "--calls 800 --concurrency 400 --rate 33.3" in line
    assert "--target asterisk --asterisk-prefix /work/asterisk/inst" in line
    assert "--quiet-load 0.5 --quiet-timeout 600" in line and "--no-quiet-check" not in line
    mine = run_command(
        RunSpec("afterbeep", 3, "y"),
        _args(quiet_check=False, max_calls=2, waves=1.0),
        tmp_path / "y.json",
    )
    assert "--target" not in mine and "--no-quiet-check" in mine
    assert mine[mine.index("--max-calls") + 1] == "2" and mine[mine.index("--calls") + 1] == "3"
    assert mine[mine.index("--rate") + 1] == "1"  # at least one call a second


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_overload_at_a_tiny_size_refuses_the_excess_and_measures_the_admitted(
    tmp_path: Path,
) -> None:
    """A node that takes 2 calls (AFTERBEEP_MAX_CALLS), 1.5 x 2 = 3 callers at once: one 503,
    two messages stored and exact, two beeps measured; the verdict follows the figures (with
    fewer than 10 calls nothing else refuses, however busy the test machine)."""
    out = tmp_path / "runs"
    cmd = [
        sys.executable, "-m", "benchmarks.sip_load.series", "--overload", "1.5", "--level", "2",
        "--max-calls", "2", "--waves", "1", "--hold-seconds", "1", "--no-quiet-check",
        "--out-dir", str(out), "--json", str(tmp_path / "series.json"),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=170, check=False)
    assert (tmp_path / "series.json").is_file(), done.stdout + done.stderr
    summary = json.loads((tmp_path / "series.json").read_text())
    run = summary["overload"]
    assert run["level"] == 3 and run["target"] == "afterbeep"
    f = run["figures"]
    assert (f["created"], f["admitted"], f["refused"], f["failed"]) == (3, 2, 1, 0), done.stdout
    assert f["refused_in_capture"] == 1 and f["refused_by_reason"] == {"max_calls": 1}
    assert f["passed"] and f["recordings"] == f["recordings_exact"] == 2
    assert f["beeps_heard"] == 2 and f["beep_late_ms"]["n"] == 2
    assert f["first_audio_ms"]["n"] == 2 and f["first_audio_ms"]["p50"] >= 0
    assert (f["beeps_late"] == 0) is (f["beep_late_ms"]["max"] <= 60)
    assert 0 <= f["beeps_late_handed_over_late"] <= f["beeps_late"] <= 2
    on_time = f["beep_late_ms"]["max"] <= 60 and f["first_second_incomplete"] == 0
    assert f["admitted_whole"] is on_time and summary["admitted_whole"] is on_time
    assert f["clean"] is False  # one call was refused
    assert done.returncode == (0 if on_time else 1)
    assert "overload_afterbeep_3: " in done.stdout and "503 1" in done.stdout
