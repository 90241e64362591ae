"""N bridged calls through the service (2N legs, audio both ways): CPU per bridged call and the
delay the relay adds.

The benchmark is both ends: one SIP user agent places N calls to the service and answers the N
INVITEs the service's `SipRinger` sends it; each leg's media is a bare UDP socket here that
sends a 20 ms PCMU packet every 20 ms and keeps what arrives. Every payload carries its stream
and packet number (the relay passes a same-codec payload through untouched), so each packet's
trip (sent here, relayed by the service, received here) is timed on one clock. The service runs
in its own process (`benchmarks.bridge.service`), so its CPU is read from /proc.

    .venv/bin/python -m benchmarks.bridge --calls 20 --seconds 20

Bounded: --calls <= 200, --seconds <= 120, 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import socket
import statistics
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afterbeep.telephony.media.rtp import build_rtp
from afterbeep.telephony.sip import Dialog, IncomingInvite, UAConfig, UserAgent

PTIME = 0.02
SAMPLES = 160
_ID = struct.Struct("!II")  # stream, packet number: the first 8 bytes of every payload
CLK_TCK = os.sysconf("SC_CLK_TCK")
_SO_TIMESTAMPNS = 35  # Linux <asm/socket.h>; the control message has the same number
_TIMESPEC = struct.Struct("@qq")


def sdp(port: int) -> bytes:
    return (
        "v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n"
    ).encode()


def media_port(body: bytes) -> int:
    found = re.search(rb"m=audio (\d+)", body)
    if found is None:
        raise ValueError("no m=audio line")
    return int(found.group(1))


@dataclass
class Stats:
    sent: dict[tuple[int, int], float] = field(default_factory=dict)
    delays: list[float] = field(default_factory=list)
    received: int = 0
    measuring: bool = False
    since: float = 0.0  # packets sent before this (the warm-up) are not counted


class Leg:
    """One leg's media: a UDP socket read with its kernel receive timestamps (SO_TIMESTAMPNS),
    so that this process's own scheduling delays do not count as the relay's."""

    def __init__(self, stream: int, stats: Stats) -> None:
        self.stream = stream
        self.stats = stats
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.setblocking(False)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.remote: tuple[str, int] | None = None
        self.ssrc = secrets.randbits(32)
        self.sequence = 0
        self.filler = bytes([0xFF]) * (SAMPLES - _ID.size)
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()

    def _readable(self) -> None:
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(2048, 64)
            except BlockingIOError:
                return
            arrived = None
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                    seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                    arrived = seconds + nanoseconds / 1e9
            self._received(data, arrived if arrived is not None else time.time())

    def _received(self, data: bytes, arrived: float) -> None:
        if len(data) < 12 + _ID.size or 192 <= data[1] <= 223:
            return
        key = _ID.unpack_from(data, 12)
        sent = self.stats.sent.pop(key, None)
        self.stats.received += 1
        if sent is not None and self.stats.measuring and sent >= self.stats.since:
            self.stats.delays.append(arrived - sent)

    def send(self) -> None:
        if self.remote is None:
            return
        n = self.sequence
        payload = _ID.pack(self.stream, n) + self.filler
        packet = build_rtp(0, n == 0, n & 0xFFFF, n * SAMPLES, self.ssrc, payload)
        self.sequence += 1
        self.stats.sent[(self.stream, n)] = time.time()  # the kernel's clock, read per packet
        self.sock.sendto(packet, self.remote)


async def measure(legs: list[Leg], stats: Stats, seconds: float, pid: int | None) -> float:
    """Every leg sends a packet every 20 ms for 2 s of warm-up and ``seconds`` measured; the
    CPU seconds of process ``pid`` over the measured part."""
    loop = asyncio.get_running_loop()
    warmup = 2.0
    start = loop.time() + 0.05
    frames = int((warmup + seconds) / PTIME)
    cpu_at_start = 0.0
    for frame in range(frames):
        delay = start + frame * PTIME - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if frame == int(warmup / PTIME):
            stats.measuring = True
            stats.since = time.time()
            stats.delays.clear()
            cpu_at_start = cpu_seconds(pid) if pid is not None else 0.0
        for leg in legs:
            leg.send()
    await asyncio.sleep(0.2)
    stats.measuring = False
    return cpu_seconds(pid) - cpu_at_start if pid is not None else 0.0


def summary(stats: Stats, legs: int, seconds: float) -> dict[str, Any]:
    ms = sorted(d * 1000 for d in stats.delays)
    return {
        "packets_expected": legs * int(seconds / PTIME),
        "packets_received": len(ms),
        "delay_ms_p50": round(statistics.median(ms), 3) if ms else None,
        "delay_ms_p99": round(ms[max(0, int(len(ms) * 0.99) - 1)], 3) if ms else None,
        "delay_ms_max": round(ms[-1], 3) if ms else None,
        "delayed_over_one_ptime_percent": (
            round(100 * sum(1 for d in ms if d > PTIME * 1000) / len(ms), 3) if ms else None
        ),
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


legs_opened: list[Leg] = []


async def open_leg(stream: int, stats: Stats) -> Leg:
    leg = Leg(stream, stats)
    legs_opened.append(leg)
    return leg


async def run(calls: int, seconds: float, service_loop: str, nice: int) -> dict[str, Any]:
    stats = Stats()
    callee_legs: list[Leg] = []
    pending: set[asyncio.Task[None]] = set()

    async def answer(invite: IncomingInvite) -> None:
        leg = await open_leg(10_000 + len(callee_legs), stats)
        callee_legs.append(leg)
        leg.remote = ("127.0.0.1", media_port(invite.sdp))
        invite.accept(sdp(leg.port))

    def on_invite(invite: IncomingInvite) -> None:
        task = asyncio.ensure_future(answer(invite))
        pending.add(task)
        task.add_done_callback(pending.discard)

    ua = UserAgent(UAConfig(advertise="127.0.0.1", listen_udp="127.0.0.1:0"), on_invite)
    await ua.start()
    service = await asyncio.create_subprocess_exec(
        *(["nice", "-n", str(nice)] if nice else []),
        sys.executable,
        "-m",
        "benchmarks.bridge.service",
        f"sip:callee@127.0.0.1:{ua.udp_port}",
        *(["--asyncio"] if service_loop == "asyncio" else []),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert service.stdout is not None
        port = int(await service.stdout.readline())
        idle_cpu = cpu_seconds(service.pid)
        caller_legs: list[Leg] = []
        dialogs: list[Dialog] = []
        for n in range(calls):
            leg = await open_leg(n, stats)
            out = await ua.invite(
                f"sip:bridge@127.0.0.1:{port}",
                "sip:+12025550100@127.0.0.1",
                f"sip:bridge@127.0.0.1:{port}",
                sdp(leg.port),
            )
            dialog = await out.wait_answered()
            leg.remote = ("127.0.0.1", media_port(dialog.remote_sdp))
            caller_legs.append(leg)
            dialogs.append(dialog)
            await asyncio.sleep(0.02)
        setup_cpu = cpu_seconds(service.pid) - idle_cpu
        legs = caller_legs + callee_legs
        cpu = await measure(legs, stats, seconds, service.pid)
        bridged = summary(stats, len(legs), seconds)
        for dialog in dialogs:
            await dialog.bye()
        # the floor: the same sockets and loop, each caller leg sending straight to a callee leg
        for a, b in zip(caller_legs, callee_legs, strict=False):
            a.remote, b.remote = ("127.0.0.1", b.port), ("127.0.0.1", a.port)
        stats.delays.clear()
        stats.sent.clear()
        await measure(legs, stats, min(seconds, 5.0), None)
        direct = summary(stats, len(legs), min(seconds, 5.0))
        return {
            "bridged_calls": calls,
            "service_loop": service_loop,
            "service_nice": nice,
            "load_average_1min": os.getloadavg()[0],
            "legs": len(legs),
            "callee_legs_answered": len(callee_legs),
            "seconds": seconds,
            "service_cpu_s": round(cpu, 3),
            "service_cores": round(cpu / seconds, 3),
            "cpu_ms_per_bridged_call_per_s": round(1000 * cpu / seconds / calls, 3),
            "cpu_percent_of_core_per_bridged_call": round(100 * cpu / seconds / calls, 3),
            "setup_cpu_ms_per_call": round(1000 * setup_cpu / calls, 1),
            **{f"relayed_{k}": v for k, v in bridged.items()},
            **{f"direct_{k}": v for k, v in direct.items()},
        }
    finally:
        service.terminate()
        await asyncio.wait_for(service.wait(), 15)
        await ua.close()
        for leg in legs_opened:
            leg.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bridge")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--service-loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument(
        "--service-nice",
        type=int,
        default=0,
        help="run the service under nice -n N (root: N < 0 keeps other load off its latency)",
    )
    args = parser.parse_args()
    if not 1 <= args.calls <= 200 or not 1 <= args.seconds <= 120:
        parser.error("--calls 1..200, --seconds 1..120")
    result = asyncio.run(run(args.calls, args.seconds, args.service_loop, args.service_nice))
    for key, value in result.items():
        print(f"{key:40} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
