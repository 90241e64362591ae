"""Requests that reach a node through a proxy in front of it (Kamailio, issue 23).

Behind a proxy every request's source is the proxy. Where the address of the client matters
(digest failures counted per source address), a node that trusts the proxy reads it from the
client's Via, the one under the proxy's: its ``received`` parameter (which the proxy writes
whenever the packet came from elsewhere than the Via names, RFC 3261 18.2.1, replacing any the
client put), else its sent-by host.
"""

from __future__ import annotations

from ipaddress import ip_address

from aiosipua.headers import parse_via
from aiosipua.message import SipRequest

from afterbeep.domain.netpolicy import IPNetwork


def client_host(request: SipRequest, peer: str, trusted: tuple[IPNetwork, ...]) -> str:
    """The host `request` came from: `peer`, or when `peer` is a trusted proxy, the address
    that proxy received it from (`peer` again when that is not an IP literal)."""
    if not trusted or not _within(peer, trusted):
        return peer
    vias = [v for value in request.headers.get("via") for v in value.split(",") if v.strip()]
    if len(vias) < 2:
        return peer
    via = parse_via(vias[1].strip())
    host = str(via.params.get("received") or via.host or "").strip("[]")
    try:
        return str(ip_address(host))
    except ValueError:
        return peer


def _within(host: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ip_address(host.strip("[]"))
    except ValueError:
        return False
    return any(ip in network for network in networks)
