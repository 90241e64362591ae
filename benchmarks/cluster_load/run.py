"""Full deposits through Kamailio into `afterbeep cluster run` on this machine (issue 23).

The cluster (Kamailio and ``--nodes`` afterbeep nodes, one per core by default) runs on a
PostgreSQL cluster and a SeaweedFS S3 server started here (or ``--database-url`` and
``--storage-url`` with the AFTERBEEP_S3_* settings of the environment), with an aiosmtpd server
for the emails. SIPp calls the proxy with `benchmarks.sip_load`'s deposit caller (waits for the
beep, speaks, hangs up), its ACK and BYE following the dialog's route set through Kamailio.
Checked as ``benchmarks.sip_load --mode deposit`` checks: every call successful, every message
stored and exact (SNR >= 30 dB, at most 20 ms missing at either end), every email sent,
INVITE→200 p50/p99/max (SIPp ``rtd``, through the proxy). Reported besides: CPU seconds and
average cores of Kamailio (all its processes) and of each node (``serve`` and its post-call
worker), from /proc, during the calls and in all.

Each node's 503s by reason (``afterbeep_calls_refused_total`` of its /metrics: Kamailio sends a
refused INVITE on to another node, so they are not failed calls by themselves) and its learned
call limit are reported after the calls. Before the calls, the quiet check of
`benchmarks.sip_load` (``--quiet-check``, on by default: a 1-minute load average under
``--quiet-load``, waiting at most ``--quiet-timeout`` seconds, the cluster already started).

Like for like with the issue: every call is a full deposit (greeting, instructions, beep,
recording, the WAV stored on S3, the message row in PostgreSQL, an email with the WAV), email on
unless ``--no-email``. Transcription is on unless ``--no-transcribe``, as a node's default: it
runs after the call, in each node's post-call process at idle CPU priority (``SCHED_IDLE``), one
message at a time, and a message's email waits for its transcript up to
``AFTERBEEP_EMAIL_WAIT_TRANSCRIPT_SECONDS`` (30 s), so emails arrive up to that much after the
last call; its CPU is in the nodes' totals, not in the figures during the calls.

The issue's goal: ``--calls 1000 --concurrency 1000``: zero failed calls, every recording exact,
every email sent, INVITE→200 p99 <= 50 ms (``goal_met`` in the report). ``clean`` also wants no
503 reaching SIPp (every call deposited) and a quiet machine. ``--find-clean-level --levels
400,600,800,1000``: a run per level in ascending order (``--waves`` x level calls at level /
``--rate-divisor`` a second, 83/s at 1,000), each behind the quiet check, up to the first that
is not clean, no run starting after ``--max-minutes``; the highest clean level is printed, with
a line per run, and written with ``--json`` (each run's own JSON beside it, ``<stem>_<level>``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tests.fixtures.postgres import postgres_cluster
from tests.fixtures.rtp_pcap import RtpStreamBuilder, g711_roundtrip, write_pcap
from tests.fixtures.seaweed import run_seaweed_s3
from tests.fixtures.smtp import smtp_server

from afterbeep.audio.tones import speech_like
from afterbeep.telephony.media import Codec
from afterbeep.telephony.prompts import beep, prompt
from benchmarks.sip_load.quiet import load_average
from benchmarks.sip_load.run import (
    BIN,
    LEAD_MS,
    NUMBER,
    SCENARIO,
    TAIL_MS,
    DepositApi,
    Result,
    _emails,
    check_recordings,
    cpu_seconds,
    free_port,
    machine_busy_seconds,
    quiet_check,
    read_sipp_stats,
    read_wav,
    scraped_admission,
    socket_drops,
    wait_for,
)
from benchmarks.sip_load.series import Outcome, RunSpec, find_clean_level

P99_GOAL_MS = 50.0


def proxied_scenario(wait: str, hold_ms: int) -> str:
    """sip_load's deposit caller, its in-dialog requests sent along the route set of the 200
    (Record-Route of the proxy) to the node's Contact."""
    text = SCENARIO.replace("{wait}", wait).replace("{hold_ms}", str(hold_ms))
    text = text.replace('<recv response="200" rtd="1"/>', '<recv response="200" rtd="1" rrs="true"/>')
    for method in ("ACK", "BYE"):
        before = f"      {method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
        after = f"      {method} [next_url] SIP/2.0\n      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n      [routes]\n"
        text = text.replace(before, after)  # (the 503's ACK, `[last_Via:]`, stays hop by hop)
    if text.count("[routes]") != 2:
        raise RuntimeError("sip_load's scenario changed: cannot route its ACK and BYE")
    return text


