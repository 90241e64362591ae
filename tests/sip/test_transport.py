"""Stream framing by Content-Length (RFC 3261 §18.3), pure; and the listening sockets."""

from __future__ import annotations

import asyncio
import socket

import pytest

from afterbeep.telephony.sip.errors import SipParseError, SipTransportError
from afterbeep.telephony.sip.transport import (
    MAX_MESSAGE_SIZE,
    StreamFramer,
    TransportLayer,
    UdpEndpoint,
)

BYE = b"BYE sip:a@h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n"
INFO = b"INFO sip:a@h SIP/2.0\r\nl: 5\r\nContent-Type: application/dtmf\r\n\r\n1234#"


def test_two_messages_in_one_read_and_keepalives_between() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n" + BYE + b"\r\n" + INFO) == [BYE, INFO]


def test_message_split_across_reads_byte_by_byte() -> None:
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(len(INFO)):
        out += framer.feed(INFO[i : i + 1])
    assert out == [INFO]


def test_body_waits_for_content_length() -> None:
    framer = StreamFramer()
    assert framer.feed(INFO[:-2]) == []
    assert framer.feed(INFO[-2:] + BYE[:10]) == [INFO]
    assert framer.feed(BYE[10:]) == [BYE]


@pytest.mark.parametrize(
    "data",
    [
        b"BYE sip:a@h SIP/2.0\r\nContent-Length: -1\r\n\r\n",
        b"BYE sip:a@h SIP/2.0\r\nContent-Length: lots\r\n\r\n",
        b"BYE sip:a@h SIP/2.0\r\nContent-Length: %d\r\n\r\n" % MAX_MESSAGE_SIZE,
        b"X" * 20_000,
    ],
)
def test_unframeable_input_raises(data: bytes) -> None:
    with pytest.raises(SipParseError):
        StreamFramer().feed(data)


async def test_port_zero_listens_on_one_port_for_udp_and_tcp() -> None:
    layer = TransportLayer(on_message=lambda data, flow: None)
    await layer.start(("127.0.0.1", 0), ("127.0.0.1", 0))
    try:
        assert layer.udp_address is not None and layer.tcp_address is not None
        assert layer.udp_address[1] == layer.tcp_address[1]
    finally:
        await layer.close()


async def test_port_zero_tries_another_port_when_tcp_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process holds TCP on the port the system gave UDP: the next port is tried."""
    blockers: list[socket.socket] = []
    made = UdpEndpoint.connection_made

    def taken_once(self: UdpEndpoint, transport: asyncio.BaseTransport) -> None:
        made(self, transport)
        if not blockers:
            blocker = socket.socket()
            blocker.bind(("127.0.0.1", self.local_address[1]))
            blocker.listen()
            blockers.append(blocker)

    monkeypatch.setattr(UdpEndpoint, "connection_made", taken_once)
    layer = TransportLayer(on_message=lambda data, flow: None)
    try:
        await layer.start(("127.0.0.1", 0), ("127.0.0.1", 0))
        assert layer.udp_address is not None and layer.tcp_address is not None
        assert layer.udp_address[1] == layer.tcp_address[1] != blockers[0].getsockname()[1]
    finally:
        await layer.close()
        for blocker in blockers:
            blocker.close()


async def test_a_taken_fixed_port_is_a_clear_error() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        layer = TransportLayer(on_message=lambda data, flow: None)
        with pytest.raises(SipTransportError, match="cannot listen"):
            await layer.start(None, ("127.0.0.1", port))
        assert layer.tcp_server is None
