"""A real softphone (Debian's baresip, headless) calling the service on 127.0.0.1.

baresip's microphone is a WAV of known speech-like audio (its aufile module), its keys are
sent as RFC 4733 events (ctrl_tcp ``sndcode``). What the service recorded is compared with the
G.711 round trip of that audio: baresip adds no processing of its own with these modules, so
the comparison is as strict as with SIPp, except for the length, which depends on when the
softphone's keys and hang-up land.
"""

from __future__ import annotations

import asyncio
import io
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from afterbeep.app import Runtime
from afterbeep.audio.compare import compare
from afterbeep.audio.tones import speech_like
from afterbeep.config import Settings
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.interface import Audio, EndedBy
from afterbeep.telephony.media import Codec
from afterbeep.telephony.server import Route, TelephonyServer
from afterbeep.telephony.sip import IncomingInvite
from tests.fixtures.baresip import available, baresip_phone, free_port, write_wav
from tests.fixtures.rtp_pcap import g711_roundtrip
from tests.fixtures.smtp import SmtpServer, smtp_server

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not available(), reason="needs Debian's baresip (apt-get install baresip)"),
]

NUMBER = "+12025550100"


class MemorySink:
    def __init__(self) -> None:
        self.blocks: list[Audio] = []

    def write(self, pcm: Audio) -> None:
        self.blocks.append(pcm.copy())

    @property
    def pcm(self) -> Audio:
        return np.concatenate(self.blocks) if self.blocks else np.zeros(0, dtype=np.int16)


def silence(ms: int) -> Audio:
    return np.zeros(ms * 8, dtype=np.int16)


def make_runtime(tmp_path: Path, smtp_url: str = "smtp://127.0.0.1:9") -> Runtime:
    return Runtime(
        Settings(
            data_dir=tmp_path / "var",
            secret_key="test-secret-" + "x" * 32,
            sip_addr=f"127.0.0.1:{free_port()}",
            rtp_port_min=24000,
            rtp_port_max=24999,
            smtp_url=smtp_url,
            allow_private_networks="127.0.0.0/8",
        )
    )


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = make_runtime(tmp_path)
    await rt.start(workers=False)
    try:
        yield rt
    finally:
        await rt.stop()


def _wait_emails(smtp: SmtpServer, count: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while len(smtp.messages()) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(smtp.messages())


async def test_a_baresip_call_is_recorded_and_its_keys_arrive(runtime: Runtime, tmp_path: Path) -> None:
    speech = speech_like(3000, seed=5)
    sink = MemorySink()
    seen: dict[str, Any] = {}
    done = asyncio.Event()

    async def script(call: SipCall) -> None:
        try:
            await call.answer()
            seen["recording"] = await call.record(sink, max_seconds=20, silence_seconds=20, finish_on="#")
            seen["digits"] = await call.collect_digits(3, timeout=10, terminator="#")
            seen["caller"] = call.caller
        finally:
            done.set()

    async def router(invite: IncomingInvite) -> Route:
        return script

    server: TelephonyServer = await runtime.start_telephony(router=router)
    async with baresip_phone(tmp_path, np.concatenate([speech, silence(5000)])) as phone:
        await phone.dial(f"sip:{NUMBER}@127.0.0.1:{server.udp_port}")
        await phone.wait_event("CALL_ESTABLISHED", timeout=10)
        await asyncio.sleep(3.6)  # the speech, then a little of the silence after it
        await phone.send_digits("#")
        await asyncio.sleep(0.5)
        await phone.send_digits("42#")
        async with asyncio.timeout(15):
            await done.wait()
        await phone.wait_event("CALL_CLOSED", timeout=10)  # the script returned: hung up

    assert seen["recording"].ended_by is EndedBy.FINISH_KEY
    assert seen["digits"] == "42"
    result = compare(g711_roundtrip(Codec.PCMU, speech), sink.pcm)
    print(f"baresip → record: {result}, {len(sink.pcm) / 8000:.2f} s recorded")
    assert result.snr_db >= 30
    assert result.missing_head_ms == 0
    assert result.missing_tail_ms <= 20
    assert len(sink.pcm) >= len(speech)


async def test_a_baresip_call_to_a_number_leaves_a_message(tmp_path: Path) -> None:
    with smtp_server() as smtp:
        runtime = make_runtime(tmp_path, smtp.url())
        await runtime.start(workers=True)  # SIP on settings.sip_addr, the spool and email workers
        try:
            await _leave_message(runtime, smtp, tmp_path)
        finally:
            await runtime.stop()


async def _leave_message(runtime: Runtime, smtp: SmtpServer, tmp_path: Path) -> None:
    assert runtime.telephony is not None and runtime.telephony.udp_port is not None
    issued = await runtime.accounts.create_account("Acme Clinic")
    headers = {"Authorization": f"Bearer {issued.secret}"}
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://afterbeep.test/v1", headers=headers) as api:
        mailbox = await api.post("/mailboxes", json={"name": "Front desk", "notify_email": "desk@example.com"})
        assert mailbox.status_code == 201, mailbox.text
        box = mailbox.json()["id"]
        number = await api.post("/numbers", json={"e164": NUMBER, "dest_kind": "voicemail", "dest_id": box})
        assert number.status_code == 201, number.text

        speech = speech_like(3000, seed=9)
        spoken = write_wav(tmp_path / "speech.wav", np.concatenate([speech, silence(6000)]))
        spool = runtime.data_dir / "spool"
        async with baresip_phone(tmp_path, silence(30_000)) as phone:
            await phone.dial(f"sip:2025550100@127.0.0.1:{runtime.telephony.udp_port}")
            await phone.wait_event("CALL_ESTABLISHED", timeout=10)
            # Greeting, instructions, beep; then the recording fills the spool file (the
            # entry itself is created while the greeting plays).
            async with asyncio.timeout(20):
                while not any(p.stat().st_size for p in spool.glob("*.pcm")):  # noqa: ASYNC110 (no event to wait on)
                    await asyncio.sleep(0.05)
            await phone.set_source(spoken)  # the caller speaks after the beep
            await asyncio.sleep(5.0)  # 3 s of speech, and room for baresip to switch its source late
            await phone.send_digits("#")  # ends the message; "saved, goodbye", then the service hangs up
            await phone.wait_event("CALL_CLOSED", timeout=15)

        async with asyncio.timeout(20):
            while not (items := (await api.get(f"/mailboxes/{box}/messages")).json()["items"]):  # noqa: ASYNC110 (the spool worker stores it; no event to wait on)
                await asyncio.sleep(0.2)
        assert len(items) == 1
        message = items[0]
        audio = await api.get(f"/messages/{message['id']}/audio")
        assert audio.status_code == 200
        with wave.open(io.BytesIO(audio.content), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
            stored = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)

    result = compare(g711_roundtrip(Codec.PCMU, speech), stored)
    print(f"baresip → message: {result}, {len(stored) / 8000:.2f} s stored, caller {message['caller']}")
    assert result.snr_db >= 30
    assert result.missing_head_ms == 0
    assert result.missing_tail_ms <= 20
    assert await asyncio.to_thread(_wait_emails, smtp, 1) == 1
    attachments = list(smtp.messages()[0].message.iter_attachments())
    assert [a.get_content_type() for a in attachments] == ["audio/wav"]
