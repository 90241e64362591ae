"""Every way a deposit ends, through SIP on 127.0.0.1 against a Runtime with its workers on.

SIPp callers send known speech after the beep; Python callers (`dial()`) also record what they
hear, to check the prompts and the uploaded MP3 greeting reached them.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from afterbeep.app import Runtime
from afterbeep.audio.compare import compare
from afterbeep.audio.rendition import read_wav_pcm
from afterbeep.domain.messages import RecordedCall
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.interface import Audio
from afterbeep.telephony.prompts import beep, prompt
from tests.conftest import Backend
from tests.e2e.rig import (
    BEEP_S,
    SHORT_GREETING_S,
    WAIT,
    Api,
    api_of,
    caller_pcap,
    deposit_runtime,
    python_caller,
    sent,
    settle,
    short_greeting,
    silence,
    sip_port,
    sipp_calls,
    speech,
)
from tests.fixtures.smtp import SmtpServer, smtp_server
from tests.sip import conftest as sip_rig

sipp_bin = sip_rig.sipp_bin

pytestmark = pytest.mark.timeout(90)

# The endings' mailboxes get a half-second greeting (`short_greeting`): the caller speaks 0.85 s
# after the answer. The system greeting is played in test_pound_during_the_greeting_...
AFTER_BEEP_MS = int((SHORT_GREETING_S + BEEP_S) * 1000) + 600
GAP_MS = 600 - 100  # about this much silence is recorded between the beep and the speech


@pytest.fixture
def sqlite(tmp_path: Path) -> Backend:
    # No transcription: its worker would run a speech model over every message left here (CPU
    # the other tests wait for); its own tests are tests/e2e/test_transcripts.py and
    # tests/services/test_transcripts.py.
    return Backend(
        "sqlite-local",
        {"data_dir": tmp_path / "var", "secret_key": "e2e-" + "k" * 40, "transcribe": False},
    )


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
async def rt(sqlite: Backend, smtp: SmtpServer) -> AsyncIterator[Runtime]:
    async with deposit_runtime(sqlite, smtp.url()) as runtime:
        yield runtime


@pytest.fixture
async def api(rt: Runtime) -> AsyncIterator[Api]:
    async with api_of(rt) as a:
        yield a


def heard_prompt(name: str, heard: Audio) -> float:
    result = compare(sent(prompt(name)), heard, max_lag_ms=60_000)
    print(f"{name} heard: {result}")
    assert result.missing_head_ms <= 20 and result.missing_tail_ms <= 20
    return result.snr_db


async def test_pound_keeps_the_whole_recording_and_says_saved(rt: Runtime, api: Api) -> None:
    mailbox = await api.mailbox(skip_instructions=True)
    await short_greeting(api, mailbox["id"])
    words = speech(1.5, seed=21)

    async def speak_then_pound(call: SipCall) -> None:
        await call.play(silence(AFTER_BEEP_MS))
        await call.play(words)
        await call.play(silence(1500))  # trailing silence: kept, since `#` ends the message
        assert call.media is not None
        await call.media.send_dtmf("#")

    caller = await python_caller(rt, speak_then_pound)
    assert caller.remote_hangup  # the service said goodbye and hung up
    assert heard_prompt("vm-saved", caller.heard.pcm) >= 30
    await settle(rt)
    [message] = await api.wait_messages(mailbox["id"], 1)
    audio = await api.audio(message["id"])
    result = compare(sent(words), audio)
    assert result.snr_db >= 30 and result.missing_head_ms == 0
    untrimmed_tail = len(audio) - (result.lag + len(words))
    assert untrimmed_tail >= 1400 * 8  # not cut back to ~200 ms


async def test_hang_up_saves_and_trims(
    rt: Runtime, api: Api, sipp_bin: str, tmp_path: Path
) -> None:
    mailbox = await api.mailbox(skip_instructions=True)
    await short_greeting(api, mailbox["id"])
    words = speech(1.5, seed=22)
    caller_pcap(tmp_path, silence(AFTER_BEEP_MS), words, silence(1200))
    run = await sipp_calls(
        sipp_bin, "deposit_uac.xml", tmp_path, sip_port(rt), hold_ms=AFTER_BEEP_MS + 1500 + 1400
    )
    assert run.returncode == 0, run.output
    [message] = await api.wait_messages(mailbox["id"], 1)
    audio = await api.audio(message["id"])
    result = compare(sent(words), audio)
    assert result.snr_db >= 30 and result.missing_head_ms == 0 and result.missing_tail_ms == 0
    tail = len(audio) - (result.lag + len(words))
    assert 0 <= tail <= 220 * 8  # trailing silence trimmed back to about 200 ms


async def test_maximum_length_stops_the_recording(
    rt: Runtime, api: Api, sipp_bin: str, tmp_path: Path
) -> None:
    mailbox = await api.mailbox(skip_instructions=True, max_message_seconds=5)
    await short_greeting(api, mailbox["id"])
    words = speech(9.0, seed=23)
    caller_pcap(tmp_path, silence(AFTER_BEEP_MS), words)
    run = await sipp_calls(sipp_bin, "deposit_uac_until_bye.xml", tmp_path, sip_port(rt))
    assert run.returncode == 0, run.output  # the service hung up (after "maximum length")
    [message] = await api.wait_messages(mailbox["id"], 1)
    audio = await api.audio(message["id"])
    assert message["duration_ms"] == 5000 and len(audio) == 5 * 8000
    result = compare(sent(words), audio)
    assert result.snr_db >= 30 and result.missing_head_ms == 0
    assert result.lag + (len(words) - result.missing_tail_ms * 8) == len(audio)


async def test_silence_ends_the_recording(
    rt: Runtime, api: Api, sipp_bin: str, tmp_path: Path
) -> None:
    mailbox = await api.mailbox(skip_instructions=True, silence_seconds=2)
    await short_greeting(api, mailbox["id"])
    words = speech(1.5, seed=24)
    caller_pcap(tmp_path, silence(AFTER_BEEP_MS), words, silence(8000))
    run = await sipp_calls(sipp_bin, "deposit_uac_until_bye.xml", tmp_path, sip_port(rt))
    assert run.returncode == 0, run.output
    [message] = await api.wait_messages(mailbox["id"], 1)
    audio = await api.audio(message["id"])
    result = compare(sent(words), audio)
    assert result.snr_db >= 30 and result.missing_head_ms == 0 and result.missing_tail_ms == 0
    assert 0 <= len(audio) - (result.lag + len(words)) <= 220 * 8


async def test_too_short_leaves_no_message(
    rt: Runtime, api: Api, sipp_bin: str, tmp_path: Path
) -> None:
    mailbox = await api.mailbox(skip_instructions=True, min_message_seconds=2)
    await short_greeting(api, mailbox["id"])
    caller_pcap(tmp_path, silence(AFTER_BEEP_MS), speech(0.6, seed=25))
    run = await sipp_calls(
        sipp_bin, "deposit_uac.xml", tmp_path, sip_port(rt), hold_ms=AFTER_BEEP_MS + 1200
    )
    assert run.returncode == 0, run.output
    await settle(rt)
    assert await api.messages(mailbox["id"]) == []
    assert rt.spool is not None and rt.spool.entries() == []


async def test_full_mailbox_tells_the_caller_and_the_owner_once(
    rt: Runtime, api: Api, smtp: SmtpServer
) -> None:
    mailbox = await api.mailbox(skip_instructions=True, max_messages=1)
    assert rt.deposits is not None
    first = await rt.deposits.finalize(
        RecordedCall(
            call_id="call_prefill" + secrets.token_hex(4),
            account_id=mailbox["account_id"],
            mailbox_id=mailbox["id"],
            caller="+12025550199",
            caller_name=None,
            callee="+12025550100",
            started_at=datetime.now(UTC).isoformat(),
            ended_by="hangup",
        ),
        speech(2.0),
        False,
    )
    assert first is not None
    for _ in range(2):
        caller = await python_caller(rt)
        assert caller.remote_hangup
        assert heard_prompt("vm-mailbox-full", caller.heard.pcm) >= 30
    await settle(rt)
    assert len(await api.messages(mailbox["id"])) == 1
    log = await api.http.get("/v1/notifications", headers=api.headers)
    kinds = sorted(n["kind"] for n in log.json()["items"])
    assert kinds == ["mailbox_full", "new_message"], kinds  # told once, for two full callers
    mails = await smtp.collector.wait_for(2, timeout=WAIT)  # the first message's, and "full"
    subjects = [str(m.message["Subject"]) for m in mails]
    assert sum("is full" in s for s in subjects) == 1, subjects


async def test_pound_during_the_greeting_skips_to_the_beep(
    rt: Runtime, api: Api, sipp_bin: str, tmp_path: Path
) -> None:
    mailbox = await api.mailbox()  # greeting and instructions: about 8.3 s if not skipped
    words = speech(1.5, seed=26)
    caller_pcap(tmp_path, silence(500), "#", silence(1000), words)
    run = await sipp_calls(
        sipp_bin, "deposit_uac.xml", tmp_path, sip_port(rt), hold_ms=500 + 200 + 1000 + 1500 + 400
    )
    assert run.returncode == 0, run.output
    [message] = await api.wait_messages(mailbox["id"], 1)
    audio = await api.audio(message["id"])
    result = compare(sent(words), audio)
    print(f"after # in the greeting: {result}")
    assert result.snr_db >= 30 and result.missing_head_ms == 0  # recording before 1.7 s


async def test_uploaded_mp3_greeting_is_what_the_caller_hears(rt: Runtime, api: Api) -> None:
    rate = 44100
    t_axis = np.arange(int(rate * 2.5)) / rate
    voice = 0.3 * np.sin(2 * np.pi * 440 * t_axis) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t_axis))
    buffer = io.BytesIO()
    sf.write(buffer, voice.astype(np.float32), rate, format="MP3")
    response = await api.http.post(
        "/v1/media",
        files={"file": ("hello.mp3", buffer.getvalue(), "audio/mpeg")},
        headers=api.headers,
    )
    assert response.status_code == 201, response.text
    media = response.json()
    rendition = await api.http.get(
        f"/v1/media/{media['id']}/audio", params={"rendition": "telephony"}, headers=api.headers
    )
    greeting, greeting_rate = read_wav_pcm(rendition.content)
    assert greeting_rate == 8000
    await api.mailbox(greeting_media_id=media["id"], skip_instructions=True)

    caller = await python_caller(rt, limit=len(greeting) / 8000 + 3)
    heard = caller.heard.pcm
    result = compare(sent(greeting), heard, max_lag_ms=10_000)
    print(f"MP3 greeting heard: {result}")
    assert result.snr_db >= 20 and result.missing_head_ms <= 20 and result.missing_tail_ms <= 20
    after = compare(sent(beep()), heard, max_lag_ms=20_000)
    assert after.lag >= result.lag + len(greeting) - 160 and after.snr_db >= 20  # then the beep
    assert not np.array_equal(greeting[:8000], prompt("vm-greeting")[:8000])


async def test_a_greeting_whose_rendition_is_pending_is_rendered_for_the_caller(
    rt: Runtime, api: Api
) -> None:
    """A media accepted with a send has no telephony rendition until first use; as a greeting,
    the first caller's call renders it (and hears it, not the system greeting)."""
    rate = 22050
    t_axis = np.arange(int(rate * 2.0)) / rate
    voice = 0.3 * np.sin(2 * np.pi * 523 * t_axis) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t_axis))
    buffer = io.BytesIO()
    sf.write(buffer, voice.astype(np.float32), rate, format="MP3")
    response = await api.http.post(
        "/v1/media",
        files={"file": ("pending.mp3", buffer.getvalue(), "audio/mpeg")},
        headers=api.headers,
    )
    assert response.status_code == 201, response.text
    media = response.json()
    rendition = await api.http.get(
        f"/v1/media/{media['id']}/audio", params={"rendition": "telephony"}, headers=api.headers
    )
    greeting, _rate = read_wav_pcm(rendition.content)
    assert rt.store is not None
    from afterbeep.services.ports.storage import media_telephony_key

    account_id = (await api.http.get(f"/v1/media/{media['id']}", headers=api.headers)).json()[
        "account_id"
    ]
    await rt.store.delete(media_telephony_key(account_id, media["id"]))  # as a send leaves it
    await api.mailbox(greeting_media_id=media["id"], skip_instructions=True)

    caller = await python_caller(rt, limit=len(greeting) / 8000 + 3)
    result = compare(sent(greeting), caller.heard.pcm, max_lag_ms=10_000)
    assert result.snr_db >= 20 and result.missing_head_ms <= 20 and result.missing_tail_ms <= 20
    assert await rt.store.get_bytes(media_telephony_key(account_id, media["id"]))  # stored now
