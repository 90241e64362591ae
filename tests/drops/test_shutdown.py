"""SIGTERM to a real `afterbeep serve` while a voicemail drop is playing its message.

The recipient's line is a TelephonyServer in the test process acting as an answering machine
(a spoken greeting, a beep, then silence, recording whatever comes, never hanging up). The
service drops an 11 s message into it over real SIP on 127.0.0.1; the signal comes once the
message has started to arrive.

- With a drain longer than what is left of the message, the call goes on to its end after
  the signal: the drop is `left_voicemail`, the line got the whole message, and the process
  then exits by itself.
- With a 2 s drain, the call is hung up at the deadline (the line sees a BYE), and after the
  process has exited the database already says what happened: the attempt is `interrupted`
  and the send is `accepted` with no lease, so a restarted service drops it again at once.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from afterbeep.audio.compare import compare
from afterbeep.audio.rendition import read_wav_pcm
from afterbeep.telephony.interface import Audio
from tests.drops.support import RECIPIENT, SENDER
from tests.drops.test_e2e import MESSAGE, Callee, Line, callee, machine
from tests.e2e.rig import rtp_range, sent
from tests.fixtures.service import Service, running_service

pytestmark = pytest.mark.timeout(170)

# MESSAGE's 9 s of speech, then its first 2 s again: speech up to the end (the shortest drop is
# 10 s), so a call cut short anywhere misses some of it.
SPOKEN_MESSAGE: Audio = np.concatenate([MESSAGE[: 8000 * 9], MESSAGE[: 8000 * 2]])
BOUND = 150.0  # the whole test's waiting, start-ups included; never a speed assertion


def env_for(drain_seconds: float) -> dict[str, str]:
    low, high = rtp_range()
    return {
        "AFTERBEEP_RTP_PORT_MIN": str(low),
        "AFTERBEEP_RTP_PORT_MAX": str(high),
        "AFTERBEEP_SECRET_KEY": "drop-shutdown-" + "k" * 40,
        "AFTERBEEP_DRAIN_SECONDS": str(drain_seconds),
    }


def mp3_bytes(pcm: Audio) -> bytes:
    """`pcm` (8 kHz) as a 16 kHz MP3, the format drops accept."""
    buffer = io.BytesIO()
    sf.write(buffer, np.repeat(pcm, 2).astype(np.float32) / 32768, 16000, format="MP3")
    return buffer.getvalue()


async def post(http: httpx.AsyncClient, headers: dict[str, str], path: str, body: dict[str, Any]) -> Any:
    r = await http.post(path, json=body, headers=headers)
    assert r.status_code in (201, 202), r.text
    return r.json()


async def a_drop(service: Service, line_port: int) -> tuple[str, dict[str, str], Audio]:
    """An account, a trunk to the test's line, a drop use case and one single-call drop; its
    id, the API headers and the message as the service plays it (its telephony rendition)."""
    created = json.loads(service.cli("account", "create", "Acme", "--json").stdout)
    headers = {"Authorization": f"Bearer {created['api_key']}"}
    service.cli("numbers", "verify", SENDER, "--account", created["account_id"])
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
        setup = await post(
            http,
            headers,
            "/v1/telephony-setups",
            {
                "name": "line",
                "trunk_host": "127.0.0.1",
                "trunk_port": line_port,
                "transport": "udp",
                "max_calls_per_second": 5,
                "max_concurrent_calls": 5,
                "numbers": [{"e164": SENDER}],
                "deposit_uri": "",
            },
        )
        use_case = await post(
            http,
            headers,
            "/v1/use-cases",
            {
                "channel": "voicemail_drop",
                "name": "reminders",
                "setup_id": setup["id"],
                "sender_selection": "fixed",
                "sender_number": SENDER,
                "require_consent": False,
                "calling_window": {"start": "00:00", "end": "00:00"},
                "max_attempts": 3,
                "retry_backoff_seconds": 1,
            },
        )
        r = await http.post(
            "/v1/media",
            files={"file": ("message.mp3", mp3_bytes(SPOKEN_MESSAGE), "audio/mpeg")},
            headers=headers,
        )
        assert r.status_code == 201, r.text
        media_id = r.json()["id"]
        wav = await http.get(
            f"/v1/media/{media_id}/audio", params={"rendition": "telephony"}, headers=headers
        )
        assert wav.status_code == 200, wav.text
        message, _rate = read_wav_pcm(wav.content)
        drop = await post(
            http,
            headers,
            "/v1/drops",
            {
                "to": RECIPIENT,
                "use_case_id": use_case["id"],
                "media_id": media_id,
                "technique": "single",
            },
        )
    return str(drop["id"]), headers, message


async def message_arriving(owner: Callee, index: int) -> Line:
    """Once the `index`-th call to the line has started to receive the message."""
    while True:
        if len(owner.lines) >= index:
            line = owner.lines[index - 1]
            sound = line.first_sound_at()
            if line.greeting_done is not None and sound is not None and sound > line.greeting_done:
                return line
        await asyncio.sleep(0.1)


async def terminate(service: Service) -> int:
    """SIGTERM, then the exit status once the process has ended by itself."""
    service.process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.to_thread(service.process.wait, 90)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("afterbeep serve did not exit after SIGTERM") from exc


def stored(data_dir: Path, drop_id: str) -> tuple[sqlite3.Row, list[sqlite3.Row]]:
    """The send's row and its attempts, read from the stopped service's database."""
    with sqlite3.connect(data_dir / "afterbeep.db") as db:
        db.row_factory = sqlite3.Row
        send = db.execute("SELECT * FROM voicemail_sends WHERE id = ?", (drop_id,)).fetchone()
        attempts = db.execute(
            "SELECT * FROM send_attempts WHERE send_id = ? ORDER BY number", (drop_id,)
        ).fetchall()
    return send, attempts


async def test_a_drop_in_progress_is_finished_within_the_drain(tmp_path: Path) -> None:
    data = tmp_path / "var"
    async with asyncio.timeout(BOUND), callee(machine) as owner:
        with running_service(data, env_for(drain_seconds=40)) as service:
            drop_id, _, message = await a_drop(service, owner.port)
            line = await message_arriving(owner, 1)
            assert await terminate(service) == 0
        send, attempts = stored(data, drop_id)
        assert (send["status"], send["claimed_until"]) == ("left_voicemail", None)
        assert [(a["number"], a["outcome"]) for a in attempts] == [(1, "left_voicemail")]
        await owner.idle()
        assert line.ended == "remote" and line.greeting_done is not None
        result = compare(sent(message), line.received_since(line.greeting_done - 0.05))
        assert result.snr_db > 30 and result.missing_tail_ms < 100, result
        assert len(owner.lines) == 1


async def test_a_drop_cut_by_the_deadline_is_interrupted_released_and_retried(
    tmp_path: Path,
) -> None:
    data = tmp_path / "var"
    env = env_for(drain_seconds=2)
    async with asyncio.timeout(BOUND), callee(machine) as owner:
        with running_service(data, env) as service:
            drop_id, headers, message = await a_drop(service, owner.port)
            first = await message_arriving(owner, 1)
            assert await terminate(service) == 0
        await owner.idle()
        assert first.ended == "remote"  # hung up (BYE) at the deadline
        send, attempts = stored(data, drop_id)
        assert (send["status"], send["claimed_until"], send["attempts"]) == ("accepted", None, 1)
        assert [(a["number"], a["outcome"]) for a in attempts] == [(1, "interrupted")]
        assert attempts[0]["ended_at"] is not None

        with running_service(data, env) as service:
            async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
                while True:
                    r = await http.get(f"/v1/drops/{drop_id}", headers=headers)
                    assert r.status_code == 200, r.text
                    detail = r.json()
                    if detail["status"] != "accepted":
                        break
                    await asyncio.sleep(0.2)
        assert detail["status"] == "left_voicemail", detail
        assert [(a["number"], a["outcome"]) for a in detail["attempts"]] == [
            (1, "interrupted"),
            (2, "left_voicemail"),
        ]
        assert len(owner.lines) == 2
        second = owner.lines[1]
        assert second.greeting_done is not None
        result = compare(sent(message), second.received_since(second.greeting_done - 0.05))
        assert result.snr_db > 30, result
