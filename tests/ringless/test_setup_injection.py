"""Against the real `afterbeep serve`: no telephony setup field can carry a header or a line
break into a SIP message. CR, LF and NUL are refused in every field; `deposit_headers` takes
only `X-` names and a short allowlist (never the headers the SIP stack writes); and the INVITE
a deposit sends, caught by a Python UDP peer, has each of its own headers once."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from afterbeep.domain.ringless import deposit_header_allowed
from tests.fixtures.service import NO_RECORDINGS, Service, running_service
from tests.ringless.support import audio as mp3

pytestmark = pytest.mark.timeout(180)

SENDER = "+12025550177"
DEPOSIT_SENDER = "+12025550178"  # the deposit test's account's (a caller id is one account's only)
BREAKS = ["\r\nVia: SIP/2.0/UDP 10.0.0.1", "\nX-Evil: 1", "\rX-Evil: 1", "a\x00b"]
TEXT_FIELDS = ["name", "trunk_host", "username", "password", "outbound_proxy", "from_domain",
               "deposit_uri"]  # fmt: skip
STACK_HEADERS = [
    "Via", "via", "Call-ID", "i", "CSeq", "From", "f", "To", "t", "Contact", "m", "Route",
    "Record-Route", "Max-Forwards", "Content-Type", "Content-Length", "l", "Content-Encoding",
    "P-Asserted-Identity", "Authorization", "Proxy-Authorization", "Expires", "Allow", "X-",
    "X-Afterbeep-Send", "x-afterbeep-deposit",
]  # fmt: skip
ALLOWED_HEADERS = {"X-Campaign": "spring", "x-lower": "1", "Diversion": "<sip:+12025550100@example.com>"}


def setup_body(port: int = 9, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "trunk",
        "trunk_host": "127.0.0.1",
        "trunk_port": port,
        "username": "acme",
        "password": "s3cret-pass",
        "outbound_proxy": None,
        "from_domain": "carrier.example",
        "numbers": [{"e164": SENDER}],
        "deposit_uri": f"sip:{{to}}@127.0.0.1:{port}",
        "deposit_headers": {"X-Campaign": "spring"},
    }
    return {**body, **changes}


def is_problem(r: httpx.Response) -> bool:
    return r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # The deposit's INVITE is never answered: a stop drains it for 1 s, not the 30 s default.
    env = {**NO_RECORDINGS, "AFTERBEEP_DRAIN_SECONDS": "1"}
    with running_service(tmp_path_factory.mktemp("svc") / "var", env) as svc:
        yield svc


def test_line_breaks_and_stack_headers_are_refused(service: Service) -> None:
    with httpx.Client(
        base_url=service.url, headers=service.account_headers(SENDER), timeout=30
    ) as http:
        created = http.post("/v1/telephony-setups", json=setup_body())
        assert created.status_code == 201, created.text
        path = f"/v1/telephony-setups/{created.json()['id']}"
        accepted: list[str] = []
        for field in TEXT_FIELDS:
            for brk in BREAKS:
                value = f"sip:{{to}}@127.0.0.1{brk}" if field == "deposit_uri" else f"x{brk}"
                for r in (
                    http.post("/v1/telephony-setups", json=setup_body(**{field: value})),
                    http.patch(path, json={field: value}),
                ):
                    if not is_problem(r):
                        accepted.append(f"{field}={value!r}: {r.status_code}")
            for brk in BREAKS:
                headers = {"X-Campaign": f"spring{brk}"}
                for r in (
                    http.post("/v1/telephony-setups", json=setup_body(deposit_headers=headers)),
                    http.patch(path, json={"deposit_headers": headers}),
                ):
                    if not is_problem(r):
                        accepted.append(f"deposit_headers={headers!r}: {r.status_code}")
        for name in [*STACK_HEADERS, "X-A\r\nVia", "X A", "X-A:", "X-\u00e9"]:
            headers = {name: "1"}
            for r in (
                http.post("/v1/telephony-setups", json=setup_body(deposit_headers=headers)),
                http.patch(path, json={"deposit_headers": headers}),
            ):
                if not is_problem(r):
                    accepted.append(f"deposit_headers name {name!r}: {r.status_code}")
        # Characters that would close a URI or a quoted string, without any line break.
        for field, value in [
            ("trunk_host", "carrier.example;maddr=10.0.0.1"),
            ("trunk_host", "a@carrier.example"),
            ("from_domain", "carrier.example>;x=1"),
            ("from_domain", "carrier example"),
            ("username", 'acme"\\'),
            ("deposit_uri", "sip:{to}@127.0.0.1>"),
            ("deposit_uri", "sip:{to} @127.0.0.1"),
            ("outbound_proxy", "sip:127.0.0.1;lr>"),
        ]:
            r = http.patch(path, json={field: value})
            if not is_problem(r):
                accepted.append(f"{field}={value!r}: {r.status_code}")
        assert accepted == []

        r = http.patch(path, json={"deposit_headers": {"Via": "SIP/2.0/UDP 10.0.0.1"}})
        assert r.json()["error_id"] == "header-not-allowed"
        assert "Diversion" in r.json()["detail"]
        ok = http.patch(path, json={"deposit_headers": ALLOWED_HEADERS})
        assert ok.status_code == 200, ok.text
        assert ok.json()["deposit_headers"] == ALLOWED_HEADERS
        assert http.get(path).json()["deposit_headers"] == ALLOWED_HEADERS


@pytest.fixture
def udp_peer() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(30)
    try:
        yield sock
    finally:
        sock.close()


def test_deposit_invite_carries_its_own_headers_once(service: Service, udp_peer: socket.socket) -> None:
    port = int(udp_peer.getsockname()[1])
    with httpx.Client(
        base_url=service.url, headers=service.account_headers(DEPOSIT_SENDER), timeout=30
    ) as http:
        setup = http.post(
            "/v1/telephony-setups",
            json=setup_body(port, deposit_headers={}, numbers=[{"e164": DEPOSIT_SENDER}]),
        )
        assert setup.status_code == 201, setup.text
        path = f"/v1/telephony-setups/{setup.json()['id']}"
        injected = {"X-Campaign": "spring\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKevil"}
        assert is_problem(http.patch(path, json={"deposit_headers": injected}))
        assert http.patch(path, json={"deposit_headers": ALLOWED_HEADERS}).status_code == 200
        use_case = http.post(
            "/v1/use-cases",
            json={
                "channel": "ringless_voicemail",
                "name": "reminders",
                "setup_id": setup.json()["id"],
                "sender_selection": "fixed",
                "sender_number": DEPOSIT_SENDER,
                "require_consent": False,
                "calling_window": {"start": "00:00", "end": "00:00"},
            },
        )
        assert use_case.status_code == 201, use_case.text
        sent = http.post(
            "/v1/voicemails",
            files={"audio": ("r.mp3", mp3(10.5), "audio/mpeg")},
            data={"to": "+12125550123", "use_case_id": use_case.json()["id"]},
        )
        assert sent.status_code in (200, 201, 202), sent.text
        data, _ = udp_peer.recvfrom(65536)
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("INVITE sip:+12125550123@127.0.0.1:")
    names = [line.split(":", 1)[0].strip().lower() for line in head.split("\r\n")[1:]]
    for own in ["via", "call-id", "cseq", "from", "to", "contact", "max-forwards",
                "p-asserted-identity", "content-type", "content-length"]:  # fmt: skip
        assert names.count(own) == 1, (own, head)
    lines = head.split("\r\n")
    assert "X-Campaign: spring" in lines and "Diversion: <sip:+12025550100@example.com>" in lines
    assert "evil" not in head


def test_stored_headers_outside_the_rules_never_reach_the_wire() -> None:
    """Rows written before these rules: the deposit skips what would be refused today."""
    assert deposit_header_allowed("X-Campaign", "spring")
    assert deposit_header_allowed("Diversion", "<sip:+12025550100@example.com>")
    for name, value in [("Via", "SIP/2.0/UDP 10.0.0.1"), ("X-A", "a\r\nVia: x"), ("X-A", "a\x00"),
                        ("X-Afterbeep-Send", "vmsend_x"), ("P-Asserted-Identity", "<sip:1@x>"),
                        ("X A", "1")]:  # fmt: skip
        assert not deposit_header_allowed(name, value), name
