"""kill -9 of `afterbeep serve` during 20 concurrent deposits: after a restart every call that
was recording is a message (flagged `recovered`) holding its audio up to at most 1 s before the
kill; a second restart makes no duplicate."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from afterbeep.audio.compare import compare
from tests.e2e.rig import (
    BEEP_S,
    GREETING_S,
    WAIT,
    Api,
    caller_pcap,
    rtp_range,
    sent,
    silence,
    sipp_calls,
    speech,
)
from tests.fixtures.service import running_service
from tests.sip import conftest as sip_rig

sipp_bin = sip_rig.sipp_bin

pytestmark = pytest.mark.timeout(150)

CALLS = 20
LEAD_MS = int((GREETING_S + BEEP_S) * 1000) + 600
SLACK_MS = 150  # timestamps of SIPp's trace vs its pcap playout, and our own reading


async def test_kill_9_mid_recording_loses_at_most_the_last_second(
    sipp_bin: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "var"
    low, high = rtp_range()
    env = {
        "AFTERBEEP_RTP_PORT_MIN": str(low),
        "AFTERBEEP_RTP_PORT_MAX": str(high),
        "AFTERBEEP_SECRET_KEY": "crash-test-" + "s" * 40,
    }
    words = speech(40.0, seed=31)
    reference = sent(words)
    caller_pcap(tmp_path / "sipp", silence(LEAD_MS), words)
    spool = data_dir / "spool"

    with running_service(data_dir, env) as service:
        key = json.loads(service.cli("account", "create", "Acme", "--json").stdout)["api_key"]
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
            api = Api(http, {"Authorization": f"Bearer {key}"})
            mailbox = await api.mailbox(skip_instructions=True)
        sip_port = int(service.env["AFTERBEEP_SIP_ADDR"].rsplit(":", 1)[1])
        procs: list[asyncio.subprocess.Process] = []
        calls = asyncio.ensure_future(
            sipp_calls(
                sipp_bin,
                "deposit_uac.xml",
                tmp_path / "sipp",
                sip_port,
                calls=CALLS,
                hold_ms=LEAD_MS + 45_000,
                timeout=70,
                process=procs,
            )
        )
        async with asyncio.timeout(WAIT):  # every call is recording
            while len([p for p in spool.glob("*.pcm") if p.stat().st_size > 0]) < CALLS:  # noqa: ASYNC110 (another process)
                await asyncio.sleep(0.1)
        await asyncio.sleep(4.3)
        service.process.send_signal(signal.SIGKILL)
        killed_at = datetime.now()
        service.process.wait(timeout=10)
        for proc in procs:
            proc.kill()
        run = await calls
    assert len(list(spool.glob("*.json"))) == CALLS  # left behind by the dead process

    acks = run.sent_times("ACK")
    assert len(acks) == CALLS, run.output
    # The least each message must hold: from its speech start to 1 s before the kill.
    last_speech_start = max(acks.values()).timestamp() + LEAD_MS / 1000
    first_speech_start = min(acks.values()).timestamp() + LEAD_MS / 1000
    beep_end = max(acks.values()).timestamp() + GREETING_S + BEEP_S
    must_hold_ms = (killed_at.timestamp() - last_speech_start) * 1000 - 1000 - SLACK_MS
    at_most_ms = (killed_at.timestamp() - first_speech_start) * 1000 + SLACK_MS
    assert must_hold_ms > 2000

    seen: set[str] = set()
    for restart in range(2):
        with running_service(data_dir, env) as service:
            async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
                api = Api(http, {"Authorization": f"Bearer {key}"})
                messages = await api.wait_messages(mailbox["id"], CALLS)
                async with asyncio.timeout(WAIT):
                    while any(spool.iterdir()):  # noqa: ASYNC110 (another process's spool)
                        await asyncio.sleep(0.1)
                messages = await api.messages(mailbox["id"])
                assert len(messages) == CALLS and len({m["call_id"] for m in messages}) == CALLS
                if restart == 0:
                    for message in messages:
                        assert message["recovered"]
                        audio = await api.audio(message["id"])
                        result = compare(reference, audio)
                        held_ms = (len(audio) - result.lag) / 8
                        assert result.snr_db >= 30 and result.missing_head_ms == 0, result
                        print(f"held {held_ms:.0f} ms; kill-1s bound {must_hold_ms:.0f} ms")
                        assert must_hold_ms <= held_ms <= at_most_ms, (held_ms, must_hold_ms)
                        since_beep_ms = (killed_at.timestamp() - beep_end) * 1000
                        assert message["duration_ms"] >= since_beep_ms - 1000 - SLACK_MS
                    seen = {m["id"] for m in messages}
                else:
                    assert {m["id"] for m in messages} == seen  # no duplicate, none lost
    assert os.listdir(spool) == []
