"""Transcripts end to end: the real `afterbeep serve` (the post-call process runs the
transcription worker with the real faster-whisper engine), a SIPp caller speaking an
espeak-ng sentence as G.711 RTP, and an aiosmtpd server.

- kill -9 of the service and its post-call process while transcription jobs are queued: after
  a restart every message gets its transcript, the owner's email carries it, `?q=` finds the
  messages and another account's search never does (one test: each start of `serve` loads
  the model anew, which is most of its time);
- model files corrupt (an operator's model directory whose model.bin fails its SHA-256) →
  `failed` with the reason, and the service goes on taking calls;
- AFTERBEEP_TRANSCRIBE=off → `skipped`.

The last two run the runtime in this process (transcription beside the calls, as with
AFTERBEEP_POSTCALL=inline); the first is the real `afterbeep serve`.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
import soxr

from afterbeep.asr.models import TINY_EN, package_folder, part_path
from afterbeep.telephony.interface import Audio
from tests.conftest import Backend
from tests.e2e.rig import (
    BEEP_S,
    GREETING_S,
    Api,
    api_of,
    caller_pcap,
    deposit_runtime,
    rtp_range,
    silence,
    sipp_calls,
    speech,
)
from tests.e2e.rig import sip_port as rt_sip_port
from tests.fixtures.service import Service, running_service
from tests.fixtures.smtp import SmtpServer, smtp_server
from tests.sip import conftest as sip_rig

sipp_bin = sip_rig.sipp_bin

pytestmark = pytest.mark.timeout(240)

LEAD_MS = int((GREETING_S + BEEP_S) * 1000) + 600  # speech starts well after the beep
SENTENCE = "Hi, this is John. The delivery will arrive tomorrow morning."
WAIT = 150.0  # bound on background work (a model load on a busy machine); not a speed check


def spoken(text: str) -> Audio:
    """`text` said by espeak-ng, as 8 kHz 16-bit PCM."""
    wav = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "130", "--stdout", text],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    pcm, rate = sf.read(io.BytesIO(wav), dtype="int16")
    return np.asarray(soxr.resample(pcm, rate, 8000)).astype(np.int16)


def env_for(tmp_path: Path, **settings: str) -> dict[str, str]:
    low, high = rtp_range()
    return {
        "AFTERBEEP_RTP_PORT_MIN": str(low),
        "AFTERBEEP_RTP_PORT_MAX": str(high),
        "AFTERBEEP_SECRET_KEY": "transcripts-" + "t" * 40,
        "AFTERBEEP_TRANSCRIBE": "on",
        # The email waits for the transcript this long; generous for a loaded machine.
        "AFTERBEEP_EMAIL_WAIT_TRANSCRIPT_SECONDS": "120",
        **{f"AFTERBEEP_{name.upper()}": value for name, value in settings.items()},
    }


def new_api(service: Service, http: httpx.AsyncClient) -> Api:
    created = json.loads(service.cli("account", "create", "Acme", "--json").stdout)
    return Api(http, {"Authorization": f"Bearer {created['api_key']}"}, created["account_id"])


def sip_port(service: Service) -> int:
    return int(service.env["AFTERBEEP_SIP_ADDR"].rsplit(":", 1)[1])


async def call(sipp: str, service: Service, directory: Path, words: Audio, calls: int = 1) -> None:
    caller_pcap(directory, silence(LEAD_MS), words)
    hold_ms = LEAD_MS + len(words) // 8 + 500
    run = await sipp_calls(
        sipp, "deposit_uac.xml", directory, sip_port(service), calls=calls, hold_ms=hold_ms
    )
    assert run.returncode == 0, run.output


async def settled(api: Api, mailbox_id: str, count: int) -> list[dict[str, Any]]:
    """The mailbox's `count` messages once none is `pending` any more."""
    async with asyncio.timeout(WAIT):
        while True:
            found = await api.messages(mailbox_id)
            if len(found) >= count and all(m["transcription_status"] != "pending" for m in found):
                return found
            await asyncio.sleep(0.2)


async def search(api: Api, path: str, q: str) -> list[str]:
    response = await api.http.get(path, params={"q": q}, headers=api.headers)
    assert response.status_code == 200, response.text
    return [m["id"] for m in response.json()["items"]]


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


