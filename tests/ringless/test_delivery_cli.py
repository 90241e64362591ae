"""`afterbeep voicemails send/list` against the API of a runtime (in process)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from afterbeep.cli import cli
from afterbeep.voicemail_cli import list_sends, read_numbers, send_one, upload
from tests.conftest import Backend
from tests.e2e.rig import api_of
from tests.ringless.support import audio as mp3
from tests.ringless.test_delivery import SQLITE, runtime_of, trunk_and_use_case


def test_numbers_file_skips_a_header_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "numbers.csv"
    path.write_text("phone,name\n+12025550101,Ann\n\n(202) 555-0102,Bob\n")
    assert read_numbers(path) == ["+12025550101", "(202) 555-0102"]
    path.write_text("+12025550101\n")
    assert read_numbers(path) == ["+12025550101"]


def test_send_needs_exactly_one_recipient_option(tmp_path: Path) -> None:
    audio = tmp_path / "a.mp3"
    audio.write_bytes(b"x")
    result = CliRunner().invoke(
        cli, ["voicemails", "send", "--use-case", "uc_x", "--audio", str(audio), "--api-key", "k"]
    )
    assert result.exit_code != 0
    assert "exactly one of --to and --to-file" in result.output


@SQLITE
@pytest.mark.parametrize("repeat", [2])
async def test_send_and_list_through_the_api(backend: Backend, repeat: int) -> None:
    async with runtime_of(backend, None) as rt, api_of(rt) as api:
        use_case = await trunk_and_use_case(api)
        api.http.headers.update(api.headers)
        media_id = await upload(api.http, "reminder.mp3", mp3(12))
        numbers = ["+12025550101", "(202) 555-0102", "not a number"]
        for _ in range(repeat):  # a second run of the same file creates nothing new
            outcomes = [await send_one(api.http, use_case["id"], media_id, n) for n in numbers]
            assert [o.ok for o in outcomes] == [True, True, False]
            assert outcomes[2].detail.startswith("HTTP 422")
        sends = await list_sends(api.http, {"use_case_id": use_case["id"]}, 100)
        assert sorted(s["to"] for s in sends) == ["+12025550101", "+12025550102"]
        assert await list_sends(api.http, {"status": "delivered"}, 100) == []
