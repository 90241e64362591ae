"""Keys and accounts over their whole life, on the real `afterbeep serve` and CLI processes:
a revoked key is refused at once, `account delete` erases everything of one account."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from afterbeep.db import tables as t
from tests.fixtures.service import BIN, NO_RECORDINGS, Service, running_service
from tests.ringless.support import SENDER, audio

UNKNOWN_ACCOUNT = "acc_01jg8asp59ps9rtt7azhrhvcre"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # No delivery worker: nothing writes for the account while it is being erased.
    with running_service(
        tmp_path_factory.mktemp("svc") / "var", {**NO_RECORDINGS, "AFTERBEEP_DELIVERY_ENABLED": "false"}
    ) as svc:
        yield svc


def cli(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI (in this process), whatever its exit status."""
    return service.cli(*args, check=False)


def cli_process(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `afterbeep` process, whatever its exit status."""
    return subprocess.run(
        [str(BIN / "afterbeep"), *args], env=service.env, capture_output=True, text=True, timeout=60
    )


def new_account(service: Service, name: str) -> tuple[str, dict[str, str]]:
    created = json.loads(service.cli("account", "create", name, "--json").stdout)
    return created["account_id"], {"Authorization": f"Bearer {created['api_key']}"}


def one_line_error(result: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("afterbeep: "), result.stderr
    for part in parts:
        assert part in last, result.stderr


def test_key_commands_answer_one_line_for_an_unknown_account_or_key(service: Service) -> None:
    one_line_error(cli_process(service, "key", "create", "--account", UNKNOWN_ACCOUNT), UNKNOWN_ACCOUNT)
    one_line_error(cli(service, "key", "create", "--account", UNKNOWN_ACCOUNT), UNKNOWN_ACCOUNT)
    one_line_error(cli(service, "key", "revoke", "key_01jg8asp59ps9rtt7azhrhvcre"), "not found")
    one_line_error(cli(service, "account", "delete", UNKNOWN_ACCOUNT, "--yes"), "not found")
    one_line_error(
        cli(service, "numbers", "verify", SENDER, "--account", UNKNOWN_ACCOUNT), UNKNOWN_ACCOUNT
    )


def test_a_key_revoked_by_the_operator_is_refused_by_the_running_service(service: Service) -> None:
    account_id, headers = new_account(service, "Revoked")
    other = json.loads(service.cli("key", "create", "--account", account_id, "--json").stdout)
    assert httpx.get(service.url + "/v1/api-keys", headers=headers).status_code == 200

    revoked = service.cli("key", "revoke", other["key_id"])
    assert f"revoked {other['key_id']}" in revoked.stdout
    refused = httpx.get(
        service.url + "/v1/account", headers={"Authorization": f"Bearer {other['api_key']}"}
    )
    assert refused.status_code == 401
    assert httpx.get(service.url + "/v1/account", headers=headers).status_code == 200
    one_line_error(cli(service, "key", "revoke", other["key_id"]), "not found")


def test_numbers_verify_refuses_a_number_verified_for_another_account(service: Service) -> None:
    first, _ = new_account(service, "First")
    second, _ = new_account(service, "Second")
    number = "+13125550142"
    assert "+13125550142 verified for account" in service.cli(
        "numbers", "verify", "(312) 555-0142", "--account", first
    ).stdout
    one_line_error(cli(service, "numbers", "verify", number, "--account", second), "another account")
    service.cli("numbers", "unverify", number, "--account", first)
    service.cli("numbers", "verify", number, "--account", second)


def _rows(db: Path, account_id: str) -> dict[str, int]:
    found: dict[str, int] = {}
    with sqlite3.connect(db) as conn:
        for table in t.metadata.sorted_tables:
            column = "id" if table is t.accounts else "account_id"
            if column not in table.c:
                continue
            query = f"SELECT count(*) FROM {table.name} WHERE {column} = ?"
            count = conn.execute(query, (account_id,)).fetchone()[0]
            if count:
                found[table.name] = count
    return found


def _objects(data_dir: Path, account_id: str) -> list[Path]:
    return [p for p in (data_dir / "objects" / account_id).rglob("*") if p.is_file()]


def _spool_entry(data_dir: Path, account_id: str, mailbox_id: str, call_id: str) -> Path:
    meta = {
        "call_id": call_id, "account_id": account_id, "mailbox_id": mailbox_id,
        "caller": None, "caller_name": None, "callee": None,
        "started_at": "2026-12-06T21:00:00Z", "ended_by": None,
    }
    (data_dir / "spool" / f"{call_id}.pcm").write_bytes(b"\0" * 3200)
    path = data_dir / "spool" / f"{call_id}.json"
    path.write_text(json.dumps(meta))
    return path


def test_account_delete_erases_everything_of_the_account_only(service: Service) -> None:
    data_dir = Path(service.env["AFTERBEEP_DATA_DIR"])
    db = data_dir / "afterbeep.db"
    gone, gone_headers = new_account(service, "Gone")
    kept, kept_headers = new_account(service, "Kept")
    service.cli("key", "create", "--account", gone)
    service.cli("numbers", "verify", SENDER, "--account", gone)

    def post(headers: dict[str, str], path: str, body: dict[str, object]) -> dict[str, object]:
        r = httpx.post(service.url + path, json=body, headers=headers, timeout=30)
        assert r.status_code in (201, 202), r.text
        data: dict[str, object] = r.json()
        return data

    mailboxes: dict[str, str] = {}
    for account_id, headers, number in ((gone, gone_headers, "+12025550160"),
                                        (kept, kept_headers, "+12025550161")):
        media = httpx.post(
            service.url + "/v1/media", files={"file": ("greeting.mp3", audio(3), "audio/mpeg")},
            headers=headers, timeout=30,
        )
        assert media.status_code == 201, media.text
        mailbox = post(headers, "/v1/mailboxes",
                       {"name": "Desk", "greeting_media_id": media.json()["id"]})
        mailboxes[account_id] = str(mailbox["id"])
        post(headers, "/v1/numbers",
             {"e164": number, "dest_kind": "voicemail", "dest_id": mailbox["id"]})
        post(headers, "/v1/webhooks",
             {"url": "http://127.0.0.1:9/hook", "events": ["message.created"]})
    setup = post(gone_headers, "/v1/telephony-setups", {
        "name": "trunk", "trunk_host": "127.0.0.1", "trunk_port": 9,
        "numbers": [{"e164": SENDER}], "deposit_uri": "sip:{to}@127.0.0.1:9",
    })
    use_case = post(gone_headers, "/v1/use-cases", {
        "channel": "ringless_voicemail", "name": "reminders", "setup_id": setup["id"],
        "sender_selection": "fixed", "sender_number": SENDER, "require_consent": False,
    })
    sent = httpx.post(
        service.url + "/v1/voicemails",
        files={"audio": ("reminder.mp3", audio(12), "audio/mpeg")},
        data={"to": "+12125550123", "use_case_id": str(use_case["id"])},
        headers=gone_headers, timeout=30,
    )
    assert sent.status_code == 202, sent.text
    spooled = _spool_entry(data_dir, gone, mailboxes[gone], "call_gone_1")
    kept_spooled = _spool_entry(data_dir, kept, mailboxes[kept], "call_kept_1")

    before = _rows(db, gone)
    assert {"api_keys", "media", "mailboxes", "numbers", "webhooks", "telephony_setups",
            "setup_numbers", "use_cases", "voicemail_sends", "verified_senders"} <= set(before)
    kept_before = _rows(db, kept)
    assert _objects(data_dir, gone) and _objects(data_dir, kept)

    one_line_error(cli(service, "account", "delete", gone), "--yes")
    assert _rows(db, gone) == before

    deleted = service.cli("account", "delete", gone, "--yes")
    assert f"deleted account {gone}" in deleted.stdout
    assert "  api_keys: 2" in deleted.stdout and "  media: 2" in deleted.stdout, deleted.stdout
    assert "  spool_entries: 1" in deleted.stdout and "  accounts: 1" in deleted.stdout
    assert _rows(db, gone) == {}
    assert _objects(data_dir, gone) == []
    assert not spooled.exists() and not spooled.with_suffix(".pcm").exists()
    assert httpx.get(service.url + "/v1/account", headers=gone_headers).status_code == 401

    assert _rows(db, kept) == kept_before
    assert _objects(data_dir, kept) and kept_spooled.exists()
    assert httpx.get(service.url + "/v1/mailboxes", headers=kept_headers).json()["items"]
    # The number is free again for another account.
    service.cli("numbers", "verify", SENDER, "--account", kept)


def test_member_create_takes_the_password_from_stdin(service: Service) -> None:
    account_id, _ = new_account(service, "Members Co")
    command = [str(BIN / "afterbeep"), "member", "create", "--account", account_id,
               "--email", "First.Admin@Example.com", "--role", "admin"]  # fmt: skip
    no_terminal = subprocess.run(command, env=service.env, capture_output=True, text=True, timeout=60, input="")
    assert no_terminal.returncode == 2 and "--password-stdin" in no_terminal.stderr
    made = subprocess.run(
        [*command, "--password-stdin", "--json"],
        env=service.env, capture_output=True, text=True, timeout=60, input="a long enough password\n",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["email"] == "first.admin@example.com" and created["role"] == "admin"
    assert created["member_id"].startswith("mem_") and created["account_id"] == account_id
    assert created["user_id"] is None
    unknown = subprocess.run(
        [*command[:6], "other@example.com", "--role", "member", "--user", "usr_01jg8asp59ps9rtt7azhrhvcre",
         "--password-stdin"],
        env=service.env, capture_output=True, text=True, timeout=60, input="a long enough password\n",
    )  # fmt: skip
    assert unknown.returncode == 2 and "no user with this id" in unknown.stderr, unknown.stderr

    with httpx.Client(base_url=service.url, timeout=30) as browser:
        csrf = browser.get("/sign-in").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        signed = browser.post(
            "/sign-in",
            data={"csrf": csrf, "email": "first.admin@example.com", "password": "a long enough password"},
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/inbox"