def corrupt_model_copy(directory: Path) -> Path:
    """tiny.en copied with its SHA256SUMS, then one byte of model.bin changed."""
    directory.mkdir()
    lines = []
    for model_file in TINY_EN.files:
        [part] = model_file.parts
        source = part_path(part, package_folder)
        shutil.copyfile(source, directory / model_file.name)
        lines.append(f"{model_file.sha256}  {model_file.name}")
    (directory / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    weights = directory / "model.bin"
    with weights.open("r+b") as f:
        f.seek(os.path.getsize(weights) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert hashlib.sha256(weights.read_bytes()).hexdigest() != TINY_EN.files[1].sha256
    return directory


# In this process (the worker runs beside the calls, `postcall` inline), on SQLite: their paths
# do not depend on the database.
@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
async def test_corrupt_model_files_fail_with_the_reason_and_calls_go_on(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    model_dir = corrupt_model_copy(tmp_path / "model")
    async with (
        deposit_runtime(backend, transcribe=True, asr_model_dir=model_dir) as rt,
        api_of(rt) as api,
    ):
        mailbox = await api.mailbox(skip_instructions=True)
        for number in range(2):  # the second call comes after the first one failed
            caller_pcap(tmp_path / f"sipp{number}", silence(LEAD_MS), speech(1.5, seed=number))
            run = await sipp_calls(
                sipp_bin, "deposit_uac.xml", tmp_path / f"sipp{number}", rt_sip_port(rt),
                hold_ms=LEAD_MS + 2000,
            )  # fmt: skip
            assert run.returncode == 0, run.output
            found = await settled(api, mailbox["id"], number + 1)
            assert len(found) == number + 1
        for message in found:
            assert message["transcription_status"] == "failed" and message["transcript"] is None
            reason = message["transcription_reason"]
            print("reason:", reason)
            assert "model.bin" in reason and "SHA-256" in reason


@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
async def test_transcription_off_skips_the_message(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    async with deposit_runtime(backend, transcribe=False) as rt, api_of(rt) as api:
        mailbox = await api.mailbox(skip_instructions=True)
        caller_pcap(tmp_path, silence(LEAD_MS), speech(1.5))
        run = await sipp_calls(
            sipp_bin, "deposit_uac.xml", tmp_path, rt_sip_port(rt), hold_ms=LEAD_MS + 2000
        )
        assert run.returncode == 0, run.output
        [message] = await api.wait_messages(mailbox["id"], 1)
        assert message["transcription_status"] == "skipped"
        assert message["transcription_reason"] == "transcription is off"
        assert message["transcript"] is None


def child_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


async def test_spoken_messages_are_transcribed_emailed_and_found_across_a_kill_9(
    sipp_bin: str, tmp_path: Path, smtp: SmtpServer
) -> None:
    """Three callers say SENTENCE at once; the service (and its post-call process) is killed
    with SIGKILL while their jobs wait; after a restart every message has its transcript, each
    owner email carries it, `?q=` finds them, and another account's search never does."""
    calls = 3
    env = env_for(tmp_path, smtp_url=smtp.url())
    data_dir = tmp_path / "var"
    with running_service(data_dir, env) as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
            api = new_api(service, http)
            other = new_api(service, http)
            mailbox = await api.mailbox(skip_instructions=True)
            await call(sipp_bin, service, tmp_path / "sipp", spoken(SENTENCE), calls=calls)
            stored = await api.wait_messages(mailbox["id"], calls)
        pending = [m for m in stored if m["transcription_status"] == "pending"]
        # The engine takes one message at a time (and loads its model first): the others
        # wait in the job table.
        assert len(pending) >= 2, [m["transcription_status"] for m in stored]
        for pid in [*child_pids(service.process.pid), service.process.pid]:
            os.kill(pid, signal.SIGKILL)
        service.process.wait(timeout=10)

    with running_service(data_dir, env) as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
            api = Api(http, api.headers, api.account_id)
            other = Api(http, other.headers, other.account_id)
            messages = await settled(api, mailbox["id"], calls)
            assert len(messages) == calls
            for message in messages:
                assert message["transcription_status"] == "done", message
                transcript = message["transcript"]
                assert "tomorrow morning" in transcript["text"].lower(), transcript
                assert transcript["language"] == "en" and 0 < transcript["confidence"] <= 1
                last = transcript["segments"][-1]
                assert 0 <= last["start_ms"] < last["end_ms"] <= message["duration_ms"]
            print("transcript:", messages[0]["transcript"])

            # Delivery is at least once: a kill between the server's 250 and its record
            # may send an email twice.
            mails = await smtp.collector.wait_for(calls, timeout=WAIT)
            for message in messages:
                bodies = [
                    str(body.get_content())
                    for mail in mails
                    if mail.message["X-Afterbeep-Message"] == message["id"]
                    and (body := mail.message.get_body(("plain",))) is not None
                ]
                assert bodies and all(message["transcript"]["text"] in b for b in bodies)

            ids = sorted(m["id"] for m in messages)
            for path in ("/v1/messages", f"/v1/mailboxes/{mailbox['id']}/messages"):
                assert sorted(await search(api, path, "tomorrow morning")) == ids
            assert await search(api, "/v1/messages", "yesterday evening") == []
            assert await search(other, "/v1/messages", "tomorrow morning") == []
            probe = await other.http.get(
                f"/v1/mailboxes/{mailbox['id']}/messages",
                params={"q": "tomorrow"},
                headers=other.headers,
            )
            assert probe.status_code == 404
