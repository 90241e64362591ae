"""`benchmarks.cluster_load`'s search for the clean level, with the runs faked: the run's
arguments at each level, the clean verdict, the search stopping at the first level that is not
clean and what it writes; and each node's refusals by reason read from its /metrics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from benchmarks.cluster_load import run as cluster_load
from benchmarks.sip_load.run import Result


def parsed(*argv: str) -> argparse.Namespace:
    """The arguments `main` would run with (neither a run nor the search starts)."""
    seen: dict[str, argparse.Namespace] = {}

    def capture(args: argparse.Namespace, *_: object) -> None:
        seen["args"] = args
        raise SystemExit(0)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cluster_load, "run_once", capture)
        mp.setattr(cluster_load, "clean_levels", capture)
        with pytest.raises(SystemExit):
            cluster_load.main(list(argv))
    return seen["args"]


def test_a_level_runs_two_waves_of_calls_at_a_twelfth_of_it_a_second(tmp_path: Path) -> None:
    args = parsed("--hold-seconds", "5", "--json", str(tmp_path / "one.json"))
    run = cluster_load.level_args(args, 1000)
    assert (run.concurrency, run.calls, run.rate) == (1000, 2000, 83.3)
    assert run.hold_seconds == 5.0 and run.quiet_check
    assert run.json == tmp_path / "one_1000.json"
    assert (args.concurrency, args.calls) == (40, 40)  # the search's own arguments unchanged


def result(**figures: Any) -> Result:
    r = Result("deposit", 10, 10, 5.0, 3.0)
    r.created, r.successful, r.refused = 10, 10, 0
    r.quiet = {"checked": True, "quiet": True}
    for key, value in figures.items():
        setattr(r, key, value)
    return r


@pytest.mark.parametrize(
    ("figures", "goal_met", "clean"),
    [
        ({}, True, True),
        ({}, False, False),  # a failed call, a recording not exact, an email missing, p99
        ({"refused": 2}, True, False),  # both nodes refused: two callers got 503
        ({"created": 9}, True, False),
        ({"quiet": {"checked": True, "quiet": False}}, True, False),
        ({"quiet": {"checked": False}}, True, True),  # --no-quiet-check: small runs
    ],
)
def test_clean_is_the_goal_with_every_call_deposited_on_a_quiet_machine(
    figures: dict[str, Any], goal_met: bool, clean: bool
) -> None:
    assert cluster_load.is_clean(result(**figures), {"goal_met": goal_met}) is clean


def test_the_search_stops_at_the_first_level_that_is_not_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[int] = []

    def fake_run(args: argparse.Namespace) -> dict[str, Any]:
        ran.append(args.concurrency)
        if args.concurrency == 800:
            raise RuntimeError("afterbeep cluster run did not start")
        clean = args.concurrency <= 600
        refusals = {"n0": {"loop_lag": 3} if not clean else {}, "n1": {}}
        return {"clean": clean, "node_refusals": refusals, "quiet": {"load_1min": 0.3}}

    monkeypatch.setattr(cluster_load, "run_once", fake_run)
    out = tmp_path / "clean.json"
    args = parsed("--find-clean-level", "--levels", "800,400,600,1000", "--json", str(out))
    assert cluster_load.clean_levels(args, [800, 400, 600, 1000]) == 600
    assert ran == [400, 600, 800]  # ascending, and 1000 not run after 800 was not clean
    written = json.loads(out.read_text())
    assert written["highest_clean_level"] == 600
    assert [(r["level"], r["clean"]) for r in written["runs"]] == [
        (400, True),
        (600, True),
        (800, False),
    ]
    assert "error" in written["runs"][2]["figures"]


def test_no_clean_level_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_load, "run_once", lambda args: {"clean": False})
    args = parsed("--find-clean-level", "--levels", "400")
    assert cluster_load.clean_levels(args, [400]) is None


def test_a_level_line_names_each_nodes_refusals_by_reason() -> None:
    outcome = cluster_load.Outcome(
        cluster_load.RunSpec("cluster", 600, "cluster_600"),
        {"clean": False, "node_refusals": {"n1": {}, "n0": {"loop_lag": 3, "capacity": 1}}},
        1,
    )
    line = cluster_load.level_line(outcome)
    assert "nodes' 503 by reason: n0 capacity 1, loop_lag 3; n1 none" in line
    assert line.endswith("clean False")


def test_each_nodes_refusals_are_read_from_its_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = {
        "http://n0": ({"loop_lag": 187}, 34.0),
        "http://n1": ({}, 612.0),
    }

    def scraped(url: str) -> tuple[dict[str, int], float | None]:
        if url == "http://n2":
            raise OSError("connection refused")
        return metrics[url]

    monkeypatch.setattr(cluster_load, "scraped_admission", scraped)
    status = {"nodes": [{"node_id": f"n{i}", "http_url": f"http://n{i}"} for i in range(3)]}
    extra: dict[str, Any] = {}
    cluster_load.node_admission(status, extra)
    assert extra["node_refusals"]["n0"] == {"loop_lag": 187}
    assert extra["node_refusals"]["n1"] == {}
    assert extra["node_call_limit"] == {"n0": 34.0, "n1": 612.0, "n2": None}
    assert list(extra["node_refusals"]["n2"]) == ["(metrics unreadable: OSError)"]


def test_the_sip_sockets_drops_are_read_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[int, ...]] = []

    def drops(ports: tuple[int, ...]) -> dict[int, int]:
        asked.append(ports)
        return {5061: 12}

    monkeypatch.setattr(cluster_load, "socket_drops", drops)
    status = {
        "proxy": {"sip_port": 5060},
        "nodes": [{"node_id": "n0", "sip_port": 5061}, {"node_id": "n1", "sip_port": 5062}],
    }
    assert cluster_load.sip_drops(status) == {"kamailio": 0, "n0": 12, "n1": 0}
    assert asked == [(5060, 5061, 5062)]
