"""What the real `afterbeep serve` writes to its log: one access line per HTTP request (route
template, status, duration, account; no query values, no phone numbers), webhook URLs without
their credentials or query, and no terminal colour codes, even when asked for colour or
writing to a terminal."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.api.service_tenant import Tenant, make_tenant, multipart_send
from tests.fixtures.service import BIN, free_port, running_service

COLOUR = {"FORCE_COLOR": "1", "PY_COLORS": "1", "CLICOLOR_FORCE": "1", "TERM": "xterm-256color"}
ACCESS = re.compile(
    r" afterbeep\.access: (?P<method>[A-Z]+) (?P<route>\S+) (?P<status>\d{3}) "
    r"duration_ms=\d+(?:\.\d+)? account_id=(?P<account>acc_[0-9a-z]+|-)$"
)
SECRETS = ("s3cret-pw", "QSECRET", "user:", "13125550177", "12125550123", "\x1b")


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that counts the deliveries it gets."""

    port: int = 0
    got: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            self.send_response(200)
            self.end_headers()
            found.got.set()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def tenant(tmp_path: Path) -> Iterator[Tenant]:
    with running_service(tmp_path / "var", COLOUR) as svc:
        yield make_tenant(svc, "Logs")


def access_lines(log: str) -> list[re.Match[str]]:
    return [m for line in log.splitlines() if (m := ACCESS.search(line))]


def test_one_access_line_per_request_and_no_secrets(tenant: Tenant, receiver: Receiver) -> None:
    log_file = tenant.service.log
    sent: list[tuple[str, str, int]] = []
    with tenant.client() as client:
        client.event_hooks["response"] = [
            lambda r: sent.append((r.request.method, r.request.url.path, r.status_code))
        ]
        hook = client.post(
            "/v1/webhooks",
            json={
                "url": f"http://user:s3cret-pw@127.0.0.1:{receiver.port}/hook?token=QSECRET",
                "events": ["voicemail.status"],
            },
        )
        assert hook.status_code == 201, hook.text
        assert multipart_send(client, "/v1/voicemails", tenant.use_case_id).status_code == 202
        assert receiver.got.wait(timeout=60), "no webhook delivery"
        client.get("/v1/voicemails", params={"to": "+12125550123", "limit": 5})
        client.get("/v1/voicemails/stats", params={"to": "+13125550177"})
        client.get("/v1/mailboxes/mb_01jf18ah3jeb5w6dfp27sgjsbt")
        client.get("/v1/numbers/+13125550177")
        client.get("/not-a-route/+13125550177")
        client.get("/v1/account", headers={"Authorization": "Bearer nope"})
    requests = [
        ("POST", "/v1/telephony-setups", 201), *[("POST", "/v1/use-cases", 201)] * 2,  # make_tenant
        *[s for s in sent if s[1] != "/healthz"],
    ]  # fmt: skip
    assert len(requests) == 11

    deadline = time.monotonic() + 30  # a bound on waiting for the lines, not a measurement
    while True:
        log = log_file.read_text()
        lines = [m for m in access_lines(log) if m["route"] != "/healthz"]
        if len(lines) >= len(requests) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [(m["method"], m["status"]) for m in lines] == [
        (method, str(status)) for method, _, status in requests
    ]
    assert [m["route"] for m in lines] == [
        "/v1/telephony-setups",
        "/v1/use-cases",
        "/v1/use-cases",
        "/v1/webhooks",
        "/v1/voicemails",
        "/v1/voicemails",
        "/v1/voicemails/stats",
        "/v1/mailboxes/{mailbox_id}",
        "/v1/numbers/{number_id}",
        "(unmatched)",
        "/v1/account",
    ]
    assert [m["account"] for m in lines] == [tenant.account_id] * 9 + ["-", "-"]
    assert "uvicorn.access" not in log
    assert [s for s in SECRETS if s in log] == []


def test_no_colour_codes_on_a_terminal(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        **COLOUR,
        "AFTERBEEP_DATA_DIR": str(tmp_path / "var"),
        "AFTERBEEP_HTTP_ADDR": f"127.0.0.1:{port}",
        "AFTERBEEP_SIP_ADDR": "127.0.0.1:0",  # one free port for UDP and TCP
        "AFTERBEEP_SMTP_URL": "smtp://127.0.0.1:9",
    }
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [str(BIN / "afterbeep"), "serve"], env=env, stdout=follower, stderr=follower
    )
    os.close(follower)
    output = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                return
            if not chunk:
                return
            output.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60  # a bound on start-up, not a measurement
        while b"afterbeep HTTP API listening" not in output:
            assert process.poll() is None, output.decode(errors="replace")
            assert time.monotonic() < deadline, output.decode(errors="replace")
            time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
        reader.join(timeout=10)
        os.close(leader)
    text = output.decode(errors="replace")
    assert "Started server process" in text and "Finished server process" in text
    assert "\x1b" not in text
