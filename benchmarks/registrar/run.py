"""Registrar under load: SIPp registers devices at ``--register-rate`` per second in all (each
a REGISTER, its 401 challenge and the REGISTER answering it with an MD5 digest: SIPp knows no
other algorithm), while a second SIPp places calls to a number whose destination is a mailbox
and measures INVITE→200 (``rtd``, from the INVITE sent to its 200 received). The same calls
are measured alone first, so the figures say what the REGISTER load adds.

``--devices`` SIPp processes register, one device each, each at its share of the rate, every
REGISTER a new Call-ID and a binding refreshed: SIPp 3.6 takes the digest username only from
``-au`` (an injection-file field inside ``[authentication ...]`` is not substituted).

One process: the service (a `Runtime` with its workers, SQLite in a temporary directory, on uvloop like
``afterbeep serve``) and this driver; SIPp runs as two child processes. 127.0.0.1 only, bounded
in count and time. Run by hand (it is not part of the test suite):

    .venv/bin/python -m benchmarks.registrar --devices 10 --register-rate 200 --seconds 20 \
        --call-rate 5 --hold-ms 1000
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from afterbeep.app import Runtime
from afterbeep.cli import run as run_on_uvloop
from afterbeep.config import Settings

NUMBER = "+12025550111"
PASSWORD = "bench-password-9"

REGISTER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="afterbeep registrar load: REGISTER, 401, REGISTER with digest, 200">
  <send retrans="500">
    <![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@[remote_ip]>;tag=[pid]R[call_number]
      To: <sip:[service]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port]>
      Expires: 300
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@[remote_ip]>;tag=[pid]R[call_number]
      To: <sip:[service]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port]>
      [authentication]
      Expires: 300
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" rtd="true"/>
</scenario>
"""

