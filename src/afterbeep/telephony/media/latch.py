"""Which source address an RTP session accepts packets from (symmetric RTP, RFC 4961), no I/O.

aiortp 0.8.0 accepts RTP from anyone and sends back to the last sender, so any
packet can hijack a call's audio. Here, until the first accepted packet, only the
address the SDP gave is acceptable: the exact address and port, or, with the same
IP, another port (a peer that does not send from the port it receives on). The first
accepted packet latches the session to its source; from then on only that exact
address is accepted (or the SDP's exact address, which always wins), and media is
sent back to it. With ``allow_nat`` (for callers
behind NAT whose SDP carries a private address) the first packet from any address
latches. A new negotiation (re-INVITE) resets the latch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SourceFilter"]


def _key(addr: tuple[Any, ...]) -> tuple[str, int]:
    return (addr[0], addr[1])


class SourceFilter:
    def __init__(self, expected: tuple[str, int] | None, allow_nat: bool = False) -> None:
        self.expected = expected
        self.allow_nat = allow_nat
        self.latched: tuple[str, int] | None = None
        self.send_to: tuple[str, int] | None = expected  # the latched source, else the SDP's

    def reset(self, expected: tuple[str, int] | None) -> None:
        if expected != self.expected:
            self.expected = expected
            self.latched = None
            self.send_to = expected

    def accept(self, addr: tuple[Any, ...]) -> bool:
        source = _key(addr)
        expected = self.expected
        if source == self.latched:
            return True
        if source == expected:  # the SDP's exact address always wins over a same-IP latch
            self.latched = self.send_to = source
            return True
        if self.latched is not None:
            return False
        if self.allow_nat or (expected is not None and source[0] == expected[0]):
            self.latched = self.send_to = source
            return True
        return False

    def accept_control(self, addr: tuple[Any, ...]) -> bool:
        """RTCP: from the latched or expected IP (its port is the RTP port + 1 or muxed)."""
        host: str = addr[0]
        if self.latched is not None:
            return host == self.latched[0]
        return self.allow_nat or (self.expected is not None and host == self.expected[0])
