"""Send audio against the real `afterbeep serve`, from the CLI (`voicemails send --audio`,
`campaigns create --audio`) and the API: audio a send refuses is never stored, and one file sent
many ways is stored once for the account."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.service import BIN, Service, running_service
from tests.ringless.support import NYC_RECIPIENT, NYC_SENDER, audio, setup_body

pytestmark = pytest.mark.timeout(180)

RECIPIENTS = [NYC_RECIPIENT, "+12125550124"]


def afterbeep(service: Service, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**service.env, "AFTERBEEP_API_KEY": key, "AFTERBEEP_URL": service.url}
    return subprocess.run(
        [str(BIN / "afterbeep"), *args], env=env, capture_output=True, text=True, timeout=90
    )


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def media_ids(client: httpx.Client) -> list[str]:
    response = client.get("/v1/media")
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def send_multipart(client: httpx.Client, use_case: str, mp3: bytes, to: str) -> httpx.Response:
    return client.post(
        "/v1/voicemails",
        files={"audio": ("rvm.mp3", mp3, "audio/mpeg")},
        data={"to": to, "use_case_id": use_case},
    )


def test_refused_audio_is_not_stored_and_one_file_is_stored_once(tmp_path: Path) -> None:
    env = {"AFTERBEEP_DELIVERY_ENABLED": "false"}
    with running_service(tmp_path / "var", env) as service:
        account = json.loads(service.cli("account", "create", "Acme", "--json").stdout)
        service.cli("numbers", "verify", NYC_SENDER, "--account", account["account_id"])
        key = account["api_key"]
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=service.url, headers=headers, timeout=60) as client:
            setup = created(client.post("/v1/telephony-setups", json=setup_body()))
            use_case = created(
                client.post(
                    "/v1/use-cases",
                    json={
                        "channel": "ringless_voicemail",
                        "name": "reminders",
                        "setup_id": setup["id"],
                        "sender_selection": "fixed",
                        "sender_number": NYC_SENDER,
                        "require_consent": False,
                        "calling_window": {"start": "00:00", "end": "00:00"},
                    },
                )
            )["id"]
            numbers = tmp_path / "numbers.csv"
            numbers.write_text("\n".join(RECIPIENTS) + "\n")

            short = tmp_path / "rvm_9s.mp3"
            short.write_bytes(audio(9))
            refused = afterbeep(
                service, key, "voicemails", "send", "--use-case", use_case, "--audio", str(short),
                "--to", NYC_RECIPIENT,
            )  # fmt: skip
            assert refused.returncode != 0
            assert "HTTP 422" in refused.stderr, refused.stderr
            assert media_ids(client) == []
            refused = afterbeep(
                service, key, "campaigns", "create", "--use-case", use_case,
                "--audio", str(short), "--to-file", str(numbers),
            )  # fmt: skip
            assert refused.returncode != 0
            assert "HTTP 422" in refused.stderr, refused.stderr
            response = send_multipart(client, use_case, short.read_bytes(), NYC_RECIPIENT)
            assert response.status_code == 422, response.text
            response = client.post(
                "/v1/media",
                files={"file": ("rvm_9s.mp3", short.read_bytes(), "audio/mpeg")},
                data={"purpose": "voicemail"},
            )
            assert response.status_code == 422, response.text
            assert response.json()["error_id"] == "audio-too-short"
            assert media_ids(client) == []
            assert client.get("/v1/voicemails").json()["items"] == []

            good = tmp_path / "reminder.mp3"
            good.write_bytes(audio(10.5))
            for to in RECIPIENTS:
                sent = afterbeep(
                    service, key, "voicemails", "send", "--use-case", use_case,
                    "--audio", str(good), "--to", to,
                )  # fmt: skip
                assert sent.returncode == 0, sent.stderr
            stored = media_ids(client)
            assert len(stored) == 1
            made = afterbeep(
                service, key, "campaigns", "create", "--use-case", use_case,
                "--audio", str(good), "--to-file", str(numbers), "--json",
            )  # fmt: skip
            assert made.returncode == 0, made.stderr
            assert json.loads(made.stdout)["media_id"] == stored[0]
            for to in RECIPIENTS:
                response = send_multipart(client, use_case, good.read_bytes(), to)
                assert response.status_code == 202, response.text
                assert response.json()["media_id"] == stored[0]
            again = client.post(
                "/v1/media", files={"file": ("again.mp3", good.read_bytes(), "audio/mpeg")}
            )
            assert again.status_code == 200, again.text
            assert again.json()["id"] == stored[0]

            assert media_ids(client) == stored
            sends = client.get("/v1/voicemails").json()["items"]
            assert len(sends) >= 4
            assert {send["media_id"] for send in sends} == set(stored)
