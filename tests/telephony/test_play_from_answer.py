"""`SipCall.play(..., from_answer=True)` through a real SIP dialog (SIPp): a sequence handed to the
media late is timed from the 200 OK, what was due is skipped and observed in
`afterbeep_prompt_skipped_seconds`; without it nothing is skipped."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from afterbeep.metrics import PROMPT_SKIPPED
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.media.sender import ANCHOR_WINDOW
from tests.sip import conftest as sip_rig
from tests.telephony.test_server import serve, sipp_call

pytestmark = pytest.mark.timeout(60)

sipp_bin = sip_rig.sipp_bin

RATE = 8000


def _skipped() -> tuple[float, float]:
    """(count, sum) of the histogram so far."""
    values = {s.name: s.value for m in PROMPT_SKIPPED.collect() for s in m.samples}
    return values["afterbeep_prompt_skipped_seconds_count"], values[
        "afterbeep_prompt_skipped_seconds_sum"
    ]


def _tone(seconds: float) -> npt.NDArray[np.int16]:
    audio = np.full(int(RATE * seconds), 2000, dtype=np.int16)
    audio.setflags(write=False)
    return audio


@pytest.mark.parametrize("from_answer", [True, False])
async def test_a_late_sequence_is_timed_from_the_answer(
    sipp_bin: str, tmp_path: Path, from_answer: bool
) -> None:
    greeting, instructions, beep = _tone(0.5), _tone(0.5), _tone(0.1)

    began: list[float] = []

    async def late_deposit(call: SipCall) -> None:
        await call.answer()
        answered = time.monotonic()
        await asyncio.sleep(0.3)  # the loop's delay between the 200 OK and the play
        began.append(time.monotonic() - answered)
        await call.play((greeting, instructions), then=beep, from_answer=from_answer)
        await call.hangup()

    count, total = _skipped()
    async with serve(late_deposit) as server:
        result = await sipp_call(sipp_bin, "media_uac_wait_bye.xml", tmp_path, server)
        assert result.returncode == 0, result.output
    after_count, after_total = _skipped()
    if from_answer:
        assert after_count == count + 1
        if began[0] < ANCHOR_WINDOW - 0.1:  # else a starved machine: started late, nothing cut
            assert 0.3 <= after_total - total <= ANCHOR_WINDOW  # at least the delay, whole frames
    else:
        assert (after_count, after_total) == (count, total)
