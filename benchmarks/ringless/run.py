"""Ringless voicemail benchmarks against a real `afterbeep serve` (SQLite, local storage).

``accept``: sends accepted per second with MP3 validation. Concurrent HTTP clients each post
multipart sends (`POST /v1/voicemails`, an MP3 of `--seconds` s, so every request streams the
audio, scans all its frames and decodes its first second, stores it and the send), delivery
switched off so only the accepting is measured. Reported: sends/s, latency p50/p99, the
service's CPU, the client's CPU (this process) and the load average.

``drain``: `--sends` queued sends drained at the setup's calls per second. The sends are
accepted with one `send_at` a little in the future, so they fall due together; the callee is a
SIPp UAS (`uas_answer.xml`) that answers and takes the audio. Reported from SIPp's message
trace: the INVITE rate over sliding 1 s windows (max, mean) against the configured rate, and
how every send ended.

Both are bounded (sends, clients, time) and stay on 127.0.0.1. Run from the repository root:
``.venv/bin/python -m benchmarks.ringless accept|drain ...`` (see README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf
from tests.fixtures.service import Service, running_service

from afterbeep.audio.tones import speech_like
from benchmarks.affinity import pin

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
SENDER = "+12025550177"
MAX_SENDS = 5000
MAX_CLIENTS = 64
PY_SPY_EXTRA = os.environ.get("PY_SPY_EXTRA", "").split()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mp3(seconds: float, rate: int = 22050) -> bytes:
    pcm = speech_like(seconds * 1000, seed=5).astype(np.float32) / 32768
    pcm = np.interp(np.arange(int(seconds * rate)) * 8000 / rate, np.arange(len(pcm)), pcm)
    buffer = io.BytesIO()
    sf.write(buffer, pcm.astype(np.float32), rate, format="MP3")
    return buffer.getvalue()


def account(service: Service) -> dict[str, str]:
    """A new account, with SENDER verified for it by the operator."""
    created = json.loads(service.cli("account", "create", "Bench", "--json").stdout)
    service.cli("numbers", "verify", SENDER, "--account", created["account_id"])
    return {"Authorization": f"Bearer {created['api_key']}"}


async def post(http: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    r = await http.post(path, json=body, headers=headers)
    if r.status_code >= 300:
        raise RuntimeError(f"{path}: {r.status_code} {r.text}")
    return r.json()


async def use_case(
    http: httpx.AsyncClient, headers: dict[str, str], deposit_uri: str, cps: float, concurrent: int
) -> str:
    setup = await post(
        http,
        "/v1/telephony-setups",
        {
            "name": "bench",
            "trunk_host": "127.0.0.1",
            "trunk_port": 5060,
            "transport": "udp",
            "max_calls_per_second": cps,
            "max_concurrent_calls": concurrent,
            "numbers": [{"e164": SENDER}],
            "deposit_uri": deposit_uri,
        },
        headers,
    )
    created = await post(
        http,
        "/v1/use-cases",
        {
            "channel": "ringless_voicemail",
            "name": "bench",
            "setup_id": setup["id"],
            "sender_selection": "fixed",
            "sender_number": SENDER,
            "require_consent": False,
            "calling_window": {"start": "00:00", "end": "00:00"},
            "max_attempts": 1,
            "recipient_cap": {"attempts": 100, "period_hours": 1},
        },
        headers,
    )
    return str(created["id"])


def recipient(i: int) -> str:
    return f"+1202555{2000 + i % 5000:04d}"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


async def start_py_spy(out: Path | None, pid: int) -> asyncio.subprocess.Process | None:
    """py-spy sampling the service (collapsed stacks, thread ids, idle frames left out)."""
    if out is None:
        return None
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return await asyncio.create_subprocess_exec(
        py_spy, "record", "--pid", str(pid), "-r", "200", "-f", "raw", "--threads", *PY_SPY_EXTRA,
        "-o", str(out), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def stop_py_spy(spy: asyncio.subprocess.Process | None) -> None:
    if spy is None:
        return
    spy.send_signal(signal.SIGINT)
    try:
        async with asyncio.timeout(30):
            await spy.wait()
    except TimeoutError:
        spy.kill()
        await spy.wait()


# -- accept ------------------------------------------------------------------------------------


async def accept(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    audio = mp3(args.seconds)
    env = {"AFTERBEEP_DELIVERY_ENABLED": "false", "AFTERBEEP_LOG_LEVEL": "WARNING"}
    with running_service(work / "var", env) as service:
        headers = account(service)
        limits = httpx.Limits(max_connections=args.clients)
        async with httpx.AsyncClient(base_url=service.url, timeout=60, limits=limits) as http:
            uc = await use_case(http, headers, "sip:{to}@127.0.0.1:9", 1, 1)
            media: str | None = None
            if args.stored_media:
                r = await http.post(
                    "/v1/media", files={"file": ("m.mp3", audio, "audio/mpeg")}, headers=headers
                )
                media = r.json()["id"]
            latencies: list[float] = []
            failures: Counter[int] = Counter()
            todo = iter(range(args.sends))

            async def client() -> None:
                for i in todo:
                    started = time.perf_counter()
                    if media is not None:
                        body = {"to": recipient(i), "use_case_id": uc, "media_id": media}
                        r = await http.post("/v1/voicemails", json=body, headers=headers)
                    else:
                        r = await http.post(
                            "/v1/voicemails",
                            files={"audio": ("message.mp3", audio, "audio/mpeg")},
                            data={"to": recipient(i), "use_case_id": uc},
                            headers=headers,
                        )
                    latencies.append(time.perf_counter() - started)
                    if r.status_code != 202:
                        failures[r.status_code] += 1

            # A few sends first, so imports and caches are warm.
            warm = iter(range(5))
            for i in warm:
                await http.post(
                    "/v1/voicemails",
                    files={"audio": ("message.mp3", audio, "audio/mpeg")},
                    data={"to": recipient(i), "use_case_id": uc},
                    headers=headers,
                )
            if args.service_cpu is not None:
                pin(service.process.pid, args.service_cpu)
            spy = await start_py_spy(args.py_spy, service.process.pid)
            cpu0, t0 = cpu_seconds(service.process.pid), time.perf_counter()
            client0 = time.process_time()
            try:
                async with asyncio.timeout(args.time_limit):
                    await asyncio.gather(*(client() for _ in range(args.clients)))
            finally:
                elapsed = time.perf_counter() - t0
                cpu = cpu_seconds(service.process.pid) - cpu0
                client_cpu = time.process_time() - client0
                await stop_py_spy(spy)
    return {
        "sends": args.sends,
        "clients": args.clients,
        "service_cpu": args.service_cpu,
        "body": "json media_id" if args.stored_media else "multipart mp3",
        "audio_seconds": args.seconds,
        "mp3_bytes": len(audio),
        "failed": dict(failures),
        "elapsed_s": round(elapsed, 2),
        "sends_per_s": round(args.sends / elapsed, 1),
        "latency_p50_ms": round(pct(latencies, 50) * 1000, 1),
        "latency_p99_ms": round(pct(latencies, 99) * 1000, 1),
        "service_cpu_s": round(cpu, 2),
        "service_cores": round(cpu / elapsed, 2),
        "cpu_ms_per_send": round(cpu / args.sends * 1000, 2),
        "sends_per_cpu_s": round(args.sends / cpu, 1) if cpu else None,
        "client_cpu_s": round(client_cpu, 2),
        "client_cores": round(client_cpu / elapsed, 2),
        "load_average": os.getloadavg(),
    }


# -- drain -------------------------------------------------------------------------------------

_RECEIVED_INVITE = re.compile(
    r"^-{10,} (\d{4}-\d\d-\d\d)\s+(\d\d:\d\d:\d\d\.\d+).*\n[^\n]*message received[^\n]*\n\s*\nINVITE ",
    re.M,
)


def invite_times(trace: str) -> list[float]:
    times = [
        datetime.strptime(f"{d} {t}", "%Y-%m-%d %H:%M:%S.%f").timestamp()
        for d, t in _RECEIVED_INVITE.findall(trace)
    ]
    return sorted(times)


def windows(times: list[float], width: float = 1.0) -> list[int]:
    """INVITEs in [t, t + width) for each INVITE time t (a window starting at every arrival)."""
    arr = np.asarray(times)
    ends = np.searchsorted(arr, arr + width, side="left")
    return [int(e - i) for i, e in enumerate(ends) if arr[i] + width <= arr[-1] + 1e-9]


async def drain(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    sipp = shutil.which("sipp")
    if sipp is None:
        raise SystemExit("sipp is required (Debian package sip-tester)")
    port, media_port = free_udp_port(), free_udp_port()
    trace = work / "sipp-messages.log"
    uas = await asyncio.create_subprocess_exec(
        sipp, "-sf", str(HERE / "uas_answer.xml"), "-i", "127.0.0.1", "-p", str(port),
        "-mp", str(media_port), "-m", str(args.sends), "-nostdin",
        "-timeout", f"{int(args.time_limit)}s", "-trace_msg", "-message_file", str(trace),
        "-max_socket", "4096",
        cwd=work, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    concurrent = int(args.cps * (args.seconds + 5)) + 20
    env = {
        "AFTERBEEP_DELIVERY_BATCH_SIZE": str(concurrent),
        "AFTERBEEP_DELIVERY_IDLE_SECONDS": "1",
        "AFTERBEEP_MAX_CALLS": str(concurrent + 100),
        "AFTERBEEP_RTP_PORT_MIN": "20000",
        "AFTERBEEP_RTP_PORT_MAX": str(20000 + 4 * concurrent + 200),
        "AFTERBEEP_LOG_LEVEL": "WARNING",
    }
    try:
        with running_service(work / "var", env) as service:
            headers = account(service)
            async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
                uc = await use_case(
                    http, headers, f"sip:{{to}}@127.0.0.1:{port}", args.cps, concurrent
                )
                r = await http.post(
                    "/v1/media",
                    files={"file": ("m.mp3", mp3(args.seconds), "audio/mpeg")},
                    headers=headers,
                )
                media = r.json()["id"]
                due = datetime.now(UTC) + timedelta(seconds=args.queue_seconds)
                sem = asyncio.Semaphore(8)

                async def one(i: int) -> None:
                    async with sem:
                        body = {
                            "to": recipient(i),
                            "use_case_id": uc,
                            "media_id": media,
                            "send_at": due.isoformat(),
                        }
                        await post(http, "/v1/voicemails", body, headers)

                await asyncio.gather(*(one(i) for i in range(args.sends)))
                queued_in = (due - datetime.now(UTC)).total_seconds()
                if queued_in <= 0:
                    raise SystemExit("raise --queue-seconds: sends fell due before all were queued")
                cpu0 = cpu_seconds(service.process.pid)
                deadline = time.monotonic() + args.time_limit
                while True:
                    r = await http.get(
                        "/v1/voicemails/stats", params={"use_case_id": uc}, headers=headers
                    )
                    stats = r.json()
                    counts = stats.get("counts", stats)
                    if not counts.get("accepted") or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.5)
                cpu = cpu_seconds(service.process.pid) - cpu0
        async with asyncio.timeout(30):
            await uas.wait()
    finally:
        if uas.returncode is None:
            uas.kill()
            await uas.wait()
    times = invite_times(trace.read_text(errors="replace"))
    spread = windows(times)
    first, last = (times[0], times[-1]) if times else (0.0, 0.0)
    return {
        "sends": args.sends,
        "configured_cps": args.cps,
        "audio_seconds": args.seconds,
        "max_concurrent_calls": concurrent,
        "outcomes": counts,
        "invites_received": len(times),
        "first_invite_after_due_s": round(first - due.timestamp(), 2) if times else None,
        "drain_s": round(last - first, 2),
        "mean_cps": round((len(times) - 1) / (last - first), 2) if len(times) > 1 else None,
        "window_1s_max": max(spread) if spread else None,
        "window_1s_mean": round(float(np.mean(spread)), 2) if spread else None,
        "window_1s_min": min(spread) if spread else None,
        "service_cpu_s": round(cpu, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ringless")
    sub = parser.add_subparsers(dest="what", required=True)
    a = sub.add_parser("accept", help="sends accepted per second with MP3 validation")
    a.add_argument("--sends", type=int, default=1000)
    a.add_argument("--clients", type=int, default=8)
    a.add_argument("--seconds", type=float, default=20.0, help="MP3 length, 10 to 60")
    a.add_argument("--time-limit", type=float, default=300.0)
    a.add_argument(
        "--stored-media",
        action="store_true",
        help="post JSON with one stored media_id instead of the MP3 (the floor without audio)",
    )
    a.add_argument("--py-spy", type=Path, help="sample the service with py-spy into this file")
    a.add_argument(
        "--service-cpu",
        type=int,
        help="pin every thread of the service to this CPU, and the clients to the others",
    )
    d = sub.add_parser("drain", help="queued sends drained at the configured calls per second")
    d.add_argument("--sends", type=int, default=1000)
    d.add_argument("--cps", type=float, default=20.0)
    d.add_argument("--seconds", type=float, default=10.0, help="audio length, 10 to 60")
    d.add_argument("--queue-seconds", type=float, default=40.0, help="send_at, from now")
    d.add_argument("--time-limit", type=float, default=300.0)
    for p in (a, d):
        p.add_argument("--json", type=Path, help="also write the figures here")
        p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if not 1 <= args.sends <= MAX_SENDS:
        parser.error(f"--sends must be 1 to {MAX_SENDS}")
    if args.what == "accept" and not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be 1 to {MAX_CLIENTS}")
    if not 10 <= args.seconds <= 60:
        parser.error("--seconds must be 10 to 60")
    work = Path(tempfile.mkdtemp(prefix=f"ringless-{args.what}-"))
    try:
        run = accept if args.what == "accept" else drain
        figures = asyncio.run(run(args, work))
    finally:
        if args.keep:
            print(f"work directory: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
