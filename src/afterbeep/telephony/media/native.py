"""RTP receive for recordings off the event loop: the Python side of `_recv.c`.

A :class:`NativeReceiver` (one per media engine) runs the C receive thread and owns the RTP
sockets of the engine's sessions. While a session is *armed*, the thread takes the next audio
packets of its stream itself (no Python, no GIL per packet) and decodes them in the recorder's
200 ms blocks; everything else comes back here as the datagram it was, in order, and goes to
the session's Python receive path (`MediaSession._rtp_in`), which keeps DTMF, latching, SSRC
changes, reordering and counters. The loop is woken through an eventfd (`loop.add_reader`)
when a datagram waits or a block is ready, instead of once per packet.

``AFTERBEEP_MEDIA_RECEIVE=python`` (or a missing extension) keeps every packet on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from afterbeep.audio import g711
from afterbeep.metrics import RECV_COUNTERS

if TYPE_CHECKING:
    from afterbeep.telephony.media._recv import Queued, Receiver, State

try:
    from afterbeep.telephony.media import _recv
except ImportError:  # not built (a source tree without a compiler): the Python path
    _recv = None  # type: ignore[assignment]

__all__ = ["NativeClient", "NativeReceiver", "available", "drain"]

log = logging.getLogger(__name__)


def available() -> bool:
    return _recv is not None


class NativeClient(Protocol):
    """What the receiver calls on a session (on the event loop)."""

    def _native_ready(self) -> None: ...  # finished blocks wait

    def _native_datagram(self, data: bytes, addr: tuple[str, int]) -> None: ...

    def _native_rearm(self) -> None: ...  # after its datagrams of a wake-up


class NativeReceiver:
    def __init__(self, loop: asyncio.AbstractEventLoop, block: int, flush_after: float) -> None:
        if _recv is None:
            raise RuntimeError("afterbeep.telephony.media._recv is not built")
        self._rx: Receiver = _recv.Receiver(
            g711._ULAW_DECODE.astype("=i2").tobytes(),
            g711._ALAW_DECODE.astype("=i2").tobytes(),
            block,
            flush_after,
        )
        self._loop = loop
        self._clients: dict[int, NativeClient] = {}
        self.wakeups = 0
        self.datagrams = 0  # handed to Python
        loop.add_reader(self._rx.fileno(), self._wake)
        RECV_COUNTERS.add(self)

    def thread_counters(self) -> tuple[int, int, int, int]:
        """The thread's wake-ups, packets taken, datagrams dropped (queue full, oversize)."""
        rx = self._rx
        return rx.wakeups, rx.taken, rx.overflow, rx.oversize

    def add(self, sock: socket.socket, client: NativeClient) -> int:
        """From now on the thread reads ``sock``; datagrams already waiting are dropped (they
        were sent to the port before this session had it)."""
        drain(sock)
        sid = self._rx.add(sock.fileno())
        self._clients[sid] = client
        return sid

    def remove(self, sid: int) -> State:
        """Synchronously: the thread no longer reads the socket when this returns."""
        self._clients.pop(sid, None)
        return self._rx.remove(sid)

    def sync(self, sid: int, disarm: bool) -> State:
        return self._rx.sync(sid, disarm)

    @property
    def rx(self) -> Receiver:
        return self._rx

    def _wake(self) -> None:
        packets, ready = self._rx.poll()
        self.wakeups += 1
        clients = self._clients
        for sid in ready:
            client = clients.get(sid)
            if client is not None:
                self._call(client._native_ready)
        if not packets:
            return
        self.datagrams += len(packets)
        touched: dict[int, NativeClient] = {}
        item: Queued
        for item in packets:
            client = clients.get(item[0])
            if client is not None:
                self._call(client._native_datagram, item[1], item[2])
                touched[item[0]] = client
        for client in touched.values():
            self._call(client._native_rearm)

    def _call(self, handler: Callable[..., None], *args: object) -> None:
        """As the loop runs a protocol's callback: one session's failure (its sink raised, say)
        is reported and does not stop the others' packets."""
        try:
            handler(*args)
        except Exception as exc:
            self._loop.call_exception_handler(
                {"message": "exception in the native RTP receive path", "exception": exc}
            )

    def close(self) -> None:
        RECV_COUNTERS.remove(self)
        self._loop.remove_reader(self._rx.fileno())
        self._rx.close()
        self._clients.clear()


def drain(sock: socket.socket) -> int:
    """Read and drop what waits on a non-blocking socket; how many datagrams."""
    count = 0
    for _ in range(100_000):
        try:
            sock.recv(1)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:  # an ICMP error queued for an earlier send
            continue
        count += 1
    return count
