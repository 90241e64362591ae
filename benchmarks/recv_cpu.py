"""CPU of the RTP receive path of recordings: Python on the event loop against the native thread.

N media sessions in one process (uvloop, as `afterbeep serve`) each record a stream of 50 PCMU
packets a second sent by a child process (its CPU is not counted), for a fixed time. For each
receive mode, in alternation (A B A B ...), it reports the receiving process's CPU seconds per
1000 packets, the event-loop thread's alone, and the loop's wake-ups:

    .venv/bin/python -m benchmarks.recv_cpu --sessions 400 --seconds 10 --rounds 2

Only CPU time is compared (`/proc/self/stat` and `time.thread_time` of the loop thread), so a
busy machine adds noise but not bias; the lead runs it on a quiet one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
from typing import Any

_HEADER = struct.Struct("!BBHII")
_TICK = 0.02


def _offer(port: int) -> bytes:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"
    ).encode()


def _process_cpu() -> float:
    with open("/proc/self/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def send(fd: int, ports: list[int], seconds: float) -> None:
    """The caller side: one packet per session every 20 ms, on an absolute schedule."""
    sock = socket.socket(fileno=fd)
    payload = bytes(range(32, 192))  # 160 PCMU codes that are not silence
    start = time.monotonic()
    k = 0
    while True:
        due = start + k * _TICK
        if due - start > seconds:
            break
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for i, port in enumerate(ports):
            packet = _HEADER.pack(0x80, 0, k & 0xFFFF, (k * 160) & 0xFFFFFFFF, 0x1000 + i)
            with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                sock.sendto(packet + payload, ("127.0.0.1", port))
        k += 1


async def receive(mode: str, sessions: int, seconds: float, port_min: int) -> dict[str, Any]:
    from afterbeep.telephony.media import MediaConfig, MediaEngine, native

    if mode == "native" and not native.available():
        raise SystemExit("the native receiver is not built")

    engine = MediaEngine(
        MediaConfig(
            advertised_ip="127.0.0.1",
            bind_host="127.0.0.1",
            port_min=port_min,
            port_max=port_min + 4 * sessions + 100,
            inactivity_timeout=0,
            native_receive=mode == "native",
        )
    )
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    offer = _offer(peer.getsockname()[1])
    samples = 0

    def sink(pcm: Any, offset: int) -> None:
        nonlocal samples
        samples += len(pcm)

    opened = []
    for _ in range(sessions):
        session = await engine.open_session(on_audio=sink)
        session.answer(offer)
        opened.append(session)
    sender = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.recv_cpu",
        "--role",
        "sender",
        "--fd",
        str(peer.fileno()),
        "--seconds",
        str(seconds + 2),
        "--ports",
        ",".join(str(s.local_port) for s in opened),
        pass_fds=[peer.fileno()],
    )
    try:
        await asyncio.sleep(1.0)  # latching, first packets: not measured

        def packets() -> int:
            return sum(s.stats().packets_received for s in opened)

        p0, cpu0, loop0 = packets(), _process_cpu(), time.thread_time()
        wake0 = engine.native.wakeups if engine.native is not None else 0
        await asyncio.sleep(seconds)
        loop1, cpu1 = time.thread_time(), _process_cpu()
        p1 = packets()
        wake1 = engine.native.wakeups if engine.native is not None else 0
    finally:
        await sender.wait()
        for session in opened:
            await session.close()
        await engine.close()
        peer.close()
    count = p1 - p0
    return {
        "mode": mode,
        "sessions": sessions,
        "seconds": seconds,
        "packets": count,
        "process_cpu_s": round(cpu1 - cpu0, 3),
        "loop_cpu_s": round(loop1 - loop0, 3),
        "process_cpu_ms_per_1000": round(1e6 * (cpu1 - cpu0) / max(count, 1), 2),
        "loop_cpu_ms_per_1000": round(1e6 * (loop1 - loop0) / max(count, 1), 2),
        "native_wakeups": wake1 - wake0,
        "load_before": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--role", choices=["orchestrate", "receiver", "sender"], default="orchestrate"
    )
    parser.add_argument("--mode", choices=["python", "native"], default="native")
    parser.add_argument("--sessions", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--port-min", type=int, default=40000)
    parser.add_argument("--fd", type=int, default=-1)
    parser.add_argument("--ports", default="")
    args = parser.parse_args()
    if args.role == "sender":
        send(args.fd, [int(p) for p in args.ports.split(",")], args.seconds)
        return
    if args.role == "receiver":
        import uvloop

        result = uvloop.run(receive(args.mode, args.sessions, args.seconds, args.port_min))
        print(json.dumps(result), flush=True)
        return
    results = []
    for _ in range(args.rounds):
        for mode in ("python", "native"):
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.recv_cpu",
                    "--role",
                    "receiver",
                    "--mode",
                    mode,
                    "--sessions",
                    str(args.sessions),
                    "--seconds",
                    str(args.seconds),
                    "--port-min",
                    str(args.port_min),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(result)
            print(json.dumps(result), flush=True)
    for mode in ("python", "native"):
        mine = [r for r in results if r["mode"] == mode]
        print(
            f"{mode:>6}: process {[r['process_cpu_ms_per_1000'] for r in mine]} ms CPU per 1000 "
            f"packets, loop thread {[r['loop_cpu_ms_per_1000'] for r in mine]}"
        )


if __name__ == "__main__":
    main()
