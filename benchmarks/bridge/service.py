"""The service side of the bridge benchmark: a telephony server whose every call rings one
target (the benchmark's callee side) with `SipRinger` and bridges the answer. Prints its SIP
port, then runs until SIGTERM or SIGINT.

    python -m benchmarks.bridge.service sip:callee@127.0.0.1:PORT [--asyncio]
"""

from __future__ import annotations

import asyncio
import signal
import sys

from afterbeep.cli import run
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.ringing import SipRinger
from afterbeep.telephony.scripts.ringer import RingTarget
from afterbeep.telephony.server import ServerLimits, TelephonyServer, telephony_configs


async def serve(target_uri: str) -> None:
    ua_config, media_config = telephony_configs("127.0.0.1:0", None, 30000, 39999)
    server: TelephonyServer | None = None

    async def on_call(call: SipCall) -> None:
        assert server is not None
        ringer = SipRinger(server)
        target = RingTarget(uri=target_uri, label="dev_bench")
        result = await ringer.ring(call, [target], timeout=20)
        if result.leg is not None:
            await ringer.bridge(call, result.leg)

    server = TelephonyServer(
        ua_config, media_config, on_call=on_call, limits=ServerLimits(max_calls=2000)
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print(server.udp_port, flush=True)
        lags: list[float] = []
        watch = asyncio.create_task(_loop_lag(lags, stop))
        await stop.wait()
        await watch
        lags.sort()
        if lags:
            print(
                f"service loop lag ms: p50 {lags[len(lags) // 2] * 1000:.2f} "
                f"p99 {lags[int(len(lags) * 0.99)] * 1000:.2f} max {lags[-1] * 1000:.2f}",
                file=sys.stderr,
            )
        await server.stop(drain_timeout=2, hangup_timeout=2)


async def _loop_lag(lags: list[float], stop: asyncio.Event) -> None:
    """How late a 10 ms sleep wakes up: the time the loop could not run (busy or unscheduled)."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + 0.01
        await asyncio.sleep(0.01)
        lags.append(loop.time() - due)


def main() -> None:
    """On uvloop when installed, as `afterbeep serve` runs (``--asyncio``: the plain loop)."""
    target = sys.argv[1]
    if "--asyncio" in sys.argv[2:]:
        asyncio.run(serve(target))
    else:
        run(lambda: serve(target))


if __name__ == "__main__":
    main()
