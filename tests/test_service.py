"""The real process: `afterbeep serve`, the CLI, and a schemathesis run over its OpenAPI document."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.service import BIN, NO_RECORDINGS, Service, running_service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # From an empty data directory: `serve` creates and migrates its database itself.
    with running_service(
        tmp_path_factory.mktemp("svc") / "var", NO_RECORDINGS, from_template=False
    ) as svc:
        yield svc


def test_serve_prints_where_it_listens_and_answers(service: Service) -> None:
    assert httpx.get(service.url + "/readyz").json() == {"status": "ok"}
    assert f"listening on {service.url}" in service.log.read_text()
    assert "afterbeep: creating a new database" in service.log.read_text()


def test_account_and_key_commands(service: Service) -> None:
    created = json.loads(service.cli("account", "create", "Acme Clinic", "--json").stdout)
    assert created["account_id"].startswith("acc_") and created["api_key"].startswith("abk_")
    who = httpx.get(service.url + "/v1/account", headers={"Authorization": f"Bearer {created['api_key']}"})
    assert who.json() == {
        "id": created["account_id"], "name": "Acme Clinic", "timezone": "UTC", "language": "en",
        "allow_device_outbound": False, "device_outbound_setup_id": None,
    }

    second = json.loads(service.cli("key", "create", "--account", created["account_id"], "--json").stdout)
    assert second["api_key"] != created["api_key"]
    who = httpx.get(service.url + "/v1/account", headers={"Authorization": f"Bearer {second['api_key']}"})
    assert who.status_code == 200

    missing = subprocess.run(
        [str(BIN / "afterbeep"), "key", "create", "--account", "acc_01jg8asp59ps9rtt7azhrhvcre"],
        env=service.env, capture_output=True, text=True, timeout=60,
    )
    assert missing.returncode != 0


def test_migrate_is_idempotent(service: Service) -> None:
    assert "up to date" in service.cli("migrate").stdout


def test_schemathesis_finds_no_server_error(service: Service, tmp_path: Path) -> None:
    key = json.loads(service.cli("account", "create", "Fuzz", "--json").stdout)["api_key"]
    # Every operation gets the coverage phase (each parameter's boundary and invalid values,
    # positive and negative, about 6000 cases) and five random cases of its own; HTTP methods
    # an operation does not have are left out (the router answers those 405, no handler runs).
    config = tmp_path / "schemathesis.toml"
    config.write_text("[phases.coverage]\nunexpected-methods = []\n")
    result = subprocess.run(
        [
            str(BIN / "schemathesis"), "--config-file", str(config),
            "run", service.url + "/openapi.json",
            "--checks", "not_a_server_error",
            "--max-examples", "5",
            "--seed", "1",
            "--request-timeout", "20",
            "-H", f"Authorization: Bearer {key}",
            "--report-dir", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={**service.env, "SCHEMATHESIS_HOOKS": ""},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    tested = re.search(r"(\d+) generated, (\d+) passed", output)
    assert tested is not None and int(tested.group(2)) > 100, output[-3000:]
