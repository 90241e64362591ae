"""Start-up and the operator's CLI, as real processes: a taken port is one line and exit
status 2 (and nothing says "listening" before every socket is bound); a CLI command names
the database it uses and creates none unless asked."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.service import BIN, _came_up, free_port


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERBEEP_")}
    return {**env, "AFTERBEEP_SMTP_URL": "smtp://127.0.0.1:9", **settings}


@pytest.fixture
def taken_tcp() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield int(held.getsockname()[1])


@pytest.fixture
def taken_udp() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


def serve(tmp_path: Path, http: int, sip: int) -> tuple[subprocess.Popen[bytes], Path]:
    env = clean_env(
        AFTERBEEP_DATA_DIR=str(tmp_path / "var"),
        AFTERBEEP_HTTP_ADDR=f"127.0.0.1:{http}",
        AFTERBEEP_SIP_ADDR=f"127.0.0.1:{sip}",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "afterbeep"), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return process, log


def assert_one_line_exit(process: subprocess.Popen[bytes], log: Path, expected: str) -> None:
    try:
        assert process.wait(timeout=60) == 2
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()
    assert output.strip().splitlines()[-1] == expected, output
    assert "listening" not in output and "Traceback" not in output, output


def test_a_taken_http_port_is_one_line_and_status_2(tmp_path: Path, taken_tcp: int) -> None:
    process, log = serve(tmp_path, taken_tcp, free_port(socket.SOCK_DGRAM))
    # The test fixture sees it as a port to retry on.
    assert _came_up(process, f"http://127.0.0.1:{taken_tcp}", log, retry_bind=True) is False
    expected = f"afterbeep: cannot listen on 127.0.0.1:{taken_tcp} (HTTP): address already in use"
    assert_one_line_exit(process, log, expected)


def test_a_taken_sip_port_is_one_line_and_status_2(tmp_path: Path, taken_udp: int) -> None:
    process, log = serve(tmp_path, free_port(), taken_udp)
    expected = f"afterbeep: cannot listen on 127.0.0.1:{taken_udp} (SIP): address already in use"
    assert_one_line_exit(process, log, expected)
    # The HTTP port it had bound is free again.
    assert _came_up(process, "http://127.0.0.1:9", log, retry_bind=True) is False


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "afterbeep"), *args], cwd=cwd, env=clean_env(),
        capture_output=True, text=True, timeout=120,
    )


def test_a_cli_command_names_its_database_and_creates_none_unasked(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    db = elsewhere / "var" / "afterbeep.db"

    refused = cli(elsewhere, "account", "create", "Acme", "--json")
    assert refused.returncode == 2, refused
    assert refused.stdout == ""
    assert refused.stderr.strip().splitlines() == [
        f"afterbeep: no database at {db}; set AFTERBEEP_DATA_DIR or AFTERBEEP_DATABASE_URL as "
        "for the service, or create it with `afterbeep migrate` (or --create)"
    ]
    assert list(elsewhere.iterdir()) == []

    created = cli(elsewhere, "account", "create", "Acme", "--json", "--create")
    assert created.returncode == 0, created
    assert f"afterbeep: creating a new database {db}" in created.stderr
    account = json.loads(created.stdout)["account_id"]

    again = cli(elsewhere, "key", "create", "--account", account)
    assert again.returncode == 0, again
    assert again.stderr.strip().splitlines()[0] == f"afterbeep: database {db}"

    migrated = tmp_path / "migrated"
    migrated.mkdir()
    first = cli(migrated, "migrate")
    assert first.returncode == 0 and "up to date" in first.stdout, first
    assert f"afterbeep: creating a new database {migrated / 'var' / 'afterbeep.db'}" in first.stderr
    assert cli(migrated, "account", "create", "Acme").returncode == 0
