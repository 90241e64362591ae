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

The issue's goal: ``--calls 1000 --concurrency 1000``: zero failed calls, every recording exact,
every email sent, INVITE→200 p99 <= 50 ms (``goal_met`` in the report).
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
    read_sipp_stats,
    read_wav,
    wait_for,
)

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
    args = parser.parse_args(argv)
    if args.calls > 5000 or args.concurrency > 2000 or args.time_limit > 900 or args.nodes > 16:
        parser.error("bounded: at most 5000 calls, 2000 concurrent, 900 s, 16 nodes")

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
                cpu_before, machine_before = cpu_of(status), machine_busy_seconds()
                run_sipp(args, work, int(status["proxy"]["sip_port"]), result)
                cpu_calls = {k: v - cpu_before[k] for k, v in cpu_of(status).items()}
                machine_calls = machine_busy_seconds() - machine_before
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
        report(result, extra, work)
        if args.json is not None:
            args.json.write_text(json.dumps({**asdict(result), **extra, "work": str(work)}, indent=2))
        if not args.keep and extra["passed"]:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if extra["passed"] else 1)


def report(r: Result, extra: dict[str, Any], work: Path) -> None:
    lat = r.invite_to_200_ms
    rows = [
        ("target", r.target),
        ("load average before the calls", f"{extra['load_1min_before']:.2f}"),
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
    if "machine_busy_cores_avg" in extra:
        rows.append(("machine busy cores during calls", f"{extra['machine_busy_cores_avg']:.2f} of {os.cpu_count()}"))
    rows.append(("PASSED (every call, recording exact, email sent)", str(extra["passed"])))
    rows.append((f"GOAL MET (and p99 <= {P99_GOAL_MS:g} ms)", str(extra["goal_met"])))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    for note in r.notes:
        print("note:", note)
    print("work dir:", work)

if __name__ == "__main__":
    main()
