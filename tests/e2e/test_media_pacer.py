"""A deposit through the whole service on each pacer (AFTERBEEP_MEDIA_PACER): the caller hears
the greeting and, right after it, the beep; the message holds what was said after the beep."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from afterbeep.audio.compare import compare
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.prompts import beep, prompt
from tests.conftest import Backend
from tests.e2e.rig import (
    BEEP_S,
    GREETING_S,
    api_of,
    deposit_runtime,
    python_caller,
    sent,
    settle,
    silence,
    speech,
)
from tests.fixtures.smtp import SmtpServer, smtp_server

pytestmark = pytest.mark.timeout(90)

AFTER_BEEP_MS = int((GREETING_S + BEEP_S) * 1000) + 600
FRAME = 160


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


@pytest.mark.parametrize("pacer", ["native", "python"])
async def test_a_deposit_on_each_pacer(sqlite: Backend, smtp: SmtpServer, pacer: str) -> None:
    async with deposit_runtime(sqlite, smtp.url(), media_pacer=pacer) as rt, api_of(rt) as api:
        assert rt.telephony is not None
        assert (rt.telephony.media.native_pacer is not None) == (pacer == "native")
        mailbox = await api.mailbox(skip_instructions=True)
        words = speech(2.0, seed=31)

        async def speak(call: SipCall) -> None:
            await call.play(silence(AFTER_BEEP_MS))
            await call.play(words)
            await call.play(silence(1500))

        caller = await python_caller(rt, speak)
        heard = caller.heard.pcm
        greeting = prompt("vm-greeting")
        padded = -(-len(greeting) // FRAME) * FRAME  # the sender pads the last frame
        at = compare(sent(beep()), heard, max_lag_ms=60_000).lag
        assert compare(sent(greeting), heard).lag == 0
        if pacer == "native":
            assert at == padded  # handed over as one sequence: no gap, ever
        else:  # the loop starts the beep: at once, or a whole number of frames later
            assert at >= padded and (at - padded) % FRAME == 0
        await settle(rt)
        [message] = await api.wait_messages(mailbox["id"], 1)
        result = compare(sent(words), await api.audio(message["id"]))
        assert result.snr_db >= 30 and result.missing_head_ms == 0
