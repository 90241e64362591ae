"""CPU of prompt sending: the Python pacer against the native one, A/B in one sitting.

N media sessions in this process (on uvloop when installed, as `afterbeep serve`) each play
the same prompt at once (a shared `Prompt`, starts spread over one frame); the RTP goes to N
sockets drained by a child process, so its CPU is not counted. Per round and pacer:
CPU seconds of this process and of its event-loop thread (`time.thread_time` on the loop) per
1000 frames sent, the native thread's wake-ups, the round's wall time (a pacer that cannot keep
up takes longer than the prompt), and the prompts' first-frame lateness as
`afterbeep_prompt_late_seconds` would see it (the Python pacer's is 0 by construction: it sends a
due first frame in `Pacer.add`, at the loop time it was asked at). Rounds alternate python/native (ABBA...), so a drift of a shared machine falls on
both; compare CPU, not wall time.

    .venv/bin/python -m benchmarks.pacer_cpu --sessions 300 --seconds 5 --rounds 4 [--json out.json]

`--every 10`: each session plays a keep-alive instead (one frame in 10 sent, as while recording).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import selectors
import socket
import subprocess
import sys
import time
from typing import Any

import numpy as np

from afterbeep.telephony.media import MediaConfig, MediaEngine, MediaSession, Prompt

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
)


def drain(count: int) -> None:
    """The child: bind `count` sockets, print their ports, read until stdin closes."""
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks), flush=True)
    sel.register(sys.stdin, selectors.EVENT_READ)
    received = 0
    while True:
        for key, _ in sel.select():
            if key.fileobj is sys.stdin:
                sys.stdin.readline()
                print(received, flush=True)
                return
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            while True:
                try:
                    sock.recv(2048)
                except BlockingIOError:
                    break
                received += 1


def _thread_wakeups() -> int:
    try:
        pace = importlib.import_module("afterbeep.telephony.media._pace")
    except ImportError:
        return 0
    wakeups: int = pace.stats()[2]
    return wakeups


def prompt(seconds: float) -> Prompt:
    t = np.arange(int(8000 * seconds)) / 8000
    pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    return Prompt(pcm)


async def one_round(kind: str, ports: list[int], audio: Prompt, every: int = 1) -> dict[str, Any]:
    engine = MediaEngine(
        MediaConfig(
            advertised_ip="127.0.0.1",
            bind_host="127.0.0.1",
            port_min=40000,
            port_max=49999,
            rtcp_interval=5.0,
            pacer=kind,
        )
    )
    late: list[float] = []
    engine.on_prompt_late = late.append
    sessions: list[MediaSession] = []
    try:
        for port in ports:
            session = await engine.open_session()
            session.answer(OFFER.format(port=port).encode())
            sessions.append(session)
        loop = asyncio.get_running_loop()

        async def play(session: MediaSession, delay: float) -> None:
            await asyncio.sleep(delay)
            await session.play(audio, every=every)

        wakeups0 = _thread_wakeups()
        cpu0, loop0, wall0 = time.process_time(), time.thread_time(), loop.time()
        spread = 0.02 / max(1, len(sessions))
        await asyncio.gather(*(play(s, i * spread) for i, s in enumerate(sessions)))
        cpu, loop_cpu, wall = (
            time.process_time() - cpu0,
            time.thread_time() - loop0,
            loop.time() - wall0,
        )
        frames = sum(s.stats().packets_sent for s in sessions)
        wakeups = _thread_wakeups() - wakeups0
    finally:
        await engine.close()
    late.sort()
    return {
        "pacer": kind,
        "every": every,
        "sessions": len(ports),
        "frames": frames,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "loop_cpu_s": round(loop_cpu, 3),
        "cpu_ms_per_1000_frames": round(1e6 * cpu / frames, 2),
        "loop_cpu_ms_per_1000_frames": round(1e6 * loop_cpu / frames, 2),
        "native_thread_wakeups": wakeups,
        "first_frame_late_ms_p50_p99_max": [  # none for keep-alives: not prompts
            round(1000 * late[int(q * (len(late) - 1))], 2) for q in (0.5, 0.99, 1.0)
        ]
        if late
        else None,
    }


async def main_async(
    args: argparse.Namespace, child: subprocess.Popen[str]
) -> list[dict[str, Any]]:
    assert child.stdin is not None and child.stdout is not None
    try:
        ports = [int(p) for p in child.stdout.readline().split()]
        audio = prompt(args.seconds)
        order = ["python", "native", "native", "python"]
        results = []
        for n in range(args.rounds):
            kind = order[n % 4]
            result = await one_round(kind, ports, audio, args.every)
            print(json.dumps(result), flush=True)
            results.append(result)
        child.stdin.write("\n")
        child.stdin.flush()
        print(json.dumps({"packets_received_by_the_drain": int(child.stdout.readline())}))
        return results
    finally:
        child.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--every", type=int, default=1, help="send one frame in N (a keep-alive)")
    parser.add_argument("--json", help="write the rounds here")
    parser.add_argument("--drain", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drain:
        drain(args.drain)
        return
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    print(json.dumps({"load_average": os.getloadavg()}), flush=True)
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.pacer_cpu", "--drain", str(args.sessions)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    results = runner(main_async(args, child))
    for kind in ("python", "native"):
        mine = [r for r in results if r["pacer"] == kind]
        if mine:
            cpu = sorted(r["cpu_ms_per_1000_frames"] for r in mine)
            loop_cpu = sorted(r["loop_cpu_ms_per_1000_frames"] for r in mine)
            print(f"{kind}: CPU ms per 1000 frames {cpu}, of the loop thread {loop_cpu}")
    print(json.dumps({"load_average_after": os.getloadavg()}), flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)


if __name__ == "__main__":
    main()
