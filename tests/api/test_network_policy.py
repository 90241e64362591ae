"""Against the real `afterbeep serve`: webhook URLs, trunk hosts, outbound proxies and deposit
URIs that point into private networks are refused when saved (every written form of the
address), unless AFTERBEEP_ALLOW_PRIVATE_NETWORKS opens the range; and a webhook saved while
its range was open is `blocked` at connection time once it is closed, with nothing of the
target in its delivery log."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.service import NO_RECORDINGS, running_service
from tests.ringless.support import audio as mp3

pytestmark = pytest.mark.timeout(180)

CLOSED = {
    "AFTERBEEP_ALLOW_PRIVATE_NETWORKS": "", "AFTERBEEP_WEBHOOK_ALLOWED_HOSTS": "", **NO_RECORDINGS
}
PRIVATE_HOSTS = [
    "127.0.0.1", "localhost", "0.0.0.0", "0", "2130706433", "0x7f000001", "0177.0.0.1", "127.1",
    "[::ffff:127.0.0.1]", "[::1]", "[::]", "169.254.169.254", "10.0.0.1", "172.16.0.1",
    "192.168.1.1", "100.64.0.1", "[fc00::1]", "[fe80::1]", "224.0.0.1", "127.0.0.1.",
    "foo.localhost",
]  # fmt: skip
SENDER = "+12025550177"


def refused(r: httpx.Response, field: str) -> str | None:
    """None when `r` is the expected 422 problem naming `field`; else what was wrong."""
    if r.status_code != 422 or not r.headers["content-type"].startswith("application/problem+json"):
        return f"{r.status_code} {r.text[:200]}"
    body = r.json()
    if body.get("error_id") != "address-not-allowed" or field not in body.get("detail", ""):
        return str(body)
    return None


def setup_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "trunk",
        "trunk_host": "93.184.216.34",
        "numbers": [{"e164": SENDER}],
        "deposit_uri": "sip:{to}@93.184.216.34",
    }
    return {**body, **changes}


def test_private_targets_are_refused_when_saved(tmp_path: Path) -> None:
    with running_service(tmp_path / "var", CLOSED) as service, httpx.Client(
        base_url=service.url, headers=service.account_headers(SENDER), timeout=30
    ) as http:
        wrong: list[str] = []
        for host in PRIVATE_HOSTS:
            hook = {"url": f"http://{host}:8080/hook", "events": ["message.created"]}
            cases = [
                ("url", http.post("/v1/webhooks", json=hook)),
                ("trunk_host", http.post("/v1/telephony-setups", json=setup_body(trunk_host=host))),
                (
                    "outbound_proxy",
                    http.post(
                        "/v1/telephony-setups",
                        json=setup_body(outbound_proxy=f"sip:{host}:5060;lr"),
                    ),
                ),
                (
                    "deposit_uri",
                    http.post(
                        "/v1/telephony-setups", json=setup_body(deposit_uri=f"sip:{{to}}@{host}")
                    ),
                ),
                (
                    "deposit_uri",
                    http.post(
                        "/v1/telephony-setups",
                        json=setup_body(deposit_uri=f"sip:{{to}}@93.184.216.34;maddr={host}"),
                    ),
                ),
            ]
            for field, response in cases:
                problem = refused(response, field)
                if problem is not None:
                    wrong.append(f"{field} {host}: {problem}")
        assert wrong == []

        # Public addresses are fine, and a change to a private one is refused too.
        hook = http.post(
            "/v1/webhooks", json={"url": "https://93.184.216.34/hook", "events": ["message.created"]}
        )
        assert hook.status_code == 201, hook.text
        setup = http.post("/v1/telephony-setups", json=setup_body())
        assert setup.status_code == 201, setup.text
        patched = http.patch(
            f"/v1/telephony-setups/{setup.json()['id']}", json={"trunk_host": "127.1"}
        )
        assert refused(patched, "trunk_host") is None, patched.text
        assert http.get("/v1/webhooks").json()["items"] == [
            {k: v for k, v in hook.json().items() if k != "secret"}
        ]


def test_opened_range_is_accepted(tmp_path: Path) -> None:
    env = {**CLOSED, "AFTERBEEP_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8, 10.1.0.0/16"}
    with running_service(tmp_path / "var", env) as service, httpx.Client(
        base_url=service.url, headers=service.account_headers(SENDER), timeout=30
    ) as http:
        for host in ["127.0.0.1", "127.1", "2130706433", "[::ffff:127.0.0.1]", "10.1.2.3"]:
            hook = {"url": f"http://{host}:8080/hook", "events": ["message.created"]}
            assert http.post("/v1/webhooks", json=hook).status_code == 201, host
            r = http.post("/v1/telephony-setups", json=setup_body(trunk_host=host))
            assert r.status_code == 201, (host, r.text)
        for host in ["10.2.0.1", "169.254.169.254", "[::1]"]:
            hook = {"url": f"http://{host}:8080/hook", "events": ["message.created"]}
            assert refused(http.post("/v1/webhooks", json=hook), "url") is None, host


class _Hits(BaseHTTPRequestHandler):
    count = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).count += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def receiver() -> Iterator[tuple[str, type[_Hits]]]:
    handler = type("Hits", (_Hits,), {"count": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def send_voicemail(http: httpx.Client, use_case_id: str) -> None:
    r = http.post(
        "/v1/voicemails",
        files={"audio": ("r.mp3", mp3(10.5), "audio/mpeg")},
        data={"to": "+12125550123", "use_case_id": use_case_id},
    )
    assert r.status_code in (200, 201, 202), r.text


def final_delivery(http: httpx.Client, webhook_id: str, count: int) -> list[dict[str, Any]]:
    """The webhook's deliveries once `count` of them are no longer pending (30 s at most)."""
    deadline = time.monotonic() + 30
    while True:
        items: list[dict[str, Any]] = http.get(f"/v1/webhooks/{webhook_id}/deliveries").json()[
            "items"
        ]
        if sum(d["status"] != "pending" for d in items) >= count:
            return items
        assert time.monotonic() < deadline, items
        time.sleep(0.2)


