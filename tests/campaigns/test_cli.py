"""`afterbeep campaigns ...` run as a process against a real `afterbeep serve`: create from a
CSV with an MP3, follow it with --wait until every recipient (local mailboxes) is delivered,
show it, and the refusals (invalid rows, a transition after the end) as exit code 1."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from afterbeep.cli import cli
from tests.fixtures.service import Service, run_cli, running_service
from tests.ringless.support import audio as mp3

pytestmark = pytest.mark.timeout(120)

SENDER = "+12025550177"
LOCAL = ["+12025553000", "+12025553001", "+12025553002"]


def afterbeep(service: Service, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`afterbeep campaigns ARGS` (in this process) against the service."""
    env = {**service.env, "AFTERBEEP_API_KEY": key, "AFTERBEEP_URL": service.url}
    return run_cli(env, "campaigns", *args, timeout=90)


def post(service: Service, key: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(service.url + path, json=body, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


def test_create_needs_exactly_one_audio_option(tmp_path: Path) -> None:
    numbers = tmp_path / "n.csv"
    numbers.write_text("+12025553000\n")
    result = CliRunner().invoke(
        cli,
        ["campaigns", "create", "--use-case", "uc_x", "--to-file", str(numbers), "--api-key", "k"],
    )
    assert result.exit_code != 0
    assert "exactly one of --media and --audio" in result.output


def test_create_wait_show_and_refusals(tmp_path: Path) -> None:
    with running_service(tmp_path / "var") as service:
        created = json.loads(service.cli("account", "create", "Acme", "--json").stdout)
        key = created["api_key"]
        service.cli("numbers", "verify", SENDER, "--account", created["account_id"])
        setup = post(
            service,
            key,
            "/v1/telephony-setups",
            {
                "name": "trunk",
                "trunk_host": "127.0.0.1",
                "trunk_port": 9,
                "numbers": [{"e164": SENDER}],
                "deposit_uri": "sip:{to}@127.0.0.1:9",
            },
        )
        use_case = post(
            service,
            key,
            "/v1/use-cases",
            {
                "channel": "ringless_voicemail",
                "name": "reminders",
                "setup_id": setup["id"],
                "sender_selection": "fixed",
                "sender_number": SENDER,
                "require_consent": False,
                "calling_window": {"start": "00:00", "end": "00:00"},
            },
        )
        mailbox = post(service, key, "/v1/mailboxes", {"name": "Desk", "min_message_seconds": 1})
        for number in LOCAL:
            post(
                service,
                key,
                "/v1/numbers",
                {"e164": number, "dest_kind": "voicemail", "dest_id": mailbox["id"]},
            )
        audio = tmp_path / "reminder.mp3"
        audio.write_bytes(mp3(10.5))
        numbers = tmp_path / "numbers.csv"
        numbers.write_text("name,number\nA,+12025553000\nB,(202) 555-3001\nC,not-a-number\n")

        refused = afterbeep(
            service, key, "create", "--use-case", use_case["id"], "--audio", str(audio),
            "--to-file", str(numbers),
        )  # fmt: skip
        assert refused.returncode == 1
        assert "HTTP 422" in refused.stderr and "row 4:" in refused.stderr

        numbers.write_text("name,number\nA,+12025553000\nB,(202) 555-3001\nC,not-a-number\nD,2025553002\nA,+1 202 555 3000\n")
        done = afterbeep(
            service, key, "create", "--use-case", use_case["id"], "--audio", str(audio),
            "--to-file", str(numbers), "--skip-invalid", "--wait", "--interval", "0.2",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "1 invalid left out, 1 duplicates removed" in done.stderr
        last = done.stdout.strip().splitlines()[-1]
        assert " completed  3/3 finished  (3 delivered)" in last, done.stdout
        assert "delivering" in done.stdout
        campaign_id = last.split()[0]
        assert campaign_id.startswith("camp_")

        shown = afterbeep(service, key, "show", campaign_id, "--json")
        assert shown.returncode == 0, shown.stderr
        campaign = json.loads(shown.stdout)
        assert campaign["status"] == "completed"
        assert campaign["progress"]["delivered"] == campaign["recipients_total"] == 3
        messages = httpx.get(
            f"{service.url}/v1/mailboxes/{mailbox['id']}/messages",
            headers={"Authorization": f"Bearer {key}"},
        ).json()["items"]
        assert sorted(m["callee"] for m in messages) == LOCAL

        late = afterbeep(service, key, "pause", campaign_id)
        assert late.returncode == 1 and "HTTP 409" in late.stderr

        media_id = campaign["media_id"]
        later = afterbeep(
            service, key, "create", "--use-case", use_case["id"], "--media", media_id,
            "--to-file", str(numbers), "--skip-invalid", "--start-at", "2099-01-01T09:00:00+00:00",
        )  # fmt: skip
        assert later.returncode == 0, later.stderr
        scheduled_id = later.stdout.strip().splitlines()[-1]
        assert "scheduled" in later.stdout
        paused = afterbeep(service, key, "pause", scheduled_id)
        assert paused.returncode == 0 and " paused " in paused.stdout
        resumed = afterbeep(service, key, "resume", scheduled_id)
        assert resumed.returncode == 0 and " scheduled " in resumed.stdout
        canceled = afterbeep(service, key, "cancel", scheduled_id)
        assert canceled.returncode == 0 and "(3 skipped)" in canceled.stdout
        listed = afterbeep(service, key, "list")
        assert [line.split()[0] for line in listed.stdout.splitlines()] == [scheduled_id, campaign_id]
