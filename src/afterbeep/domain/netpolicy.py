"""Which network addresses the service may connect to on a tenant's behalf.

Webhook URLs, trunk hosts, outbound proxies and deposit URIs are written by tenants; without a
rule they reach the operator's own network (loopback, the cloud metadata address, private
ranges). By default every address that is not globally routable is refused: loopback,
link-local, private, shared (100.64/10), unique-local (fc00::/7), site-local, unspecified,
multicast, reserved, documentation, and IPv6 forms that carry an IPv4 address (mapped,
compatible, 6to4, NAT64) when the carried address would be refused. The operator opens
chosen ranges with `AFTERBEEP_ALLOW_PRIVATE_NETWORKS` (a CIDR list).

A host is read the way the C resolver reads it: `127.1`, `2130706433`, `0x7f000001`,
`0177.0.0.1` and `[::ffff:127.0.0.1]` are all 127.0.0.1. Names are decided after resolution
(`NetworkPolicy.permits` on each address), and the connection goes to the address checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# Names every resolver answers with a loopback address, whatever DNS says (RFC 6761).
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})

_IPV4_COMPATIBLE = IPv6Network("::/96")
_NAT64 = (IPv6Network("64:ff9b::/96"), IPv6Network("64:ff9b:1::/48"))
_SIX_TO_FOUR = IPv6Network("2002::/16")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$"
)


class AddressBlocked(Exception):
    """A connection was refused because its resolved address is not allowed.

    Raised by adapters at connection time; carries no detail of the target on purpose."""

    def __init__(self) -> None:
        super().__init__("the destination address is not allowed")


def parse_ipv4(text: str) -> IPv4Address | None:
    """`text` read as inet_aton(3) reads it: 1 to 4 parts, each decimal, octal (leading 0)
    or hex (0x), the last part filling the remaining bytes. None when it is not such a form."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        value = _inet_number(part)
        if value is None:
            return None
        values.append(value)
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = last
    for i, v in enumerate(head):
        number |= v << (8 * (3 - i))
    return IPv4Address(number)


def _inet_number(part: str) -> int | None:
    if part[:2] in ("0x", "0X"):
        digits, base = part[2:], 16
        valid = "0123456789abcdefABCDEF"
    elif len(part) > 1 and part[0] == "0":
        digits, base = part[1:], 8
        valid = "01234567"
    else:
        digits, base = part, 10
        valid = "0123456789"
    if not digits or any(c not in valid for c in digits) or len(digits) > 32:
        return None
    return int(digits, base)


def literal_address(host: str) -> IPAddress | None:
    """The address `host` names when it is an IP literal in any written form; else None.

    Accepts `[v6]`, a zone id (`fe80::1%eth0`) and one trailing dot (`127.0.0.1.`)."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        text = text.partition("%")[0]
        try:
            return IPv6Address(text)
        except ValueError:
            return None
    if text.endswith("."):
        text = text[:-1]
    return parse_ipv4(text) if text else None


def is_hostname(host: str) -> bool:
    """A DNS name or an IP literal (`[v6]` accepted), nothing that could end a header or URI."""
    if literal_address(host) is not None:
        return host == host.strip()
    return bool(_HOSTNAME.match(host))


def is_loopback_name(host: str) -> bool:
    name = host.lower().rstrip(".")
    return name in LOOPBACK_NAMES or name.endswith(".localhost")


def embedded_ipv4(ip: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    if any(ip in net for net in _NAT64):
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def is_public(ip: IPAddress) -> bool:
    """True for a globally routable unicast address (what is allowed without configuration)."""
    if isinstance(ip, IPv6Address):
        carried = embedded_ipv4(ip)
        if carried is not None:
            # Mapped and compatible forms are refused outright: a socket may still reach the
            # IPv4 host behind them; NAT64 and 6to4 are as good as the address they carry.
            if ip.ipv4_mapped is not None or ip in _IPV4_COMPATIBLE:
                return False
            return is_public(carried)
        if ip.is_site_local:
            return False
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
        or not ip.is_global
    )


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """A comma-separated CIDR list (`10.0.0.0/8, 127.0.0.1, fd00::/8`); ValueError when bad."""
    networks: list[IPNetwork] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ip_network(item, strict=False))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not a CIDR network") from exc
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """Public addresses, plus the ranges the operator opened."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str) -> NetworkPolicy:
        return cls(parse_networks(text))

    def permits(self, ip: IPAddress) -> bool:
        if self._opened(ip):
            return True
        if isinstance(ip, IPv6Address):
            carried = embedded_ipv4(ip)
            if carried is not None and self._opened(carried):
                return True
        return is_public(ip)

    def _opened(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allowed)

    def host_verdict(self, host: str) -> bool | None:
        """True or False for an IP literal or a loopback name; None for a name to resolve."""
        ip = literal_address(host)
        if ip is None and is_loopback_name(host):
            return self.permits(IPv4Address("127.0.0.1")) and self.permits(IPv6Address("::1"))
        return None if ip is None else self.permits(ip)

    def first_permitted(self, addresses: Iterable[str]) -> str | None:
        """The first resolved address the policy permits (the one to connect to), or None."""
        for text in addresses:
            ip = literal_address(text)
            if ip is not None and self.permits(ip):
                return str(ip)
        return None


def sip_uri_hosts(uri: str) -> list[str]:
    """The hosts a SIP URI (or a bare `host:port`) makes a user agent connect to: its host and
    any `maddr` parameter."""
    text = uri.strip()
    if text[:5].lower() == "sips:":
        text = text[5:]
    elif text[:4].lower() == "sip:":
        text = text[4:]
    text = text.partition("?")[0].rpartition("@")[2]
    if text.startswith("["):
        end = text.find("]")
        host, rest = (text, "") if end < 0 else (text[: end + 1], text[end + 1 :])
    else:
        end = min((i for i in (text.find(":"), text.find(";")) if i >= 0), default=len(text))
        host, rest = text[:end], text[end:]
    hosts = [host]
    for param in rest.partition(";")[2].split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "maddr" and value:
            hosts.append(value.strip())
    return hosts


def trusting(policy: NetworkPolicy, host: str) -> NetworkPolicy:
    """`policy` that also permits `host` (an IP literal; anything else changes nothing).

    A registered device is rung at the address its digest-authenticated REGISTER came from,
    even inside a private range the operator did not open (the office LAN): that address was
    not written by a tenant, the device proved it is there."""
    ip = literal_address(host)
    if ip is None:
        return policy
    return NetworkPolicy((*policy.allowed, ip_network(ip)))
