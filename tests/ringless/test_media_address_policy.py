"""Against the real `afterbeep serve` with only 127.0.0.1 opened: the trunk (127.0.0.1) is
allowed, but its SDP aims our audio at 127.0.0.2, outside the network policy. The deposit or
drop is refused (BYE, failed with a reason that does not name the address) and not one RTP or
RTCP packet reaches 127.0.0.2; a re-INVITE that moves allowed media there ends the call the
same way, while the allowed address did get the audio until then."""

from __future__ import annotations

import itertools
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.service import NO_RECORDINGS, Service, running_service
from tests.ringless.support import audio as mp3

pytestmark = pytest.mark.timeout(180)

SENDERS = (f"+1202555017{i}" for i in itertools.count())  # a caller id is one account's only
RECIPIENT = "+12125550123"
OPENED = {"AFTERBEEP_ALLOW_PRIVATE_NETWORKS": "127.0.0.1/32", **NO_RECORDINGS}
CLOSED_IP = "127.0.0.2"
WAIT = 30.0


class MediaSink:
    """An RTP socket and its RTCP neighbour (port + 1) on `host`, counting what arrives."""

    def __init__(self, host: str) -> None:
        for _ in range(50):
            rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rtp.bind((host, 0))
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rtcp.bind((host, rtp.getsockname()[1] + 1))
            except OSError:
                rtp.close()
                rtcp.close()
                continue
            self.host, self.port = host, int(rtp.getsockname()[1])
            self.sockets = (rtp, rtcp)
            for sock in self.sockets:
                sock.setblocking(False)
            return
        raise RuntimeError("no free port pair")

    def count(self) -> int:
        """Datagrams received so far on both ports (drains them)."""
        n = 0
        for sock in self.sockets:
            while True:
                try:
                    sock.recv(65536)
                except BlockingIOError:
                    break
                n += 1
        return n

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def sdp_answer(host: str, port: int) -> bytes:
    return (
        f"v=0\r\no=peer 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    ).encode()


def header(message: bytes, name: str) -> str:
    head = message.split(b"\r\n\r\n", 1)[0].decode()
    found = re.search(rf"^{name}:\s*(.*)$", head, re.M | re.I)
    assert found is not None, (name, head)
    return found.group(1).strip()


class Trunk(threading.Thread):
    """A SIP trunk on 127.0.0.1 (UDP) answering every INVITE with `media` in its SDP; with
    `move_to`, it re-INVITEs the answered call there once `before_move` RTP packets came."""

    def __init__(self, media: MediaSink, move_to: MediaSink | None = None) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.media, self.move_to = media, move_to
        self.before_move = 25
        self.received: list[bytes] = []
        self.answers: dict[str, bytes] = {}
        self.reinvite_answer: bytes | None = None
        self.reinvite_uri = ""
        self.got_bye = threading.Event()
        self.moved = False
        self.rtp_before_move = 0
        self._halt = threading.Event()

    def methods(self) -> list[str]:
        return [m.split(b" ", 1)[0].decode() for m in self.received]

    def run(self) -> None:
        dialog: tuple[bytes, tuple[str, int]] | None = None
        while not self._halt.is_set():
            try:
                data, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                if dialog is not None and self.move_to is not None and not self.moved:
                    self.rtp_before_move += self.media.count()
                    if self.rtp_before_move >= self.before_move:
                        self._reinvite(*dialog)
                continue
            self.received.append(data)
            if data.startswith(b"INVITE "):
                call_id = header(data, "Call-ID")
                if call_id not in self.answers:
                    self.answers[call_id] = self._answer(data)
                self.sock.sendto(self.answers[call_id], addr)
            elif data.startswith(b"ACK ") and dialog is None:
                dialog = (self.answers[header(data, "Call-ID")], addr)
            elif data.startswith(b"BYE "):
                self.sock.sendto(self._response(data, "200 OK"), addr)
                self.got_bye.set()
            elif data.startswith(b"SIP/2.0 ") and b"CSeq: 7 INVITE" in data:
                self.reinvite_answer = data
                code = int(data.split(b" ", 2)[1])
                if code >= 200:
                    self.sock.sendto(self._ack_of(data), addr)
            elif not data.startswith((b"SIP/2.0 ", b"ACK ")):
                self.sock.sendto(self._response(data, "200 OK"), addr)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        self.sock.close()

    def _response(self, request: bytes, status: str, to_tag: str = "", body: bytes = b"") -> bytes:
        lines = request.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
        keep = [line for line in lines[1:] if re.match(r"(?i)(via|from|call-id|cseq):", line)]
        to = next(line for line in lines if re.match(r"(?i)to:", line))
        head = [f"SIP/2.0 {status}", *keep, to + to_tag]
        head.append(f"Contact: <sip:trunk@127.0.0.1:{self.port}>")
        if body:
            head.append("Content-Type: application/sdp")
        head.append(f"Content-Length: {len(body)}")
        return "\r\n".join(head).encode() + b"\r\n\r\n" + body

    def _answer(self, invite: bytes) -> bytes:
        return self._response(
            invite, "200 OK", ";tag=trunk", sdp_answer(self.media.host, self.media.port)
        )

    def _reinvite(self, answer: bytes, addr: tuple[str, int]) -> None:
        assert self.move_to is not None
        self.moved = True
        body = sdp_answer(self.move_to.host, self.move_to.port).replace(b"1 1 IN", b"1 2 IN")
        found = re.search(r"<([^>]+)>", header(answer, "Contact"))
        assert found is not None
        self.reinvite_uri = found.group(1)
        head = [
            f"INVITE {self.reinvite_uri} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bKmove1",
            "Max-Forwards: 70",
            f"From: {header(answer, 'To')}",
            f"To: {header(answer, 'From')}",
            f"Call-ID: {header(answer, 'Call-ID')}",
            "CSeq: 7 INVITE",
            f"Contact: <sip:trunk@127.0.0.1:{self.port}>",
            "Content-Type: application/sdp",
            f"Content-Length: {len(body)}",
        ]
        self.sock.sendto("\r\n".join(head).encode() + b"\r\n\r\n" + body, addr)

    def _ack_of(self, response: bytes) -> bytes:
        head = [
            f"ACK {self.reinvite_uri} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bKmove1",
            "Max-Forwards: 70",
            f"From: {header(response, 'From')}",
            f"To: {header(response, 'To')}",
            f"Call-ID: {header(response, 'Call-ID')}",
            "CSeq: 7 ACK",
            "Content-Length: 0",
        ]
        return "\r\n".join(head).encode() + b"\r\n\r\n"


@pytest.fixture
def closed_sink() -> Iterator[MediaSink]:
    sink = MediaSink(CLOSED_IP)
    try:
        yield sink
    finally:
        sink.close()


@pytest.fixture
def open_sink() -> Iterator[MediaSink]:
    sink = MediaSink("127.0.0.1")
    try:
        yield sink
    finally:
        sink.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("svc") / "var", OPENED) as svc:
        yield svc


