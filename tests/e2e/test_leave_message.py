"""Leave a message, end to end: a SIPp caller dials a number, speaks after the beep, hangs up;
the message is stored with exactly that audio, the owner gets the email (WAV attached) from a
real SMTP server, and the `message.created` webhook arrives signed. On both backends."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from afterbeep.audio.compare import compare
from afterbeep.audio.rendition import read_wav_pcm
from afterbeep.notify.webhooks import verify_signature
from tests.conftest import Backend
from tests.e2e.rig import (
    BEEP_S,
    CALLER,
    GREETING_S,
    HOOK_SECRET,
    NUMBER,
    OWNER,
    HookReceiver,
    api_of,
    caller_pcap,
    deposit_runtime,
    sent,
    silence,
    sip_port,
    sipp_calls,
    speech,
)
from tests.fixtures.smtp import smtp_server
from tests.sip import conftest as sip_rig

sipp_bin = sip_rig.sipp_bin

pytestmark = pytest.mark.timeout(90)

LEAD_MS = int((GREETING_S + BEEP_S) * 1000) + 600  # speech starts well after the beep


async def test_a_caller_leaves_a_message_and_the_owner_is_told(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    words = speech(4.0, seed=11)
    caller_pcap(tmp_path, silence(LEAD_MS), words)
    with smtp_server() as smtp:
        async with (
            HookReceiver() as hooks,
            deposit_runtime(backend, smtp.url()) as rt,
            api_of(rt) as api,
        ):
            await api.post(
                "/v1/webhooks",
                {"url": hooks.url, "events": ["message.created"], "secret": HOOK_SECRET},
            )
            mailbox = await api.mailbox(skip_instructions=True)
            run = await sipp_calls(
                sipp_bin, "deposit_uac.xml", tmp_path, sip_port(rt), hold_ms=LEAD_MS + 4000 + 500
            )
            assert run.returncode == 0, run.output
            [message] = await api.wait_messages(mailbox["id"], 1)
            assert message["caller"] == CALLER and message["callee"] == NUMBER
            assert message["caller_name"] == "SIPp Caller"
            assert message["folder"] == "new" and not message["recovered"]
            audio = await api.audio(message["id"])
            assert message["duration_ms"] == len(audio) // 8
            result = compare(sent(words), audio)
            print(f"{backend.name}: message vs speech sent after the beep: {result}")
            assert result.snr_db >= 30
            assert result.missing_head_ms == 0 and result.missing_tail_ms <= 20
            assert result.extra_ms <= LEAD_MS - (GREETING_S + BEEP_S) * 1000 + 200 + 100

            [mail] = await smtp.collector.wait_for(1, timeout=30)
            assert mail.rcpt_tos == [OWNER]
            email = mail.message
            assert "0123" in str(email["Subject"])  # the caller (masked or not) is named
            [attachment] = list(email.iter_attachments())
            assert attachment.get_content_type() == "audio/wav"
            attached, rate = read_wav_pcm(attachment.get_content())
            assert rate == 8000 and (attached == audio).all()

            [hook] = await hooks.wait_for(1)
            assert verify_signature(
                HOOK_SECRET,
                hook.headers["afterbeep-timestamp"],
                hook.body,
                hook.headers["afterbeep-signature"],
                time.time(),
            )
            event = json.loads(hook.body)
            assert event["type"] == "message.created"
            assert event["data"]["id"] == message["id"]
            assert event["data"]["audio_url"].startswith("http")
