"""HostGuard: refuses, when an object is saved, a host the service must not connect to.

The same policy is checked again at connection time by the adapters (webhook transport, SIP
user agent), on the address actually connected to: a name may resolve elsewhere later.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from afterbeep.domain.errors import InvalidInput
from afterbeep.domain.netpolicy import NetworkPolicy, literal_address

Resolve = Callable[[str], Awaitable[list[str]]]
RESOLVE_SECONDS = 3.0
NOT_ALLOWED = "address-not-allowed"


async def system_resolve(host: str) -> list[str]:
    """Every address `host` resolves to ([] when it does not resolve)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return [str(info[4][0]) for info in infos]


class HostGuard:
    def __init__(self, policy: NetworkPolicy, resolve: Resolve = system_resolve) -> None:
        self.policy = policy
        self._resolve = resolve

    async def check(self, field: str, host: str) -> None:
        """Raise InvalidInput when `host`, or an address it resolves to now, is not allowed.

        A name that does not resolve (yet) is accepted; the connection-time check decides."""
        verdict = self.policy.host_verdict(host)
        if verdict is None:
            try:
                async with asyncio.timeout(RESOLVE_SECONDS):
                    addresses = await self._resolve(host)
            except TimeoutError:
                addresses = []
            ips = [ip for ip in map(literal_address, addresses) if ip is not None]
            verdict = all(self.policy.permits(ip) for ip in ips)
        if not verdict:
            raise InvalidInput(
                field,
                "points to a private, loopback, link-local or reserved address; "
                "the operator can open ranges with AFTERBEEP_ALLOW_PRIVATE_NETWORKS",
                NOT_ALLOWED,
            )