@contextlib.contextmanager
def backends(args: argparse.Namespace, work: Path) -> Iterator[dict[str, str]]:
    """AFTERBEEP_DATABASE_URL / STORAGE_URL / S3_*: given, or PostgreSQL and SeaweedFS started here."""
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        if args.database_url:
            env["AFTERBEEP_DATABASE_URL"] = args.database_url
        else:
            env["AFTERBEEP_DATABASE_URL"] = stack.enter_context(postgres_cluster())
        if args.storage_url:
            env["AFTERBEEP_STORAGE_URL"] = args.storage_url
        else:
            (work / "seaweed").mkdir()
            s3 = stack.enter_context(run_seaweed_s3(work / "seaweed"))
            env.update(
                AFTERBEEP_STORAGE_URL=f"s3://{s3.bucket}",
                AFTERBEEP_S3_ENDPOINT=s3.endpoint_url,
                AFTERBEEP_S3_REGION=s3.region,
                AFTERBEEP_S3_ACCESS_KEY=s3.access_key,
                AFTERBEEP_S3_SECRET_KEY=s3.secret_key,
            )
        yield env


@contextlib.contextmanager
def cluster(args: argparse.Namespace, env: dict[str, str], log: Path) -> Iterator[dict[str, Any]]:
    """`afterbeep cluster run` until it has started; its cluster.json; SIGTERM (drain) on exit."""
    argv = [
        str(BIN / "afterbeep"), "cluster", "run", "--nodes", str(args.nodes),
        "--sip-port", "0", "--node-sip-port-base", "0", "--http-port-base", "0",
        "--rtp-min", str(args.rtp_min), "--rtp-max", str(args.rtp_max),
        "--cps", "0", "--kamailio-children", str(args.kamailio_children),
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while "Kamailio: SIP" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"afterbeep cluster run did not start: {log.read_text()[-4000:]}")
            time.sleep(0.2)
        status: dict[str, Any] = json.loads((Path(env["AFTERBEEP_DATA_DIR"]) / "cluster" / "cluster.json").read_text())
        yield status
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_of(status: dict[str, Any]) -> dict[str, float]:
    """CPU seconds so far of Kamailio (all its processes) and of each node (with its children)."""
    found = {"kamailio": cpu_seconds(int(status["proxy"]["pid"]))}
    for node in status["nodes"]:
        found[node["node_id"]] = cpu_seconds(int(node["pid"]))
    return found


