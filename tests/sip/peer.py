"""A raw UDP SIP peer on 127.0.0.1 for tests that need exact bytes on the wire."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import cast

_BRANCH = re.compile(rb"branch=([^;,\s]+)")


class RawPeer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self._changed = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls) -> RawPeer:
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_datagram_endpoint(cls, local_addr=("127.0.0.1", 0))
        return peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)
        self._changed.set()

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, ("127.0.0.1", port))

    async def wait_for(self, match: Callable[[bytes], bool], timeout: float) -> bytes | None:
        """The first received datagram (old or new) matching, or None after ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for data in self.received:
                        if match(data):
                            return data
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            return None

    async def response(
        self, branch: str, timeout: float = 1.0, start: bytes = b"", final: bool = True
    ) -> bytes | None:
        """The first response carrying ``branch`` in its top Via (and starting with ``start``).

        ``final``: skip provisional (1xx) responses.
        """
        token = branch.encode()

        def match(data: bytes) -> bool:
            if not data.startswith(b"SIP/2.0 " + start):
                return False
            if final and data.startswith(b"SIP/2.0 1"):
                return False
            m = _BRANCH.search(data)
            return m is not None and m.group(1) == token

        return await self.wait_for(match, timeout)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def status_of(data: bytes | None) -> int | None:
    if data is None:
        return None
    return int(data.split(b" ", 2)[1])


def header(data: bytes, name: str) -> str | None:
    m = re.search(rb"^" + name.encode() + rb":\s*(.*?)\r?$", data, re.M | re.I)
    return m.group(1).decode() if m else None
