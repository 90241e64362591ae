"""A message starts at the beep's end on the media clock, not when the script gets to `record()`:
the deposit over the scripted fake call with a script that runs late after the beep (a lagging
event loop). The SIP side of the same is in `test_record_from_prompt_end_sipp.py`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from afterbeep.audio.compare import compare
from afterbeep.telephony.fake import FakeCall
from afterbeep.telephony.interface import Audio, EndedBy
from afterbeep.telephony.media.preroll import PREROLL_SECONDS
from afterbeep.telephony.prompts import beep
from afterbeep.telephony.scripts.deposit import DepositBox, Outcome, leave_message
from afterbeep.telephony.spool import Spool

NOW = datetime(2026, 12, 7, 19, 0, tzinfo=UTC)
GREETING = np.full(2 * 8000, 1000, dtype=np.int16)
BEEP_END_MS = (len(GREETING) + len(beep())) // 8
assert (len(GREETING) + len(beep())) % 8 == 0


def speech(seconds: float, seed: int) -> Audio:
    rng = np.random.default_rng(seed)
    n = int(seconds * 8000)
    envelope = 0.55 + 0.45 * np.sin(np.arange(n) * 2 * np.pi * 4 / 8000)
    return (rng.normal(0, 3000, n) * envelope).clip(-32768, 32767).astype(np.int16)


def box(**overrides: object) -> DepositBox:
    values: dict[str, object] = dict(
        account_id="acc_01jf18ah3jeb5w6dfp27sgjsbt",
        mailbox_id="vm_01jg8asp59ps9rtt7azhrhvcre",
        language="en",
        greeting=GREETING,
        skip_instructions=True,
        max_message_seconds=180,
        min_message_seconds=1,
        silence_seconds=8,
        silence_threshold=200,
        full=False,
    )
    values.update(overrides)
    return DepositBox(**values)  # type: ignore[arg-type]


def timeline(*parts: tuple[int, Audio], end_ms: int) -> Audio:
    """The caller's audio from the answer: each part at its ms offset, zeros elsewhere."""
    out = np.zeros(end_ms * 8, dtype=np.int16)
    for at_ms, audio in parts:
        out[at_ms * 8 : at_ms * 8 + len(audio)] = audio
    return out


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


@pytest.mark.parametrize("late_ms", [0, 400, 1500])
async def test_words_right_after_the_beep_are_kept_however_late_the_script(
    spool: Spool, late_ms: int
) -> None:
    over = speech(1.0, seed=2)  # talking over the greeting: not part of the message
    said = speech(3.0, seed=1)  # from 100 ms after the beep
    caller = timeline((500, over), (BEEP_END_MS + 100, said), end_ms=BEEP_END_MS + 6000)
    call = FakeCall(caller_audio=caller, hangup_at_ms=BEEP_END_MS + 5000, late_ms=late_ms)
    result = await leave_message(call, box(), spool, NOW)
    assert result.outcome is Outcome.SAVED and result.entry is not None
    stored = Spool.read_pcm(result.entry)
    assert len(stored) == 5000 * 8  # from the beep's end to the hang-up
    assert np.array_equal(stored, caller[BEEP_END_MS * 8 : (BEEP_END_MS + 5000) * 8])
    assert not stored[: 100 * 8].any()  # nothing of what was said over the greeting
    assert compare(said, stored).missing_head_ms == 0


async def test_the_maximum_length_counts_from_the_beep(spool: Spool) -> None:
    caller = timeline((BEEP_END_MS, speech(20.0, seed=3)), end_ms=BEEP_END_MS + 20_000)
    call = FakeCall(caller_audio=caller, late_ms=700)
    result = await leave_message(call, box(max_message_seconds=10), spool, NOW)
    assert result.entry is not None and result.entry.meta.ended_by == EndedBy.MAX_LENGTH
    stored = Spool.read_pcm(result.entry)
    assert np.array_equal(stored, caller[BEEP_END_MS * 8 : (BEEP_END_MS + 10_000) * 8])
    # the closing prompt follows the 10 s after the beep, not 10 s after the late start
    closing_at = max(start for start, _ in call.played)
    assert closing_at == (BEEP_END_MS + 10_000) * 8


async def test_a_script_later_than_the_pre_roll_starts_from_the_oldest_audio_kept(
    spool: Spool,
) -> None:
    late_ms = int(PREROLL_SECONDS * 1000) + 500
    said = speech(6.0, seed=4)
    caller = timeline((BEEP_END_MS, said), end_ms=BEEP_END_MS + 8000)
    call = FakeCall(caller_audio=caller, hangup_at_ms=BEEP_END_MS + 7000, late_ms=late_ms)
    result = await leave_message(call, box(), spool, NOW)
    assert result.entry is not None
    stored = Spool.read_pcm(result.entry)
    assert np.array_equal(stored, caller[(BEEP_END_MS + 500) * 8 : (BEEP_END_MS + 7000) * 8])


async def test_record_without_the_flag_starts_when_the_script_gets_there() -> None:
    """Other apps (a greeting recorded in the phone menu) keep "from now"; and this is what the
    deposit lost before (the check above can fail)."""
    caller = timeline((1000, speech(2.0, seed=5)), end_ms=5000)
    call = FakeCall(caller_audio=caller, hangup_at_ms=4000, late_ms=400)

    class Sink:
        pcm: list[Audio] = []

        def write(self, pcm: Audio) -> None:
            self.pcm.append(pcm)

    await call.play(np.zeros(8000, dtype=np.int16))
    sink = Sink()
    recording = await call.record(sink, max_seconds=10, silence_seconds=10)
    assert recording.samples == (4000 - 1400) * 8
    assert np.array_equal(np.concatenate(sink.pcm), caller[1400 * 8 : 4000 * 8])
