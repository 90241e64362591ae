"""Stream framing by Content-Length (RFC 3261 §18.3), pure."""

from __future__ import annotations

import pytest

from afterbeep.telephony.sip.errors import SipParseError
from afterbeep.telephony.sip.transport import MAX_MESSAGE_SIZE, StreamFramer

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
