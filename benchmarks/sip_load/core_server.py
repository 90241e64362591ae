"""The service of ``--mode core``: a Runtime whose router answers every call, records until the
caller hangs up and writes the recording to ``<out>/<n>.wav``.

Run by `benchmarks.sip_load.run` as its own process (on uvloop, like ``afterbeep serve``) so
its CPU time can be read from /proc. Prints ``READY <udp port>`` once SIP is listening.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import sys
import wave
from pathlib import Path

import numpy as np
from prometheus_client import Histogram

from afterbeep.app import Runtime
from afterbeep.cli import run, settle_garbage_collector
from afterbeep.config import Settings
from afterbeep.metrics import SIP_INVITE_ROUTED, SIP_INVITE_TO_200, histogram_quantile
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.interface import Audio
from afterbeep.telephony.server import Answer, Route
from afterbeep.telephony.sip import IncomingInvite


class MemorySink:
    """One growing buffer per call (not an array per packet: no garbage-collector load of our own)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, pcm: Audio) -> None:
        self.data += np.ascontiguousarray(pcm, dtype="<i2").data

    def pcm(self) -> Audio:
        return np.frombuffer(bytes(self.data), dtype="<i2").astype(np.int16)


def write_wav(path: Path, pcm: Audio) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(pcm.astype("<i2").tobytes())


async def watch_loop_lag(lags: list[float], period: float = 0.05) -> None:
    """How late the event loop wakes a sleeper: the delay any callback (a SIP message) waits."""
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(period)
        lags.append(loop.time() - before - period)


async def serve(out: Path) -> None:
    counter = itertools.count()
    lags: list[float] = []

    async def record(call: SipCall) -> None:
        await call.answer()
        sink = MemorySink()
        await call.record(sink, max_seconds=600, silence_seconds=600, finish_on="")
        await asyncio.to_thread(write_wav, out / f"{next(counter):06d}.wav", sink.pcm())

    async def router(invite: IncomingInvite) -> Route:
        return Answer(record)

    def quick_router(invite: IncomingInvite) -> Route:
        return Answer(record)

    runtime = Runtime(Settings(allow_private_networks="127.0.0.0/8"))
    await runtime.start(workers=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    watcher = asyncio.create_task(watch_loop_lag(lags))
    try:
        server = await runtime.start_telephony(router=router, quick_router=quick_router)
        settle_garbage_collector()
        print(f"READY {server.udp_port}", flush=True)
        await stop.wait()
        print(f"PREBOUND misses={server.media.prebound_misses}", flush=True)
    finally:
        watcher.cancel()
        await runtime.stop()
        if lags:
            ms = np.asarray(lags) * 1000
            p50, p99 = np.percentile(ms, [50, 99])
            print(f"LOOPLAG p50={p50:.1f} p99={p99:.1f} max={ms.max():.1f}", flush=True)
        print("INVITE200 " + quantiles(SIP_INVITE_TO_200), flush=True)
        print("ROUTED " + quantiles(SIP_INVITE_ROUTED), flush=True)


def quantiles(histogram: Histogram) -> str:
    """The service's own p50 and p99 of ``histogram`` (bucket upper bounds, ms)."""
    parts = []
    for q in (0.5, 0.99):
        bound = histogram_quantile(q, histogram)
        parts.append(f"p{round(q * 100)}<={bound * 1000:g}" if bound is not None else f"p{round(q * 100)}=n/a")
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="directory for the recordings")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    run(lambda: serve(args.out))
    sys.exit(0)


if __name__ == "__main__":
    main()
