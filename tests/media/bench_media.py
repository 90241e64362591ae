"""Load measurement of the media layer: N concurrent calls in one process, on 127.0.0.1.

Each call receives 50 packets/s from a generator (another process, so its CPU is not
counted) and plays prompts back at 50 packets/s through the shared pacer. Reported:
CPU of this process, packets in/out, recording completeness, worst pacer lateness.

    .venv/bin/python -m tests.media.bench_media --calls 600 --seconds 20 [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import struct
import sys
import time

import numpy as np
import numpy.typing as npt

from afterbeep.audio.g711 import ulaw_encode
from afterbeep.telephony.media import AudioSink, MediaConfig, MediaEngine, MediaSession, Prompt

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"
)


def generator(targets: list[int], seconds: float) -> None:
    """Send one 20 ms PCMU packet per target per tick, on an absolute schedule."""
    socks = []
    for _ in targets:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        socks.append(s)
    print(json.dumps([s.getsockname()[1] for s in socks]), flush=True)
    sys.stdin.readline()  # go
    payload = ulaw_encode((np.random.default_rng(1).normal(0, 3000, 160)).astype(np.int16))
    header = struct.Struct("!BBHII")
    t0 = time.monotonic()
    n = 0
    sent = 0
    while n * 0.02 < seconds:
        delay = t0 + n * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for i, (s, port) in enumerate(zip(socks, targets, strict=True)):
            s.sendto(
                header.pack(0x80, 0, n & 0xFFFF, n * 160, i + 1) + payload, ("127.0.0.1", port)
            )
            sent += 1
        n += 1
    print(json.dumps({"sent": sent, "per_call": n}), flush=True)


async def bench(calls: int, seconds: float, play: bool = True) -> dict[str, object]:
    engine = MediaEngine(
        MediaConfig(
            advertised_ip="127.0.0.1",
            bind_host="127.0.0.1",
            port_min=10000,
            port_max=10000 + 4 * calls + 100,
            inactivity_timeout=0,
        )
    )
    samples = [0] * calls

    def sink(i: int) -> AudioSink:
        def on_audio(pcm: npt.NDArray[np.int16], offset: int) -> None:
            samples[i] = offset + len(pcm)

        return on_audio

    sessions: list[MediaSession] = []
    for i in range(calls):
        sessions.append(await engine.open_session(on_audio=sink(i)))
    gen = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.media.bench_media",
        "--generator",
        str(seconds),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert gen.stdin is not None and gen.stdout is not None
    gen.stdin.write(json.dumps([s.local_port for s in sessions]).encode() + b"\n")
    ports = json.loads(await gen.stdout.readline())
    for session, port in zip(sessions, ports, strict=True):
        session.answer(OFFER.format(port=port).encode())
    prompt = Prompt((np.sin(np.arange(8000 * 5) / 8000 * 2 * np.pi * 440) * 6000).astype(np.int16))
    stop = asyncio.Event()

    async def player(session: MediaSession) -> None:
        while not stop.is_set():
            await session.play(prompt, interrupt=stop)

    players = [asyncio.create_task(player(s)) for s in sessions] if play else []
    gen.stdin.write(b"go\n")
    await asyncio.sleep(2)  # warm-up
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds - 4)
    cpu1, wall1 = time.process_time(), time.monotonic()
    done = json.loads(await gen.stdout.readline())
    await gen.wait()
    stop.set()
    await asyncio.gather(*players)
    stats = [s.stats() for s in sessions]
    await engine.close()
    received = sum(st.packets_received for st in stats)
    return {
        "calls": calls,
        "cpu_percent": round(100 * (cpu1 - cpu0) / (wall1 - wall0), 1),
        "rx_packets": received,
        "rx_expected": done["sent"],
        "tx_packets": sum(st.packets_sent for st in stats),
        "lost": sum(st.lost for st in stats),
        "late": sum(st.late for st in stats),
        "recorded_exact": all(s == done["per_call"] * 160 for s in samples),
        "short_recordings": sum(1 for s in samples if s != done["per_call"] * 160),
        "pacer_wakeups": engine.pacer.wakeups,
        "pacer_max_lateness_ms": round(engine.pacer.max_lateness * 1000, 1),
        "schedule_slips": sum(st.schedule_slips for st in stats),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--no-play", action="store_true", help="receive only")
    parser.add_argument("--generator", type=float)
    args = parser.parse_args()
    if args.generator is not None:
        generator(json.loads(sys.stdin.readline()), args.generator)
        return
    if args.uvloop:
        import uvloop

        result = uvloop.run(bench(args.calls, args.seconds, not args.no_play))
    else:
        result = asyncio.run(bench(args.calls, args.seconds, not args.no_play))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
