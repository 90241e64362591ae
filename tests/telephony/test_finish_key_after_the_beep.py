"""A `#` pressed after the beep's end but before the script reaches `record()` (a lagging event
loop) ends the message as if it came during the recording: the deposit over the scripted fake
call. The SIP side of the same is in `test_finish_key_after_the_beep_sipp.py`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from afterbeep.telephony.fake import FakeCall
from afterbeep.telephony.interface import EndedBy
from afterbeep.telephony.media.preroll import PREROLL_SECONDS
from afterbeep.telephony.scripts.deposit import Outcome, leave_message
from afterbeep.telephony.spool import Spool
from tests.telephony.test_record_from_prompt_end import BEEP_END_MS, GREETING, box, speech, timeline

NOW = datetime(2026, 12, 7, 19, 0, tzinfo=UTC)
GREETING_MS = len(GREETING) // 8


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


@pytest.mark.parametrize(("late_ms", "key_after_ms"), [(700, 300), (2500, 1500), (1500, 1499)])
async def test_a_hash_after_the_beep_ends_the_message_however_late_the_script(
    spool: Spool, late_ms: int, key_after_ms: int
) -> None:
    said = speech(3.0, seed=11)
    caller = timeline((BEEP_END_MS, said), end_ms=BEEP_END_MS + 6000)
    key_at = BEEP_END_MS + key_after_ms
    call = FakeCall(caller_audio=caller, keys=[(key_at, "#")], late_ms=late_ms)
    result = await leave_message(call, box(min_message_seconds=0), spool, NOW)
    assert result.outcome is Outcome.SAVED and result.entry is not None
    assert result.entry.meta.ended_by == EndedBy.FINISH_KEY
    stored = Spool.read_pcm(result.entry)
    # the audio from the beep's end up to the key, none after it (the fake takes 20 ms frames)
    kept = (key_at - BEEP_END_MS) * 8 // 160 * 160
    assert np.array_equal(stored, caller[BEEP_END_MS * 8 : BEEP_END_MS * 8 + kept])
    assert not call._typed_ahead  # the key ended the message: it is not typed ahead as well


async def test_the_hash_that_skips_the_greeting_does_not_end_the_message(spool: Spool) -> None:
    said = speech(3.0, seed=12)
    skip_at = GREETING_MS // 2
    beep_end_ms = BEEP_END_MS - (GREETING_MS - skip_at)
    caller = timeline((beep_end_ms, said), end_ms=beep_end_ms + 6000)
    call = FakeCall(
        caller_audio=caller, keys=[(skip_at, "#")], hangup_at_ms=beep_end_ms + 4000, late_ms=700
    )
    result = await leave_message(call, box(), spool, NOW)
    assert result.entry is not None and result.entry.meta.ended_by == EndedBy.HANGUP
    beep_end = skip_at * 8 + 1 + (BEEP_END_MS - GREETING_MS) * 8  # the fake cuts after the key
    stored = Spool.read_pcm(result.entry)
    assert len(stored) == 4000 * 8  # to the hang-up, in the fake's 20 ms frames
    assert np.array_equal(stored, caller[beep_end : beep_end + len(stored)])


async def test_a_hash_pressed_during_the_beep_is_not_the_end_of_the_message(spool: Spool) -> None:
    caller = timeline((BEEP_END_MS, speech(3.0, seed=13)), end_ms=BEEP_END_MS + 6000)
    during_beep = BEEP_END_MS - 20
    call = FakeCall(
        caller_audio=caller,
        keys=[(during_beep, "#")],
        hangup_at_ms=BEEP_END_MS + 4000,
        late_ms=700,
    )
    result = await leave_message(call, box(), spool, NOW)
    assert result.entry is not None and result.entry.meta.ended_by == EndedBy.HANGUP
    assert len(Spool.read_pcm(result.entry)) == 4000 * 8


async def test_a_hash_before_the_audio_kept_ends_an_empty_message(spool: Spool) -> None:
    """Later than the pre-roll: the key still ends the message, the audio before it is lost."""
    late_ms = int(PREROLL_SECONDS * 1000) + 1000
    caller = timeline((BEEP_END_MS, speech(6.0, seed=14)), end_ms=BEEP_END_MS + late_ms + 2000)
    call = FakeCall(caller_audio=caller, keys=[(BEEP_END_MS + 500, "#")], late_ms=late_ms)
    result = await leave_message(call, box(), spool, NOW)
    assert result.outcome is Outcome.TOO_SHORT


async def test_keys_pressed_while_a_late_script_catches_up_are_typed_ahead() -> None:
    """As on a SipCall: a menu that plays, then (late) collects, gets the keys of the gap."""
    call = FakeCall(keys=[(1100, "4"), (1300, "2"), (1400, "#")], late_ms=800)
    await call.play(np.zeros(8000, dtype=np.int16), interrupt_on="")
    assert await call.collect_digits(5, timeout=1) == "42"
