"""Series of fixed-time runs (issue 24's must-show), each run a `benchmarks.sip_load` process.

* ``--abba --level 400``: afterbeep, Asterisk, Asterisk, afterbeep at one level (``--rounds``
  times), so a drift of the machine falls on both;
* ``--find-clean-level --levels 400,450,500``: steps concurrency up and reports, per target, the
  highest level where the run was clean (every call admitted, every admitted beep within 60 ms,
  every message stored, exact and holding the caller's first second); a target stops at its
  first level that was not clean, and the whole search stops at ``--max-minutes``. With
  ``--targets afterbeep,asterisk`` the two alternate at each level (first one, then the other
  first at the next level);
* ``--overload 1.5 --level N``: one afterbeep run at 1.5 x N concurrent, where the excess is to
  get 503 and every admitted call is to stay on time and whole.

Each run is the deposit mode with the fixed-time caller, no email, no transcription, behind
the quiet check (its own ``--quiet-load`` and ``--quiet-timeout``), ``--calls`` = ``--waves``
x the level (default 2), ``--rate`` = the level / ``--rate-divisor`` (12: as the earlier
400-call runs, 33 calls/s). The runs' JSON files go to ``--out-dir``; a summary table is printed
and, with ``--json``, written.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TARGETS = ("afterbeep", "asterisk")


@dataclass(frozen=True, slots=True)
class RunSpec:
    target: str
    level: int  # concurrent calls (SIPp -l)
    label: str  # where its JSON goes: <out-dir>/<label>.json


@dataclass(slots=True)
class Outcome:
    spec: RunSpec
    figures: dict[str, Any]  # the run's JSON (empty when it wrote none)
    exit_code: int

    @property
    def clean(self) -> bool:
        return bool(self.figures.get("clean"))

    @property
    def admitted_whole(self) -> bool:
        return bool(self.figures.get("admitted_whole"))


Runner = Callable[[RunSpec], Outcome]


@dataclass(slots=True)
class CleanLevels:
    highest: dict[str, int | None]  # per target: the highest clean level found
    runs: list[Outcome] = field(default_factory=list)
    stopped_by_time: bool = False


def find_clean_level(
    run: Runner,
    levels: Sequence[int],
    targets: Sequence[str],
    max_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> CleanLevels:
    """Every target at each level in ascending order until its first run that is not clean;
    nothing new starts once ``max_seconds`` have passed."""
    started = clock()
    found = CleanLevels({t: None for t in targets})
    going = list(targets)
    for index, level in enumerate(sorted(levels)):
        order = going if index % 2 == 0 else list(reversed(going))
        for target in order:
            if clock() - started >= max_seconds:
                found.stopped_by_time = True
                return found
            outcome = run(RunSpec(target, level, f"clean_{target}_{level}"))
            found.runs.append(outcome)
            if outcome.clean:
                found.highest[target] = level
            else:
                going.remove(target)
        if not going:
            break
    return found


def abba(run: Runner, level: int, rounds: int, targets: Sequence[str] = TARGETS) -> list[Outcome]:
    """A, B, B, A per round at ``level``."""
    a, b = targets
    return [
        run(RunSpec(target, level, f"abba_{target}_{level}_{round_}{half}"))
        for round_ in range(1, rounds + 1)
        for half, target in (("a", a), ("a", b), ("b", b), ("b", a))
    ]


def cores_ratio(outcomes: Sequence[Outcome]) -> float | None:
    """afterbeep's mean cores per concurrent call during the calls over Asterisk's (the issue's
    ratio: at most 1.0, goal 0.7); None without a figure of each."""
    means: dict[str, float] = {}
    for target in TARGETS:
        figures = [
            float(o.figures["cores_per_100_calls"]["during_calls"])
            for o in outcomes
            if o.spec.target == target
            and (o.figures.get("cores_per_100_calls") or {}).get("during_calls")
        ]
        if not figures:
            return None
        means[target] = sum(figures) / len(figures)
    return means["afterbeep"] / means["asterisk"]


def overload(run: Runner, level: int, factor: float) -> Outcome:
    """One afterbeep run at ``factor`` x the clean ``level``."""
    over = round(level * factor)
    return run(RunSpec("afterbeep", over, f"overload_afterbeep_{over}"))


def run_command(spec: RunSpec, args: argparse.Namespace, out: Path) -> list[str]:
    """The `benchmarks.sip_load` command line of one run."""
    calls = max(1, round(spec.level * args.waves))
    rate = max(1.0, round(spec.level / args.rate_divisor, 1))
    cmd = [
        sys.executable, "-m", "benchmarks.sip_load",
        "--mode", "deposit", "--caller", "fixed-time", "--no-email", "--no-transcribe",
        "--calls", str(calls), "--concurrency", str(spec.level), "--rate", f"{rate:g}",
        "--hold-seconds", f"{args.hold_seconds:g}",
        "--quiet-load", f"{args.quiet_load:g}", "--quiet-timeout", f"{args.quiet_timeout:g}",
        "--json", str(out),
    ]  # fmt: skip
    if not args.quiet_check:
        cmd.append("--no-quiet-check")
    if args.max_calls:
        cmd += ["--max-calls", str(args.max_calls)]
    if spec.target == "asterisk":
        cmd += ["--target", "asterisk", "--asterisk-prefix", str(args.asterisk_prefix)]
    return cmd


def subprocess_runner(args: argparse.Namespace) -> Runner:
    def run(spec: RunSpec) -> Outcome:
        out = args.out_dir / f"{spec.label}.json"
        out.unlink(missing_ok=True)
        cmd = run_command(spec, args, out)
        print(f"== {spec.label}: {' '.join(cmd[2:])}", flush=True)
        log = args.out_dir / f"{spec.label}.log"
        with log.open("wb") as f:
            done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False)
        figures: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
        outcome = Outcome(spec, figures, done.returncode)
        print(summary_line(outcome), flush=True)
        return outcome

    return run


def summary_line(o: Outcome) -> str:
    f = o.figures
    if not f:
        return f"{o.spec.label}: no result (exit {o.exit_code})"
    late = f.get("beep_late_ms") or {}
    per = f.get("cores_per_100_calls") or {}
    quiet = f.get("quiet") or {}
    beep = f"{late['p50']:.1f}/{late['p99']:.1f}/{late['max']:.1f}" if late.get("n") else "n/a"
    return (
        f"{o.spec.label}: load {quiet.get('load_1min', float('nan')):.2f}"
        f"{'' if quiet.get('quiet', True) else ' NOT QUIET'}"
        f" | admitted {f.get('admitted')} / 503 {f.get('refused')} / failed {f.get('failed')}"
        f" | cores/100 calls {per.get('during_calls', float('nan')):.3f}"
        f" | beep late ms p50/p99/max {beep}"
        f" | messages {f.get('recordings')} exact {f.get('recordings_exact')}"
        f" missing 1st s {f.get('first_second_incomplete')}"
        f" | whole {o.admitted_whole} clean {o.clean}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--find-clean-level", action="store_true")
    what.add_argument("--overload", type=float, metavar="FACTOR", help="x the --level")
    what.add_argument("--abba", action="store_true")
    parser.add_argument("--level", type=int, help="--abba and --overload: concurrent calls")
    parser.add_argument("--levels", default="400,450,500,550,600", help="--find-clean-level")
    parser.add_argument(
        "--targets", default="afterbeep", help="--find-clean-level: afterbeep,asterisk"
    )
    parser.add_argument("--rounds", type=int, default=1, help="--abba")
    parser.add_argument(
        "--max-minutes", type=float, default=120.0, help="--find-clean-level: no run starts after"
    )
    parser.add_argument("--asterisk-prefix", type=Path, default=Path("/work/asterisk/inst"))
    parser.add_argument("--hold-seconds", type=float, default=5.0)
    parser.add_argument("--waves", type=float, default=2.0, help="calls = waves x level")
    parser.add_argument("--rate-divisor", type=float, default=12.0, help="rate = level / this")
    parser.add_argument(
        "--max-calls", type=int, default=0, help="AFTERBEEP_MAX_CALLS (default: the run's)"
    )
    parser.add_argument("--quiet-check", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--quiet-load", type=float, default=0.5)
    parser.add_argument("--quiet-timeout", type=float, default=600.0)
    parser.add_argument("--out-dir", type=Path, default=Path("issue24_runs"))
    parser.add_argument("--json", type=Path, default=None, help="the series' summary")
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if any(t not in TARGETS for t in targets) or not targets:
        parser.error(f"--targets: some of {', '.join(TARGETS)}")
    levels = [int(v) for v in args.levels.split(",") if v.strip()]
    if (args.abba or args.overload) and not args.level:
        parser.error("--abba and --overload need --level")
    if any(n < 1 or n > 2000 for n in [*levels, args.level or 1]):
        parser.error("levels: 1 to 2000 concurrent calls")
    if args.overload is not None and not 1.0 <= args.overload <= 4.0:
        parser.error("--overload: a factor from 1 to 4")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    run = subprocess_runner(args)
    summary: dict[str, Any]
    if args.abba:
        outcomes = abba(run, args.level, args.rounds)
        ratio = cores_ratio(outcomes)
        summary = {"abba": [_record(o) for o in outcomes], "cores_ratio": ratio}
        ok = all(o.figures for o in outcomes)
        shown = "n/a" if ratio is None else f"{ratio:.2f}"
        print(f"cores per concurrent call at {args.level}, afterbeep / Asterisk: {shown}")
    elif args.overload is not None:
        outcome = overload(run, args.level, args.overload)
        summary = {"overload": _record(outcome), "admitted_whole": outcome.admitted_whole}
        print(
            f"overload x{args.overload:g} of {args.level}: admitted calls whole and on time: {outcome.admitted_whole}"
        )
        ok = outcome.admitted_whole
    else:
        found = find_clean_level(run, levels, targets, args.max_minutes * 60)
        summary = {
            "highest_clean_level": found.highest,
            "stopped_by_time": found.stopped_by_time,
            "runs": [_record(o) for o in found.runs],
        }
        for target, level in found.highest.items():
            print(
                f"highest clean level, {target}: {level if level is not None else 'none of ' + args.levels}"
            )
        if found.stopped_by_time:
            print(f"stopped: {args.max_minutes:g} minutes passed")
        ok = all(level is not None for level in found.highest.values())
    print("\n".join(summary_line(o) for o in _outcomes(summary)))
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2))
    sys.exit(0 if ok else 1)


def _record(o: Outcome) -> dict[str, Any]:
    return {**asdict(o.spec), "exit_code": o.exit_code, "clean": o.clean, "figures": o.figures}


def _outcomes(summary: dict[str, Any]) -> list[Outcome]:
    records = summary.get("runs") or summary.get("abba") or [summary["overload"]]
    return [
        Outcome(RunSpec(r["target"], r["level"], r["label"]), r["figures"], r["exit_code"])
        for r in records
    ]


if __name__ == "__main__":
    main()
