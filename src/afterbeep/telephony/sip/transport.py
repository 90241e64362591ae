"""asyncio UDP and TCP adapters for SIP: datagrams and Content-Length framed streams.

Ours rather than aiosipua's transport, which asserts on the transport type (fails on
CPython 3.11 and closes the socket under uvloop). The adapters only move bytes: each
complete message goes to one callback with the `Flow` it came on, and responses go back
on that flow (the source address and port of a datagram, the same TCP connection).
`StreamFramer` is pure and tested on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from afterbeep.telephony.sip.errors import SipParseError, SipTransportError

_SHARED_PORT_ATTEMPTS = 20

logger = logging.getLogger(__name__)

MAX_MESSAGE_SIZE = 65_535
MAX_HEADER_SIZE = 16_384


UDP_RECEIVE_BUFFER = 4 * 1024 * 1024

class Flow:
    """The way a message came in and the way its answers go back."""

    transport: str = "UDP"
    reliable: bool = False

    @property
    def peer(self) -> tuple[str, int]:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def send(self, data: bytes) -> None:
        raise NotImplementedError


MessageHandler = Callable[[bytes, Flow], None]


class UdpFlow(Flow):
    __slots__ = ("_addr", "_endpoint")

    def __init__(self, endpoint: UdpEndpoint, addr: tuple[str, int]) -> None:
        self._endpoint = endpoint
        self._addr = addr

    @property
    def peer(self) -> tuple[str, int]:
        return self._addr

    @property
    def closed(self) -> bool:
        return self._endpoint.closed

    def send(self, data: bytes) -> None:
        self._endpoint.send_to(data, self._addr)


class UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, on_message: MessageHandler) -> None:
        self._on_message = on_message
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # A burst of INVITEs during a short event-loop stall must wait in the kernel, not be
            # dropped (the default buffer holds about 200 KB); the kernel caps it at rmem_max.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        peer = (str(addr[0]), int(addr[1]))
        self._on_message(data, UdpFlow(self, peer))

    def error_received(self, exc: Exception) -> None:
        logger.debug("sip udp error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    @property
    def closed(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    @property
    def local_address(self) -> tuple[str, int]:
        if self._transport is None:
            raise SipTransportError("UDP endpoint closed")
        sockname = self._transport.get_extra_info("sockname")
        return (str(sockname[0]), int(sockname[1]))

    def send_to(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._transport is None or self._transport.is_closing():
            raise SipTransportError("UDP endpoint closed")
        try:
            self._transport.sendto(data, addr)
        except OSError as exc:
            raise SipTransportError(f"UDP send to {addr[0]}:{addr[1]} failed") from exc

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class StreamFramer:
    """Splits a SIP byte stream into messages by Content-Length (RFC 3261 §18.3).

    CRLF keep-alives (RFC 5626 §3.5.1) between messages are skipped. Raises
    SipParseError(status=None) on input that cannot be framed; the connection must be closed.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        messages: list[bytes] = []
        while True:
            start = 0
            while start < len(self._buffer) and self._buffer[start] in (13, 10):
                start += 1
            if start:
                del self._buffer[:start]
            if not self._buffer:
                return messages
            end = self._buffer.find(b"\r\n\r\n")
            if end == -1:
                if len(self._buffer) > MAX_HEADER_SIZE:
                    raise SipParseError("header section too large", status=None)
                return messages
            length = _content_length(bytes(self._buffer[:end]))
            total = end + 4 + length
            if total > MAX_MESSAGE_SIZE:
                raise SipParseError("message too large", status=None)
            if len(self._buffer) < total:
                return messages
            messages.append(bytes(self._buffer[:total]))
            del self._buffer[:total]


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"content-length", b"l"):
            text = value.strip()
            if not text.isdigit():
                raise SipParseError("bad Content-Length", status=None)
            return int(text)
    return 0