def run_sipp(args: argparse.Namespace, work: Path, proxy_port: int, result: Result) -> None:
    sipp = shutil.which("sipp")
    if sipp is None:
        raise SystemExit("sipp not found: apt-get install sip-tester")
    cmd = [
        sipp, f"127.0.0.1:{proxy_port}",
        "-sf", str(work / "caller.xml"), "-s", NUMBER,
        "-i", "127.0.0.1", "-t", "u1",
        "-mp", str(free_port()), "-p", str(free_port()),
        "-r", str(args.rate), "-l", str(args.concurrency), "-m", str(args.calls),
        "-timeout", f"{args.time_limit}s", "-timeout_error", "-recv_timeout", "30000", "-nostdin",
        "-trace_stat", "-stf", str(work / "stat.csv"), "-fd", "1",
        "-trace_rtt", "-rtt_freq", "1",
        "-trace_err", "-error_file", str(work / "sipp_errors.log"),
    ]  # fmt: skip
    result.notes.append("sipp " + " ".join(cmd[1:]))
    started = time.monotonic()
    with (work / "sipp.out").open("wb") as out:
        proc = subprocess.run(cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT, timeout=args.time_limit + 30, check=False)
    result.wall_seconds = time.monotonic() - started
    result.sipp_exit = proc.returncode
    read_sipp_stats(work, result)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=os.cpu_count() or 1, help="afterbeep nodes (default: one per core)")
    parser.add_argument("--calls", type=int, default=40, help="total calls (SIPp -m)")
    parser.add_argument("--concurrency", type=int, default=40, help="concurrent calls (SIPp -l)")
    parser.add_argument("--rate", type=float, default=20, help="new calls per second (SIPp -r)")
    parser.add_argument("--hold-seconds", type=float, default=3.0, help="seconds of speech per call")
    parser.add_argument("--time-limit", type=int, default=170, help="SIPp -timeout, seconds")
    parser.add_argument("--drain-seconds", type=float, default=120, help="wait for messages and emails")
    parser.add_argument("--rtp-min", type=int, default=20000)
    parser.add_argument("--rtp-max", type=int, default=31999, help="split among the nodes")
    parser.add_argument("--kamailio-children", type=int, default=4)
    parser.add_argument("--no-email", action="store_true", help="the mailbox has no notify_email")
    parser.add_argument("--no-transcribe", action="store_true", help="AFTERBEEP_TRANSCRIBE=off")
    parser.add_argument("--database-url", default="", help="a PostgreSQL URL (default: a cluster started here)")
    parser.add_argument("--storage-url", default="", help="s3://bucket, AFTERBEEP_S3_* from the environment (default: SeaweedFS started here)")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (a failed run always keeps it)")
    parser.add_argument("--quiet-check", action=argparse.BooleanOptionalAction, default=True, help="before the calls, wait for a 1-minute load average under --quiet-load")
    parser.add_argument("--quiet-load", type=float, default=0.5)
    parser.add_argument("--quiet-timeout", type=float, default=600.0)
    parser.add_argument("--find-clean-level", action="store_true", help="runs at --levels in ascending order up to the first that is not clean")
    parser.add_argument("--levels", default="400,600,800,1000", help="--find-clean-level: concurrent calls")
    parser.add_argument("--waves", type=float, default=2.0, help="--find-clean-level: calls = waves x level")
    parser.add_argument("--rate-divisor", type=float, default=12.0, help="--find-clean-level: rate = level / this")
    parser.add_argument("--max-minutes", type=float, default=10.0, help="--find-clean-level: no run starts after")
    args = parser.parse_args(argv)
    levels = [int(v) for v in args.levels.split(",") if v.strip()]
    if args.calls > 5000 or args.concurrency > 2000 or args.time_limit > 900 or args.nodes > 16:
        parser.error("bounded: at most 5000 calls, 2000 concurrent, 900 s, 16 nodes")
    if args.find_clean_level and (not levels or any(not 1 <= n <= 2000 for n in levels) or args.waves * max(levels) > 5000):
        parser.error("--levels: 1 to 2000 concurrent calls, at most 5000 calls a run")
    if args.find_clean_level:
        sys.exit(0 if clean_levels(args, levels) is not None else 1)
    summary = run_once(args)
    sys.exit(0 if summary["passed"] else 1)


def level_args(args: argparse.Namespace, level: int) -> argparse.Namespace:
    """One run of the search: ``level`` concurrent calls, ``--waves`` x level of them at level /
    ``--rate-divisor`` a second (83/s at 1,000, as the issue's run), each run's JSON beside
    ``--json``."""
    run = argparse.Namespace(**vars(args))
    run.concurrency = level
    run.calls = max(1, round(level * args.waves))
    run.rate = max(1.0, round(level / args.rate_divisor, 1))
    run.json = None if args.json is None else args.json.with_name(f"{args.json.stem}_{level}.json")
    return run


