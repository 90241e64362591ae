"""The user agent's outbound requests go only where the network policy allows: the next hop is
resolved once, checked, and the request sent to that checked address; in-dialog requests of a
dialog we opened follow the answerer's Contact only within the policy too."""

from __future__ import annotations

import asyncio
import dataclasses
import re

import pytest

from afterbeep.domain.netpolicy import NetworkPolicy
from afterbeep.telephony.sip.ua import Failed, UserAgent

from .conftest import CANNED_SDP, make_config
from .peer import RawPeer

QUIET = 0.5  # how long a peer that must receive nothing is watched


def agent(policy: NetworkPolicy) -> UserAgent:
    return UserAgent(dataclasses.replace(make_config(), network_policy=policy))


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.1", "2130706433", "0x7f000001", "localhost", "[::ffff:127.0.0.1]"]
)
async def test_invite_to_loopback_is_refused_by_default(host: str) -> None:
    peer = await RawPeer.open()
    try:
        async with agent(NetworkPolicy()) as ua:
            call = await ua.invite(
                f"sip:+15550001111@{host}:{peer.port}",
                "sip:afterbeep@127.0.0.1",
                f"sip:+15550001111@{host}:{peer.port}",
                CANNED_SDP,
                answer_timeout=5,
            )
            async with asyncio.timeout(5):
                event = await call.next_event()
            assert isinstance(event, Failed)
            assert (event.code, event.reason) == (403, "Destination Not Allowed")
            assert await peer.wait_for(lambda _: True, QUIET) is None
    finally:
        peer.close()


async def test_outbound_proxy_is_checked_too() -> None:
    peer = await RawPeer.open()
    try:
        async with agent(NetworkPolicy()) as ua:
            call = await ua.invite(
                "sip:+15550001111@8.8.8.8",
                "sip:afterbeep@127.0.0.1",
                "sip:+15550001111@8.8.8.8",
                CANNED_SDP,
                answer_timeout=5,
                outbound_proxy=f"sip:127.0.0.1:{peer.port};lr",
            )
            async with asyncio.timeout(5):
                event = await call.next_event()
            assert isinstance(event, Failed) and event.code == 403
            assert await peer.wait_for(lambda _: True, QUIET) is None
    finally:
        peer.close()


async def test_opened_range_is_reached() -> None:
    peer = await RawPeer.open()
    try:
        async with agent(NetworkPolicy.parse("127.0.0.0/8")) as ua:
            call = await ua.invite(
                f"sip:+15550001111@127.1:{peer.port}",
                "sip:afterbeep@127.0.0.1",
                f"sip:+15550001111@127.1:{peer.port}",
                CANNED_SDP,
                answer_timeout=5,
            )
            invite = await peer.wait_for(lambda d: d.startswith(b"INVITE "), 5)
            assert invite is not None
            call.cancel()
    finally:
        peer.close()


def _answer(invite: bytes, contact: str) -> bytes:
    """A 200 OK for `invite` whose Contact names `contact`."""
    lines = invite.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    keep = [line for line in lines[1:] if re.match(r"(?i)(via|from|call-id|cseq):", line)]
    to = next(line for line in lines if line.lower().startswith("to:"))
    sdp = CANNED_SDP
    head = [
        "SIP/2.0 200 OK",
        *keep,
        f"{to};tag=answerer",
        f"Contact: <{contact}>",
        "Content-Type: application/sdp",
        f"Content-Length: {len(sdp)}",
    ]
    return "\r\n".join(head).encode() + b"\r\n\r\n" + sdp


async def test_bye_does_not_follow_a_contact_outside_the_policy() -> None:
    """The trunk is allowed, but its 200 OK names a Contact in a closed range: the ACK goes
    back on the INVITE's flow, and the BYE is never sent to that Contact."""
    trunk = await RawPeer.open()
    loop = asyncio.get_running_loop()
    _, inside = await loop.create_datagram_endpoint(RawPeer, local_addr=("127.0.0.2", 0))
    try:
        async with agent(NetworkPolicy.parse("127.0.0.1/32")) as ua:
            call = await ua.invite(
                f"sip:+15550001111@127.0.0.1:{trunk.port}",
                "sip:afterbeep@127.0.0.1",
                f"sip:+15550001111@127.0.0.1:{trunk.port}",
                CANNED_SDP,
                answer_timeout=5,
            )
            invite = await trunk.wait_for(lambda d: d.startswith(b"INVITE "), 5)
            assert invite is not None
            trunk.send(_answer(invite, f"sip:x@127.0.0.2:{inside.port}"), _source_port(invite))
            async with asyncio.timeout(5):
                dialog = await call.wait_answered()
            assert await trunk.wait_for(lambda d: d.startswith(b"ACK "), 5) is not None
            await dialog.bye()
            assert await inside.wait_for(lambda _: True, QUIET) is None
    finally:
        trunk.close()
        inside.close()


def _source_port(request: bytes) -> int:
    via = re.search(rb"^Via: SIP/2.0/UDP [^:]+:(\d+)", request, re.M)
    assert via is not None
    return int(via.group(1))