class TcpConnection(asyncio.Protocol, Flow):
    transport = "TCP"
    reliable = True

    def __init__(self, on_message: MessageHandler, registry: dict[tuple[str, int], TcpConnection]):
        self._on_message = on_message
        self._registry = registry
        self._transport: asyncio.Transport | None = None
        self._peer: tuple[str, int] = ("", 0)
        self._framer = StreamFramer()
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self._peer = (str(peer[0]), int(peer[1]))
        self._registry[self._peer] = self

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._framer.feed(data)
        except SipParseError as exc:
            logger.info("closing SIP TCP connection: %s", exc.reason)
            self.close()
            return
        for msg in messages:
            self._on_message(msg, self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._registry.get(self._peer) is self:
            del self._registry[self._peer]
        if not self.lost.done():
            self.lost.set_result(None)

    @property
    def peer(self) -> tuple[str, int]:
        return self._peer

    @property
    def closed(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def send(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise SipTransportError("TCP connection closed")
        self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(slots=True)
class TransportLayer:
    """The listening sockets and the TCP connections of one user agent."""

    on_message: MessageHandler
    udp: UdpEndpoint | None = None
    tcp_server: asyncio.Server | None = None
    connections: dict[tuple[str, int], TcpConnection] = field(default_factory=dict)

    async def start(self, udp: tuple[str, int] | None, tcp: tuple[str, int] | None) -> None:
        """Listen on `udp` and `tcp`. Port 0 on both, same host: one free port for both
        (the UDP port the system picks, then TCP on it, tried again if TCP's is taken)."""
        shared = udp is not None and udp == tcp and udp[1] == 0
        for attempt in range(_SHARED_PORT_ATTEMPTS if shared else 1):
            try:
                await self._listen(udp, tcp, same_port=shared)
                return
            except OSError as exc:
                await self.close()
                taken = exc.errno == errno.EADDRINUSE
                if not (shared and taken and attempt + 1 < _SHARED_PORT_ATTEMPTS):
                    raise SipTransportError(f"cannot listen: {exc}") from exc

    async def _listen(
        self, udp: tuple[str, int] | None, tcp: tuple[str, int] | None, *, same_port: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        if udp is not None:
            _, self.udp = await loop.create_datagram_endpoint(
                lambda: UdpEndpoint(self.on_message), local_addr=udp
            )
        if tcp is not None:
            port = self.udp.local_address[1] if same_port and self.udp is not None else tcp[1]
            self.tcp_server = await loop.create_server(
                lambda: TcpConnection(self.on_message, self.connections),
                host=tcp[0],
                port=port,
                reuse_address=True,
            )

    @property
    def udp_address(self) -> tuple[str, int] | None:
        return self.udp.local_address if self.udp is not None else None

    @property
    def tcp_address(self) -> tuple[str, int] | None:
        if self.tcp_server is None or not self.tcp_server.sockets:
            return None
        sockname = self.tcp_server.sockets[0].getsockname()
        return (str(sockname[0]), int(sockname[1]))

    async def resolve(self, host: str, port: int, transport: str) -> str:
        if is_ip_literal(host):
            return host
        kind = socket.SOCK_STREAM if transport == "TCP" else socket.SOCK_DGRAM
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=kind)
        except OSError as exc:
            raise SipTransportError(f"cannot resolve {host}") from exc
        if not infos:
            raise SipTransportError(f"cannot resolve {host}")
        return str(infos[0][4][0])

    async def flow_to(self, host: str, port: int, transport: str) -> Flow:
        """A flow towards host:port: the UDP socket, or a (reused or new) TCP connection."""
        ip = await self.resolve(host, port, transport)
        if transport == "TCP":
            existing = self.connections.get((ip, port))
            if existing is not None and not existing.closed:
                return existing
            loop = asyncio.get_running_loop()
            try:
                _, conn = await loop.create_connection(
                    lambda: TcpConnection(self.on_message, self.connections), ip, port
                )
            except OSError as exc:
                raise SipTransportError(f"cannot connect to {ip}:{port}") from exc
            return conn
        if self.udp is None:
            raise SipTransportError("no UDP listener")
        return UdpFlow(self.udp, (ip, port))

    async def close(self) -> None:
        if self.tcp_server is not None:
            self.tcp_server.close()
        conns = list(self.connections.values())
        for conn in conns:
            conn.close()
        if conns:
            await asyncio.wait([c.lost for c in conns], timeout=2.0)
        if self.tcp_server is not None:
            await self.tcp_server.wait_closed()
            self.tcp_server = None
        if self.udp is not None:
            self.udp.close()
            self.udp = None
