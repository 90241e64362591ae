"""`dial()` with a network policy (only 127.0.0.1 opened): the far end's SDP may not aim our
RTP or RTCP outside it. Early media naming a closed address cancels the call; an answer whose
`a=rtcp` names one is hung up; nothing is sent to the closed address either way. (Answers and
re-INVITEs against the real service: tests/ringless/test_media_address_policy.py.)"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from afterbeep.domain.netpolicy import NetworkPolicy
from afterbeep.telephony.call import MediaNotAllowed
from afterbeep.telephony.server import TelephonyServer, telephony_configs
from tests.sip.peer import RawPeer

pytestmark = pytest.mark.timeout(60)

CLOSED_IP = "127.0.0.2"
QUIET = 1.0


@pytest.fixture
async def server() -> AsyncIterator[TelephonyServer]:
    ua_config, media_config = telephony_configs("127.0.0.1:0", None, 24000, 24999)
    ua_config = dataclasses.replace(ua_config, network_policy=NetworkPolicy.parse("127.0.0.1/32"))
    async with TelephonyServer(ua_config, media_config) as srv:
        yield srv


@pytest.fixture
def closed() -> Iterator[socket.socket]:
    """A UDP socket on the closed address: whatever reaches it is counted."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((CLOSED_IP, 0))
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


def arrived(sock: socket.socket) -> int:
    n = 0
    while True:
        try:
            sock.recv(65536)
        except BlockingIOError:
            return n
        n += 1


def sdp(host: str, port: int, extra: str = "") -> bytes:
    return (
        f"v=0\r\no=peer 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n{extra}a=sendrecv\r\n"
    ).encode()


def response(invite: bytes, status: str, body: bytes, trunk: RawPeer) -> bytes:
    lines = invite.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    keep = [line for line in lines[1:] if re.match(r"(?i)(via|from|call-id|cseq):", line)]
    to = next(line for line in lines if line.lower().startswith("to:"))
    head = [
        f"SIP/2.0 {status}",
        *keep,
        f"{to};tag=trunk",
        f"Contact: <sip:trunk@127.0.0.1:{trunk.port}>",
        "Content-Type: application/sdp",
        f"Content-Length: {len(body)}",
    ]
    return "\r\n".join(head).encode() + b"\r\n\r\n" + body


def source_port(request: bytes) -> int:
    via = re.search(rb"^Via: SIP/2.0/UDP [^:]+:(\d+)", request, re.M)
    assert via is not None
    return int(via.group(1))


async def dial_peer(server: TelephonyServer, trunk: RawPeer) -> tuple[asyncio.Task[object], bytes]:
    outbound = await server.dial(
        f"sip:+15550001111@127.0.0.1:{trunk.port}", "sip:afterbeep@127.0.0.1", timeout=10
    )
    answered: asyncio.Task[object] = asyncio.ensure_future(outbound.wait_answered())
    invite = await trunk.wait_for(lambda d: d.startswith(b"INVITE "), 5)
    assert invite is not None
    return answered, invite


async def test_early_media_outside_the_policy_cancels_the_call(
    server: TelephonyServer, closed: socket.socket
) -> None:
    trunk = await RawPeer.open()
    try:
        answered, invite = await dial_peer(server, trunk)
        port = closed.getsockname()[1]
        trunk.send(
            response(invite, "183 Session Progress", sdp(CLOSED_IP, port), trunk),
            source_port(invite),
        )
        with pytest.raises(MediaNotAllowed) as failed:
            async with asyncio.timeout(5):
                await answered
        assert (failed.value.code, failed.value.reason) == (488, "Media Address Not Allowed")
        assert await trunk.wait_for(lambda d: d.startswith(b"CANCEL "), 5) is not None
        await asyncio.sleep(QUIET)
        assert arrived(closed) == 0
    finally:
        trunk.close()


async def test_rtcp_address_outside_the_policy_hangs_up(
    server: TelephonyServer, closed: socket.socket
) -> None:
    """RTP at an allowed address, but `a=rtcp` sends the reports to a closed one."""
    trunk = await RawPeer.open()
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    rtp.setblocking(False)
    try:
        answered, invite = await dial_peer(server, trunk)
        rtcp = f"a=rtcp:{closed.getsockname()[1]} IN IP4 {CLOSED_IP}\r\n"
        body = sdp("127.0.0.1", rtp.getsockname()[1], rtcp)
        trunk.send(response(invite, "200 OK", body, trunk), source_port(invite))
        assert await trunk.wait_for(lambda d: d.startswith(b"ACK "), 5) is not None
        bye = await trunk.wait_for(lambda d: d.startswith(b"BYE "), 5)
        assert bye is not None
        trunk.send(response(bye, "200 OK", b"", trunk), source_port(bye))
        with pytest.raises(MediaNotAllowed):
            async with asyncio.timeout(5):
                await answered
        await asyncio.sleep(QUIET)
        assert arrived(closed) == 0 and arrived(rtp) == 0
    finally:
        trunk.close()
        rtp.close()
