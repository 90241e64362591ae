"""Shared pieces of the media integration tests: engines, signals, peers and a lossy relay."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from afterbeep.telephony.media import MediaConfig, MediaEngine, MediaSession
from afterbeep.telephony.media.rtp import is_rtcp

RATE = 8000


def make_signal(seconds: float, seed: int = 1) -> npt.NDArray[np.int16]:
    """A chirp with some noise: no two frames alike, so any misplacement shows."""
    t = np.arange(int(RATE * seconds)) / RATE
    chirp = 9000 * np.sin(2 * np.pi * (200 * t + 150 * t * t))
    noise = np.random.default_rng(seed).normal(0, 1500, len(t))
    out: npt.NDArray[np.int16] = np.clip(chirp + noise, -32768, 32767).astype(np.int16)
    return out


def snr_db(reference: npt.NDArray[np.int16], actual: npt.NDArray[np.int16]) -> float:
    ref = reference.astype(np.float64)
    err = ref - actual.astype(np.float64)
    return float(10 * np.log10(np.sum(ref * ref) / max(np.sum(err * err), 1e-9)))


def engine(**overrides: Any) -> MediaEngine:
    settings: dict[str, Any] = {
        "advertised_ip": "127.0.0.1",
        "bind_host": "127.0.0.1",
        "port_min": 22000,
        "port_max": 22999,
        "rtcp_interval": 0.5,
    }
    settings.update(overrides)
    return MediaEngine(MediaConfig(**settings))


@dataclass
class Capture:
    """on_audio / on_dtmf sink that keeps everything."""

    blocks: list[npt.NDArray[np.int16]] = field(default_factory=list)
    digits: list[str] = field(default_factory=list)
    digit_event: asyncio.Event = field(default_factory=asyncio.Event)

    def audio(self, pcm: npt.NDArray[np.int16], offset: int) -> None:
        assert offset == sum(len(b) for b in self.blocks)
        self.blocks.append(pcm)

    def dtmf(self, digit: str) -> None:
        self.digits.append(digit)
        self.digit_event.set()

    @property
    def pcm(self) -> npt.NDArray[np.int16]:
        if not self.blocks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self.blocks)


def set_port(sdp_body: bytes, port: int) -> bytes:
    """The same SDP with another m=audio port (to route a peer through a relay)."""
    return re.sub(rb"m=audio \d+", b"m=audio %d" % port, sdp_body)


def connect(
    caller: MediaSession,
    callee: MediaSession,
    *,
    rewrite_offer: Callable[[bytes], bytes] = lambda b: b,
    rewrite_answer: Callable[[bytes], bytes] = lambda b: b,
) -> None:
    """caller offers, callee answers; the optional rewrites let a relay sit in between."""
    offer = caller.offer()
    answer = callee.answer(rewrite_offer(offer))
    caller.accept_answer(rewrite_answer(answer))


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay, name: str) -> None:
        self.relay, self.name = relay, name
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.DatagramTransport) -> None:  # type: ignore[override]
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.relay.forward(self.name, data)


class Relay:
    """A UDP relay between two RTP ports that can drop, swap, duplicate and rewrite
    the RTP packets of the a->b direction (RTCP passes untouched)."""

    def __init__(self) -> None:
        self.a_port = self.b_port = 0  # where the peers listen
        self.drop: set[int] = set()
        self.swap_after: set[int] = set()  # hold packet n and send it after n+1
        self.duplicate: set[int] = set()
        self.rewrite_pt: dict[int, int] = {}
        self._held: bytes | None = None
        self._count = 0
        self.to_a: _Side | None = None  # faces peer a
        self.to_b: _Side | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        _, self.to_a = await loop.create_datagram_endpoint(
            lambda: _Side(self, "a"), local_addr=("127.0.0.1", 0)
        )
        _, self.to_b = await loop.create_datagram_endpoint(
            lambda: _Side(self, "b"), local_addr=("127.0.0.1", 0)
        )

    @staticmethod
    def port(side: _Side | None) -> int:
        assert side is not None and side.transport is not None
        port: int = side.transport.get_extra_info("sockname")[1]
        return port

    def forward(self, came_from: str, data: bytes) -> None:
        assert self.to_a is not None and self.to_b is not None
        assert self.to_a.transport is not None and self.to_b.transport is not None
        if came_from == "b":
            self.to_a.transport.sendto(data, ("127.0.0.1", self.a_port))
            return
        out = self.to_b.transport
        if is_rtcp(data):
            out.sendto(data, ("127.0.0.1", self.b_port))
            return
        n = self._count
        self._count += 1
        if n in self.rewrite_pt:
            data = data[:1] + bytes([(data[1] & 0x80) | self.rewrite_pt[n]]) + data[2:]
        if n in self.drop:
            return
        if n in self.swap_after:
            self._held = data
            return
        out.sendto(data, ("127.0.0.1", self.b_port))
        if n in self.duplicate:
            out.sendto(data, ("127.0.0.1", self.b_port))
        if self._held is not None:
            out.sendto(self._held, ("127.0.0.1", self.b_port))
            self._held = None

    def close(self) -> None:
        for side in (self.to_a, self.to_b):
            if side is not None and side.transport is not None:
                side.transport.close()


__all__ = [
    "Capture",
    "Relay",
    "connect",
    "engine",
    "make_signal",
    "set_port",
    "snr_db",
]