def test_delivery_blocked_at_connection_time_says_nothing_of_the_target(tmp_path: Path) -> None:
    data = tmp_path / "var"
    quiet = {"AFTERBEEP_DELIVERY_ENABLED": "false", **NO_RECORDINGS}
    with receiver() as (url, hits):
        with running_service(data, quiet) as service, httpx.Client(
            base_url=service.url, headers=service.account_headers(SENDER), timeout=30
        ) as http:
            webhook = http.post("/v1/webhooks", json={"url": url, "events": ["voicemail.status"]})
            assert webhook.status_code == 201, webhook.text
            webhook_id = webhook.json()["id"]
            setup = http.post(
                "/v1/telephony-setups",
                json=setup_body(trunk_host="sip.carrier.example", deposit_uri=""),
            )
            assert setup.status_code == 201, setup.text
            use_case = http.post(
                "/v1/use-cases",
                json={
                    "channel": "ringless_voicemail",
                    "name": "reminders",
                    "setup_id": setup.json()["id"],
                    "sender_selection": "fixed",
                    "sender_number": SENDER,
                    "require_consent": False,
                    "calling_window": {"start": "00:00", "end": "00:00"},
                },
            )
            assert use_case.status_code == 201, use_case.text
            use_case_id = use_case.json()["id"]
            send_voicemail(http, use_case_id)
            [delivered] = final_delivery(http, webhook_id, 1)
            assert delivered["status"] == "delivered" and hits.count == 1
            headers = dict(http.headers)

        # The same webhook, after the operator closed the range.
        with running_service(data, {**quiet, **CLOSED}) as service, httpx.Client(
            base_url=service.url, headers=headers, timeout=30
        ) as http:
            send_voicemail(http, use_case_id)
            items = final_delivery(http, webhook_id, 2)
            blocked = [d for d in items if d["id"] != delivered["id"]]
            assert [(d["status"], d["last_status_code"], d["last_error"]) for d in blocked] == [
                ("blocked", None, None)
            ]
            assert hits.count == 1
