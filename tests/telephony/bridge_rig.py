"""The rig of the ringing and bridge tests: a service that rings `RingTarget`s and bridges the
answer, SIPp for the signalling of the caller and the devices, and small RTP peers that send
known audio and digits from the port their SDP names and keep what they receive."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from afterbeep.domain.netpolicy import NetworkPolicy
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.media import Codec
from afterbeep.telephony.media.dtmf import DtmfReceiver
from afterbeep.telephony.ringing import SipRinger
from afterbeep.telephony.scripts.ringer import BridgeEnd, RingResult, RingTarget
from afterbeep.telephony.server import TelephonyServer, telephony_configs
from tests.fixtures.rtp_pcap import RtpCapture, RtpStreamBuilder
from tests.sip.conftest import SCENARIOS, SippResult, free_udp_port, run_sipp, wait_udp_bound

EVENT_PT = 101


class RtpPeer(RtpCapture):
    """An RTP endpoint that sends from the port it receives on (symmetric RTP)."""

    def play(self, port: int, packets: list[tuple[float, bytes]]) -> asyncio.Future[None]:
        """Send ``packets`` (relative send times) to 127.0.0.1:``port`` on schedule."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        start = loop.time() + 0.02
        for index, (at, data) in enumerate(packets):
            loop.call_at(
                start + at, self._send, port, data, done if index == len(packets) - 1 else None
            )
        return done

    def _send(self, port: int, data: bytes, done: asyncio.Future[None] | None) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, ("127.0.0.1", port))
        if done is not None and not done.done():
            done.set_result(None)

    def digits(self) -> str:
        receiver = DtmfReceiver()
        keys = ""
        for packet in self.packets:
            if packet.payload_type == EVENT_PT:
                key = receiver.receive(packet.ssrc, packet.timestamp, packet.payload)
                keys += key or ""
        return keys

    def payload_types(self) -> set[int]:
        return {p.payload_type for p in self.packets}


def stream_of(codec: Codec, pcm: npt.NDArray[np.int16], keys: str) -> list[tuple[float, bytes]]:
    builder = RtpStreamBuilder(codec=codec, event_payload_type=EVENT_PT)
    builder.audio(pcm).pause(200).digits(keys)
    return builder.take()


def codec_keys(codec: Codec, rtp_port: int) -> tuple[str, ...]:
    return (
        "-key", "codec_pt", str(codec.value),
        "-key", "codec_name", codec.name,
        "-key", "rtp_port", str(rtp_port),
    )  # fmt: skip


@dataclass
class Service:
    """A telephony server whose every call rings ``targets`` and bridges the answer."""

    server: TelephonyServer
    ringer: SipRinger
    targets: list[RingTarget] = field(default_factory=list)
    timeout: float = 10.0
    sequential: bool = False
    caller_id: str | None = "+12025550100"
    rung: asyncio.Future[RingResult] = field(default_factory=asyncio.Future)
    bridged: asyncio.Future[tuple[SipCall, SipCall]] = field(default_factory=asyncio.Future)
    ended: asyncio.Future[BridgeEnd] = field(default_factory=asyncio.Future)
    forks: list[tuple[str, float]] = field(default_factory=list)
    answer_first: bool = False  # as a flow does before it rings someone

    async def handle(self, call: SipCall) -> None:
        if self.answer_first:
            await call.answer()
        result = await self.ringer.ring(
            call,
            self.targets,
            timeout=self.timeout,
            sequential=self.sequential,
            caller_id=self.caller_id,
        )
        self.rung.set_result(result)
        if result.leg is None:
            return
        assert isinstance(result.leg, SipCall)
        self.bridged.set_result((call, result.leg))
        self.ended.set_result(await self.ringer.bridge(call, result.leg))

    async def relaying(self) -> tuple[int, int]:
        """Once the bridge relays: the service's RTP ports toward the caller and the callee."""
        call, leg = await asyncio.wait_for(asyncio.shield(self.bridged), 10)
        async with asyncio.timeout(5):
            while call.media is None or call.media.on_rtp is None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert leg.media is not None
        return call.media.local_port, leg.media.local_port


@contextlib.asynccontextmanager
async def service(policy: NetworkPolicy | None = None) -> AsyncIterator[Service]:
    ua_config, media_config = telephony_configs("127.0.0.1:0", None, 25000, 25999)
    ua_config = replace(ua_config, network_policy=policy)
    rig: Service | None = None

    async def on_call(call: SipCall) -> None:
        assert rig is not None
        await rig.handle(call)

    def on_fork(target: RingTarget, at: float) -> None:
        assert rig is not None
        rig.forks.append((target.label, at))

    server = TelephonyServer(ua_config, media_config, on_call=on_call)
    rig = Service(server, SipRinger(server, on_fork=on_fork))
    async with server:
        yield rig


def timed(scenario: str, workdir: Path, timing: dict[str, int]) -> str:
    """The scenario with its pauses (``[answer_ms]``...: SIPp takes no keys there) filled in."""
    text = (SCENARIOS / scenario).read_text()
    for name, ms in timing.items():
        text = text.replace(f"[{name}]", str(ms))
    path = workdir / scenario
    path.write_text(text)
    return str(path)


async def device(
    sipp: str, scenario: str, tmp_path: Path, *keys: str, port: int | None = None, **timing: int
) -> tuple[asyncio.Task[SippResult], int]:
    """A SIPp UAS (a phone) on `port` (else a free one), listening before this returns."""
    port = port or free_udp_port()
    workdir = tmp_path / f"uas{port}"
    workdir.mkdir()
    scenario = timed(scenario, workdir, timing)
    extra = ("-mp", str(free_udp_port()), *keys)
    task = asyncio.ensure_future(
        run_sipp(sipp, scenario, workdir, remote=None, local_port=port, extra=extra)
    )
    await wait_udp_bound(port)
    return task, port


def caller(
    sipp: str, scenario: str, tmp_path: Path, service_port: int, *keys: str, **timing: int
) -> asyncio.Task[SippResult]:
    workdir = tmp_path / "uac"
    workdir.mkdir(exist_ok=True)
    scenario = timed(scenario, workdir, timing)
    extra = ("-s", "+12025550111", "-mp", str(free_udp_port()), *keys)
    return asyncio.ensure_future(
        run_sipp(sipp, scenario, workdir, remote=f"127.0.0.1:{service_port}", extra=extra)
    )


_TRACE_TIME = re.compile(r"^-+ (\d{4}-\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+)", re.M)


def first_invite_time(result: SippResult) -> datetime:
    """When a SIPp UAS received its first INVITE, from its message trace."""
    for block in re.split(r"(?=^-{10,})", result.messages, flags=re.M):
        stamp = _TRACE_TIME.search(block)
        if stamp and "message received" in block and re.search(r"^\s*INVITE sip:", block, re.M):
            return datetime.fromisoformat(re.sub(r"\s+", " ", stamp.group(1)))
    raise AssertionError("no INVITE in the trace:\n" + result.messages[:2000])


def targets(*ports: int, **overrides: object) -> Sequence[RingTarget]:
    return [
        RingTarget(uri=f"sip:dev{n}@127.0.0.1:{port}", label=f"dev_{n}", **overrides)  # type: ignore[arg-type]
        for n, port in enumerate(ports)
    ]