def clean_levels(args: argparse.Namespace, levels: list[int]) -> int | None:
    """The highest of ``levels`` whose run was clean (`benchmarks.sip_load.series`' search with
    one target); prints a line per run and, with ``--json``, writes the search."""

    def run(spec: RunSpec) -> Outcome:
        print(f"== cluster at {spec.level} concurrent", flush=True)
        try:
            figures = run_once(level_args(args, spec.level))
        except Exception as exc:  # the search records the run as not clean
            print(f"cluster at {spec.level}: the run failed: {exc!r}", flush=True)
            figures = {"clean": False, "error": repr(exc)}
        outcome = Outcome(spec, figures, 0 if figures["clean"] else 1)
        print(level_line(outcome), flush=True)
        return outcome

    found = find_clean_level(run, levels, ["cluster"], args.max_minutes * 60)
    highest = found.highest["cluster"]
    print(f"highest clean level of the cluster: {highest if highest is not None else 'none of ' + args.levels}")
    if found.stopped_by_time:
        print(f"stopped: {args.max_minutes:g} minutes passed")
    for outcome in found.runs:
        print(level_line(outcome))
    if args.json is not None:
        runs = [{"level": o.spec.level, "clean": o.clean, "figures": o.figures} for o in found.runs]
        args.json.write_text(json.dumps({"highest_clean_level": highest, "stopped_by_time": found.stopped_by_time, "runs": runs}, indent=2))
    return highest


def level_line(o: Outcome) -> str:
    f = o.figures
    lat = f.get("invite_to_200_ms") or {}
    quiet = f.get("quiet") or {}
    refusals = "; ".join(f"{node} " + (", ".join(f"{k} {v}" for k, v in sorted(by.items())) or "none") for node, by in sorted((f.get("node_refusals") or {}).items()))
    return (
        f"cluster {o.spec.level}: load {quiet.get('load_1min', float('nan')):.2f}"
        f"{'' if quiet.get('quiet', True) else ' NOT QUIET'}"
        f" | successful {f.get('successful')} / failed {f.get('failed')} / 503 at SIPp {f.get('refused')}"
        f" | INVITE->200 p99 {lat.get('p99', float('nan')):.1f} ms"
        f" | recordings {f.get('recordings')} exact {f.get('recordings_exact')} | emails {f.get('emails')}"
        f" | nodes' 503 by reason: {refusals or 'n/a'}"
        f" | SIP drops {', '.join(f'{k} {v}' for k, v in (f.get('sip_drops') or {}).items()) or 'n/a'}"
        f" | clean {o.clean}"
    )


def is_clean(r: Result, extra: dict[str, Any]) -> bool:
    """The issue's goal at this level: every call made and deposited (none failed, none refused
    by both nodes), every recording exact, every email sent, INVITE→200 p99 <= 50 ms; and the
    machine was quiet when the calls started (or the check was off, for small runs)."""
    quiet = r.quiet.get("quiet", True) if r.quiet.get("checked") else True
    return bool(extra["goal_met"]) and r.refused == 0 and r.created == r.calls and quiet