CALL = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="afterbeep registrar load: a call, INVITE to 200 measured">
  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Load" <sip:+12025550123@[local_ip]:[local_port]>;tag=[pid]C[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Load" <sip:+12025550123@[local_ip]:[local_port]>;tag=[pid]C[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="{hold_ms}"/>
  <send retrans="500">
    <![CDATA[

      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Load" <sip:+12025550123@[local_ip]:[local_port]>;tag=[pid]C[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def sipp(
    work: Path, name: str, sip_port: int, scenario: str, *, rate: float, count: int,
    limit: int, extra: tuple[str, ...] = (), trace: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Run one SIPp to its end: its successes, failures and response times (ms)."""
    binary = shutil.which("sipp")
    if binary is None:
        raise SystemExit("sipp not found: apt-get install sip-tester")
    cwd = work / name
    cwd.mkdir()
    (cwd / "scenario.xml").write_text(scenario)
    cmd = [
        binary, f"127.0.0.1:{sip_port}", "-sf", "scenario.xml",
        "-i", "127.0.0.1", "-t", "u1", "-p", str(free_port()), "-mp", str(free_port()),
        *(() if "-s" in extra else ("-s", NUMBER)),
        "-r", str(rate), "-l", str(limit), "-m", str(count),
        "-timeout", "120s", "-timeout_error", "-recv_timeout", "20000", "-nostdin",
        "-trace_stat", "-stf", "stat.csv", "-fd", "1", "-trace_rtt", "-rtt_freq", "1",
        "-trace_err", "-error_file", "errors.log", *extra,
        *(("-trace_msg", "-message_file", "messages.log") if trace else ()),
    ]  # fmt: skip
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=cwd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    code = await proc.wait()
    wall = time.monotonic() - started
    rows = list(csv.DictReader((cwd / "stat.csv").read_text().splitlines(), delimiter=";"))
    last = rows[-1] if rows else {}
    rtts = [
        float(line.split(";")[1])
        for path in cwd.glob("*_rtt.csv")
        for line in path.read_text().splitlines()[1:]
        if len(line.split(";")) >= 2 and line.split(";")[1].strip()
    ]
    summary: dict[str, Any] = {
        "exit": code,
        "wall_s": round(wall, 2),
        "successful": int(last.get("SuccessfulCall(C)", 0)),
        "failed": int(last.get("FailedCall(C)", 0)),
        "retransmissions": int(last.get("Retransmissions(C)", 0)),
        "command": "sipp " + " ".join(cmd[1:]),
    }
    if rtts:
        summary["rtt_ms"] = {
            "n": len(rtts),
            "p50": round(percentile(rtts, 50), 2),
            "p99": round(percentile(rtts, 99), 2),
            "max": round(max(rtts), 2),
        }
    errors = cwd / "errors.log"
    if summary["failed"] and errors.exists():
        summary["first_errors"] = errors.read_text(errors="replace")[:1500]
    summary["per_s"] = round(summary["successful"] / wall, 1) if wall else 0.0
    return summary


async def prepare(rt: Runtime, devices: int) -> list[str]:
    """An account with `devices` users (one device each) and a number leading to a mailbox;
    the devices' auth usernames."""
    issued = await rt.accounts.create_account("Registrar bench")
    headers = {"Authorization": f"Bearer {issued.secret}"}
    transport = httpx.ASGITransport(app=rt.app)
    names = []
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:

        async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            response = await http.post(path, json=body, headers=headers)
            response.raise_for_status()
            made: dict[str, Any] = response.json()
            return made

        box = await post("/v1/mailboxes", {"name": "Bench", "skip_instructions": True})
        await post("/v1/numbers", {"e164": NUMBER, "dest_kind": "voicemail", "dest_id": box["id"]})
        for n in range(devices):
            user = await post("/v1/users", {"username": str(3000 + n)})
            name = f"bench-{n}"
            await post(
                "/v1/devices", {"user_id": user["id"], "auth_username": name, "password": PASSWORD}
            )
            names.append(name)
    return names


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="afterbeep-registrar-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        sip_port = free_port()
        settings = Settings(
            data_dir=work / "var",
            secret_key="bench-secret-" + "x" * 32,
            sip_addr=f"127.0.0.1:{sip_port}",
            sip_digest_algorithms="MD5",
            allow_private_networks="127.0.0.0/8",
            transcribe=False,
            smtp_url="smtp://127.0.0.1:9",
            smtp_from="voicemail@bench.test",
        )
        rt = Runtime(settings)
        await rt.start()
        try:
            names = await prepare(rt, args.devices)
            call = CALL.replace("{hold_ms}", str(args.hold_ms))
            calls = max(1, int(args.call_rate * args.seconds))
            limit = max(10, int(args.call_rate * (args.hold_ms / 1000 + 2) * 2))
            before = cpu_seconds()
            alone = await sipp(
                work, "calls_alone", sip_port, call, rate=args.call_rate, count=calls, limit=limit
            )
            cpu_alone = cpu_seconds() - before
            registers = int(args.register_rate * args.seconds)
            before = cpu_seconds()
            share = args.register_rate / args.devices
            loaded, *registered = await asyncio.gather(
                sipp(work, "calls_loaded", sip_port, call, rate=args.call_rate, count=calls, limit=limit),
                *(
                    sipp(
                        work, f"registers_{n}", sip_port, REGISTER, rate=share,
                        count=registers // args.devices, limit=max(10, int(share)),
                        extra=("-s", name, "-au", name, "-ap", PASSWORD), trace=args.trace,
                    )
                    for n, name in enumerate(names)
                ),
            )  # fmt: skip
            cpu_loaded = cpu_seconds() - before
        finally:
            await rt.stop()
    return {
        "devices": args.devices,
        "register_rate": args.register_rate,
        "call_rate": args.call_rate,
        "hold_ms": args.hold_ms,
        "cores": os.cpu_count(),
        "calls_alone": alone,
        "service_cpu_s_calls_alone": round(cpu_alone, 2),
        "calls_under_register_load": loaded,
        "registers": {
            "successful": sum(r["successful"] for r in registered),
            "failed": sum(r["failed"] for r in registered),
            "retransmissions": sum(r["retransmissions"] for r in registered),
            "per_s": round(sum(r["per_s"] for r in registered), 1),
            "rtt_ms_p50_of_p50": sorted(r.get("rtt_ms", {}).get("p50", -1) for r in registered)[
                len(registered) // 2
            ],
            "rtt_ms_max": max(r.get("rtt_ms", {}).get("max", -1) for r in registered),
            "exits": sorted({r["exit"] for r in registered}),
            "first": registered[0],
        },
        "service_cpu_s_under_load": round(cpu_loaded, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10, help="registering SIPp processes")
    parser.add_argument("--register-rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--call-rate", type=float, default=5.0)
    parser.add_argument("--hold-ms", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--workdir", type=Path, help="keep SIPp's files here (a new directory)")
    parser.add_argument("--trace", action="store_true", help="SIPp message traces (slow)")
    args = parser.parse_args()
    result: dict[str, Any] = {}

    async def go() -> None:
        result.update(await bench(args))

    run_on_uvloop(go)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
