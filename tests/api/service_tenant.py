"""An account on the real `afterbeep serve` with a setup and one use case per channel, for
tests about the API surface rather than delivery (the sender number is verified by hand)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.fixtures.service import Service
from tests.ringless.support import audio

SENDER = "+12125550100"
RECIPIENT = "+12125550123"


@dataclass
class Tenant:
    service: Service
    account_id: str
    headers: dict[str, str]
    use_case_id: str
    drop_use_case_id: str

    @property
    def db(self) -> Path:
        return Path(self.service.env["AFTERBEEP_DATA_DIR"]) / "afterbeep.db"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.service.url, headers=self.headers, timeout=30)

    def rows(self, table: str) -> int:
        with sqlite3.connect(self.db) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def make_tenant(svc: Service, name: str = "Tenant") -> Tenant:
    created = json.loads(svc.cli("account", "create", name, "--json").stdout)
    headers = {"Authorization": f"Bearer {created['api_key']}"}
    with httpx.Client(base_url=svc.url, headers=headers, timeout=30) as client:
        setup = client.post(
            "/v1/telephony-setups",
            json={
                "name": "trunk",
                "trunk_host": "127.0.0.1",
                "trunk_port": 9,
                "transport": "udp",
                "numbers": [{"e164": SENDER}],
                "deposit_uri": "sip:{to}@127.0.0.1:9",
            },
        )
        assert setup.status_code == 201, setup.text
        # Verified by hand, as an operator would.
        with sqlite3.connect(Path(svc.env["AFTERBEEP_DATA_DIR"]) / "afterbeep.db") as conn:
            conn.execute("UPDATE setup_numbers SET verified = 1")
        use_cases = []
        for channel in ("ringless_voicemail", "voicemail_drop"):
            made = client.post(
                "/v1/use-cases",
                json={
                    "channel": channel,
                    "name": channel,
                    "setup_id": setup.json()["id"],
                    "sender_selection": "fixed",
                    "sender_number": SENDER,
                },
            )
            assert made.status_code == 201, made.text
            use_cases.append(str(made.json()["id"]))
    return Tenant(svc, created["account_id"], headers, *use_cases)


def multipart_send(
    client: httpx.Client, path: str, use_case_id: str, metadata: str | None = None
) -> httpx.Response:
    data = {"to": RECIPIENT, "use_case_id": use_case_id}
    if metadata is not None:
        data["metadata"] = metadata
    return client.post(path, files={"audio": ("v.mp3", audio(11), "audio/mpeg")}, data=data)