def run_once(args: argparse.Namespace) -> dict[str, Any]:
    """One run; prints its report and returns what ``--json`` holds."""
    work = Path(tempfile.mkdtemp(prefix="cluster_load_"))
    hold_ms = round(args.hold_seconds * 1000 / 20) * 20
    speech = speech_like(hold_ms, seed=11)
    reference = g711_roundtrip(Codec.PCMU, speech)
    stream = RtpStreamBuilder(Codec.PCMU, 20, 101)
    stream.audio(speech)
    played_ms = round(stream.duration * 1000)
    write_pcap(work / "speech.pcap", stream.take())
    prompts_ms = (len(prompt("vm-greeting")) + len(prompt("vm-instructions")) + len(beep())) // 8
    wait = f'<pause milliseconds="{prompts_ms + LEAD_MS}"/>'
    (work / "caller.xml").write_text(proxied_scenario(wait, played_ms + TAIL_MS))

    result = Result("deposit", args.calls, args.concurrency, args.rate, hold_ms / 1000)
    result.target = f"afterbeep cluster ({args.nodes} nodes behind Kamailio)"
    result.email = not args.no_email
    result.transcribe = not args.no_transcribe
    extra: dict[str, Any] = {"nodes": args.nodes, "load_1min_before": load_average()}
    try:
        with backends(args, work) as shared, smtp_server() as smtp:
            env = {
                **os.environ,
                **shared,
                "AFTERBEEP_DATA_DIR": str(work / "var"),
                "AFTERBEEP_SECRET_KEY": secrets.token_urlsafe(40),
                "AFTERBEEP_SMTP_URL": smtp.url(),
                "AFTERBEEP_MAX_CALLS": str(args.concurrency + 200),
                "AFTERBEEP_LOG_LEVEL": "WARNING",
                "AFTERBEEP_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8",
                **({"AFTERBEEP_TRANSCRIBE": "off"} if args.no_transcribe else {}),
            }
            with cluster(args, env, work / "cluster.log") as status:
                first = status["nodes"][0]["http_url"]
                api = DepositApi(first, env, email=not args.no_email)
                quiet_check(args, result)
                extra["load_1min_before"] = load_average()
                cpu_before, machine_before = cpu_of(status), machine_busy_seconds()
                run_sipp(args, work, int(status["proxy"]["sip_port"]), result)
                cpu_calls = {k: v - cpu_before[k] for k, v in cpu_of(status).items()}
                machine_calls = machine_busy_seconds() - machine_before
                node_admission(status, extra)
                extra["sip_drops"] = sip_drops(status)
                calls_ended = time.monotonic()
                messages = wait_for(api.messages, lambda m: len(m) >= result.admitted, args.drain_seconds)
                result.messages_stored_after_s = time.monotonic() - calls_ended
                if not args.no_email:
                    result.emails = wait_for(lambda: _emails(smtp), lambda n: n >= len(messages), args.drain_seconds)
                    result.emails_received_after_s = time.monotonic() - calls_ended
                cpu_total = {k: v - cpu_before[k] for k, v in cpu_of(status).items()}
                if len({m["call_id"] for m in messages}) != len(messages):
                    result.notes.append("duplicate call_id among messages")
                check_recordings(result, reference, (read_wav(api.audio(m["id"])) for m in messages))
        wall = result.wall_seconds or 1.0
        extra["cpu_seconds_during_calls"] = {k: round(v, 2) for k, v in cpu_calls.items()}
        extra["cores_avg_during_calls"] = {k: round(v / wall, 3) for k, v in cpu_calls.items()}
        extra["cpu_seconds_total"] = {k: round(v, 2) for k, v in cpu_total.items()}
        extra["machine_busy_cores_avg"] = round(machine_calls / wall, 3)
    finally:
        p99 = result.invite_to_200_ms.get("p99", float("inf"))
        emails_ok = args.no_email or result.emails == result.recordings
        extra["goal_met"] = result.passed and emails_ok and p99 <= P99_GOAL_MS
        extra["passed"] = result.passed and emails_ok
        extra["clean"] = is_clean(result, extra)
        report(result, extra, work)
        summary = {**asdict(result), **extra, "work": str(work)}
        if args.json is not None:
            args.json.write_text(json.dumps(summary, indent=2))
        if not args.keep and extra["passed"]:
            shutil.rmtree(work, ignore_errors=True)
    return summary


def sip_drops(status: dict[str, Any]) -> dict[str, int]:
    """Datagrams the kernel dropped at the SIP sockets of Kamailio and of each node (their
    receive buffers full: a request lost there is retransmitted, then times out)."""
    ports = {"kamailio": int(status["proxy"]["sip_port"])}
    ports.update({node["node_id"]: int(node["sip_port"]) for node in status["nodes"]})
    drops = socket_drops(tuple(ports.values()))
    return {name: drops.get(port, 0) for name, port in ports.items()}