@pytest.fixture
def account(service: Service) -> Iterator[tuple[httpx.Client, str]]:
    """An account of the test's own on the file's service: its API client and its caller id."""
    sender = next(SENDERS)
    with httpx.Client(base_url=service.url, headers=service.account_headers(sender), timeout=30) as http:
        yield http, sender


def setup_for(http: httpx.Client, sender: str, trunk: Trunk, *, drop: bool) -> str:
    r = http.post(
        "/v1/telephony-setups",
        json={
            "name": "trunk",
            "trunk_host": "127.0.0.1",
            "trunk_port": trunk.port,
            "username": None,
            "password": None,
            "outbound_proxy": None,
            "from_domain": "carrier.example",
            "numbers": [{"e164": sender}],
            "deposit_uri": "" if drop else f"sip:{{to}}@127.0.0.1:{trunk.port}",
            "deposit_headers": {},
        },
    )
    assert r.status_code == 201, r.text
    use_case = http.post(
        "/v1/use-cases",
        json={
            "channel": "voicemail_drop" if drop else "ringless_voicemail",
            "name": "reminders",
            "setup_id": r.json()["id"],
            "sender_selection": "fixed",
            "sender_number": sender,
            "require_consent": False,
            "calling_window": {"start": "00:00", "end": "00:00"},
        },
    )
    assert use_case.status_code == 201, use_case.text
    return str(use_case.json()["id"])


def settled(http: httpx.Client, path: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        body: dict[str, Any] = http.get(path).json()
        if body["status"] not in ("accepted", "queued", "scheduled"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"{path} still {body['status']}")


def place(http: httpx.Client, use_case: str, *, drop: bool) -> str:
    if drop:
        r = http.post(
            "/v1/drops",
            files={"audio": ("d.mp3", mp3(10.5), "audio/mpeg")},
            data={"to": RECIPIENT, "use_case_id": use_case, "technique": "single"},
        )
    else:
        r = http.post(
            "/v1/voicemails",
            files={"audio": ("r.mp3", mp3(10.5), "audio/mpeg")},
            data={"to": RECIPIENT, "use_case_id": use_case},
        )
    assert r.status_code in (200, 201, 202), r.text
    return f"/v1/{'drops' if drop else 'voicemails'}/{r.json()['id']}"


@pytest.mark.parametrize("drop", [False, True], ids=["deposit", "drop"])
def test_answer_aiming_media_outside_the_policy_is_refused(
    account: tuple[httpx.Client, str], closed_sink: MediaSink, drop: bool
) -> None:
    http, sender = account
    trunk = Trunk(closed_sink)
    trunk.start()
    try:
        path = place(http, setup_for(http, sender, trunk, drop=drop), drop=drop)
        assert trunk.got_bye.wait(WAIT), trunk.methods()
        body = settled(http, path)
        time.sleep(1.0)  # anything still on its way to the closed address lands meanwhile
        detail = http.get(path).text
    finally:
        trunk.stop()
    assert closed_sink.count() == 0
    assert body["status"] == "failed", body
    expected = "media_address_not_allowed" if drop else "488 Media Address Not Allowed"
    assert body["failure_reason"] == expected
    assert CLOSED_IP not in detail
    assert trunk.methods().count("ACK") >= 1 and "BYE" in trunk.methods()


def test_reinvite_moving_media_outside_the_policy_ends_the_deposit(
    account: tuple[httpx.Client, str], open_sink: MediaSink, closed_sink: MediaSink
) -> None:
    http, sender = account
    trunk = Trunk(open_sink, move_to=closed_sink)
    trunk.start()
    try:
        path = place(http, setup_for(http, sender, trunk, drop=False), drop=False)
        assert trunk.got_bye.wait(WAIT), trunk.methods()
        body = settled(http, path)
        time.sleep(1.0)
        detail = http.get(path).text
    finally:
        trunk.stop()
    assert trunk.rtp_before_move >= trunk.before_move  # the allowed address got the audio
    assert trunk.reinvite_answer is not None
    assert trunk.reinvite_answer.startswith(b"SIP/2.0 488 ")
    assert closed_sink.count() == 0
    assert body["status"] == "failed", body
    assert body["failure_reason"] == "488 Media Address Not Allowed"
    assert CLOSED_IP not in detail
