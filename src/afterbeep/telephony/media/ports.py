"""RTP port bookkeeping: even ports for RTP, the next odd one for RTCP (RFC 3550 section 11).

Ports are handed out round-robin through the range, so a port just released by one
call is not reused at once by the next (stray packets of the old call would reach it).
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["PortAllocator"]


class PortAllocator:
    def __init__(self, port_min: int, port_max: int) -> None:
        first = port_min + (port_min % 2)
        last = (port_max - 1) - (port_max - 1) % 2  # the last even port whose +1 is in range
        if not 0 < first <= last or port_max > 65535:
            raise ValueError(f"RTP port range {port_min}-{port_max} holds no even/odd pair")
        self._first = first
        self._count = (last - first) // 2 + 1
        self._cursor = 0
        self._in_use: set[int] = set()

    @property
    def capacity(self) -> int:
        return self._count

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def candidates(self) -> Iterator[int]:
        """Free even ports, starting after the last one handed out, each at most once."""
        for _ in range(self._count):
            port = self._first + 2 * self._cursor
            self._cursor = (self._cursor + 1) % self._count
            if port not in self._in_use:
                yield port

    def reserve(self, port: int) -> None:
        self._in_use.add(port)

    def release(self, port: int) -> None:
        self._in_use.discard(port)