def node_admission(status: dict[str, Any], extra: dict[str, Any]) -> None:
    """Each node's refusals by reason (``afterbeep_calls_refused_total``: 503s that Kamailio
    may have sent on to the other node) and its learned call limit, from its /metrics."""
    extra["node_refusals"], extra["node_call_limit"] = {}, {}
    for node in status["nodes"]:
        try:
            by_reason, limit = scraped_admission(node["http_url"])
        except Exception as exc:  # a report line, not a verdict
            by_reason, limit = {"(metrics unreadable: " + type(exc).__name__ + ")": 0}, None
        extra["node_refusals"][node["node_id"]] = by_reason
        extra["node_call_limit"][node["node_id"]] = limit


def report(r: Result, extra: dict[str, Any], work: Path) -> None:
    lat = r.invite_to_200_ms
    quiet = r.quiet
    waited = f" (quiet check: waited {quiet.get('waited_s', 0):g} s{'' if quiet.get('quiet', True) else ', NOT QUIET'})" if quiet.get("checked") else " (no quiet check)"
    rows = [
        ("target", r.target + ("" if r.transcribe else ", no transcription") + ("" if r.email else ", no email")),
        ("load average before the calls", f"{extra['load_1min_before']:.2f}{waited}"),
        ("calls created / successful / failed / refused", f"{r.created} / {r.successful} / {r.failed} / {r.refused}"),
        ("SIPp -l / peak / mean concurrent", f"{r.concurrency} / {r.peak_concurrent} / {r.concurrent_avg:.1f}"),
        ("SIPp exit / retransmissions / wall s", f"{r.sipp_exit} / {r.retransmissions} / {r.wall_seconds:.1f}"),
        (
            "INVITE->200 ms p50 / p99 / max (through Kamailio)",
            f"{lat.get('p50', float('nan')):.1f} / {lat.get('p99', float('nan')):.1f} / {lat.get('max', float('nan')):.1f}",
        ),
        ("recordings / exact / mismatches", f"{r.recordings} / {r.recordings_exact} / {r.mismatches}"),
        ("worst SNR dB / tail ms / head ms", f"{r.worst_snr_db} / {r.worst_missing_tail_ms} / {r.worst_missing_head_ms}"),
        ("emails with WAV received", str(r.emails)),
    ]
    for name, seconds in extra.get("cpu_seconds_during_calls", {}).items():
        cores = extra["cores_avg_during_calls"][name]
        total = extra["cpu_seconds_total"][name]
        rows.append((f"CPU s during calls (avg cores) / total: {name}", f"{seconds:.2f} ({cores:.3f}) / {total:.2f}"))
    for name, by_reason in extra.get("node_refusals", {}).items():
        shown = ", ".join(f"{k} {v}" for k, v in sorted(by_reason.items())) or "none"
        limit = extra["node_call_limit"].get(name)
        rows.append((f"503s sent by {name}, by reason; call limit at the end", f"{shown}; {'n/a' if limit is None else f'{limit:g}'}"))
    if "sip_drops" in extra:
        shown = ", ".join(f"{name} {n}" for name, n in extra["sip_drops"].items())
        rows.append(("UDP datagrams dropped at the SIP sockets", shown))
    if "machine_busy_cores_avg" in extra:
        rows.append(("machine busy cores during calls", f"{extra['machine_busy_cores_avg']:.2f} of {os.cpu_count()}"))
    rows.append(("PASSED (every call, recording exact, email sent)", str(extra["passed"])))
    rows.append((f"GOAL MET (and p99 <= {P99_GOAL_MS:g} ms)", str(extra["goal_met"])))
    rows.append(("CLEAN (goal met, no 503 reached SIPp, quiet)", str(extra["clean"])))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    for note in r.notes:
        print("note:", note)
    print("work dir:", work)

if __name__ == "__main__":
    main()
