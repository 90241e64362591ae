"""The deposit script over a scripted fake call: every way a message can end."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from afterbeep.audio.compare import compare
from afterbeep.domain.say import LANGUAGES, say_digits
from afterbeep.telephony.fake import FakeCall
from afterbeep.telephony.interface import Audio, EndedBy, Recording, RecordingSink
from afterbeep.telephony.prompts import PROMPTS_DIR, beep, prompt, sequence
from afterbeep.telephony.scripts.deposit import (
    PERSON_AT_EXTENSION,
    DepositBox,
    Outcome,
    leave_message,
)
from afterbeep.telephony.spool import Spool, SpoolWriter

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
GREETING_MS = len(prompt("vm-greeting")) // 8
INSTRUCTIONS_MS = len(prompt("vm-instructions")) // 8
BEEP_MS = len(beep()) // 8


def speech(seconds: float, seed: int = 1) -> Audio:
    """A speech-like test signal: noise shaped by a 4 Hz syllable envelope."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 8000)
    envelope = 0.55 + 0.45 * np.sin(np.arange(n) * 2 * np.pi * 4 / 8000)
    return (rng.normal(0, 3000, n) * envelope).clip(-32768, 32767).astype(np.int16)


def box(**overrides: object) -> DepositBox:
    values: dict[str, object] = dict(
        account_id="acc_01jf18ah3jeb5w6dfp27sgjsbt",
        mailbox_id="vm_01jg8asp59ps9rtt7azhrhvcre",
        language="en",
        greeting=None,
        skip_instructions=False,
        max_message_seconds=180,
        min_message_seconds=2,
        silence_seconds=8,
        silence_threshold=200,
        full=False,
    )
    values.update(overrides)
    return DepositBox(**values)  # type: ignore[arg-type]


def caller_timeline(speech_audio: Audio, after_ms: int) -> Audio:
    return np.concatenate([np.zeros(after_ms * 8, dtype=np.int16), speech_audio])


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


async def test_hash_ends_the_message_and_keeps_all_of_it(spool: Spool) -> None:
    beep_end = GREETING_MS + INSTRUCTIONS_MS + BEEP_MS
    said = speech(4)
    call = FakeCall(caller_audio=caller_timeline(said, beep_end), keys=[(beep_end + 5000, "#")])
    result = await leave_message(call, box(), spool, NOW)
    assert result.outcome is Outcome.SAVED and result.entry is not None
    assert result.entry.meta.ended_by == EndedBy.FINISH_KEY
    stored = Spool.read_pcm(result.entry)
    assert compare(said, stored).snr_db > 60
    assert abs(len(stored) - 5000 * 8) <= 160  # untrimmed: one second of silence after speech kept
    heard = call.heard()
    assert compare(prompt("vm-saved"), heard[-len(prompt("vm-saved")) :]).snr_db > 60
    assert call.hung_up_by_us


async def test_hang_up_saves_trimmed_message_without_closing_prompt(spool: Spool) -> None:
    beep_end = GREETING_MS + INSTRUCTIONS_MS + BEEP_MS
    said = speech(3)
    call = FakeCall(caller_audio=caller_timeline(said, beep_end), hangup_at_ms=beep_end + 6000)
    result = await leave_message(call, box(), spool, NOW)
    assert result.outcome is Outcome.SAVED and result.entry is not None
    assert result.entry.meta.ended_by == EndedBy.HANGUP
    assert result.entry.pcm_path.stat().st_size // 2 == 6000 * 8  # the spool keeps everything
    assert not call.hung_up_by_us


async def test_max_length_plays_the_limit_prompt(spool: Spool) -> None:
    beep_end = GREETING_MS + INSTRUCTIONS_MS + BEEP_MS
    call = FakeCall(caller_audio=caller_timeline(speech(30), beep_end))
    result = await leave_message(call, box(max_message_seconds=10), spool, NOW)
    assert result.entry is not None and result.entry.meta.ended_by == EndedBy.MAX_LENGTH
    assert len(Spool.read_pcm(result.entry)) == 10 * 8000
    limit = prompt("vm-max-length")
    assert compare(limit, call.heard()[-len(limit) :]).snr_db > 60


async def test_silence_ends_the_message(spool: Spool) -> None:
    beep_end = GREETING_MS + INSTRUCTIONS_MS + BEEP_MS
    call = FakeCall(caller_audio=caller_timeline(speech(3), beep_end))
    result = await leave_message(call, box(silence_seconds=5), spool, NOW)
    assert result.entry is not None and result.entry.meta.ended_by == EndedBy.SILENCE
    assert len(Spool.read_pcm(result.entry)) == pytest.approx(8 * 8000, abs=160)


async def test_too_short_message_is_discarded(spool: Spool) -> None:
    beep_end = GREETING_MS + INSTRUCTIONS_MS + BEEP_MS
    call = FakeCall(
        caller_audio=caller_timeline(speech(0.8), beep_end), hangup_at_ms=beep_end + 3000
    )
    result = await leave_message(call, box(min_message_seconds=2), spool, NOW)
    assert result.outcome is Outcome.TOO_SHORT
    assert spool.entries() == []


async def test_full_mailbox_records_nothing(spool: Spool) -> None:
    call = FakeCall(caller_audio=speech(10))
    result = await leave_message(call, box(full=True), spool, NOW)
    assert result.outcome is Outcome.MAILBOX_FULL
    assert spool.entries() == []
    full = prompt("vm-mailbox-full")
    assert compare(full, call.heard()).snr_db > 60 and call.hung_up_by_us


async def test_hash_during_greeting_skips_to_the_beep(spool: Spool) -> None:
    custom = speech(6, seed=7)
    call = FakeCall(caller_audio=speech(20, seed=3), keys=[(1000, "#"), (6000, "#")])
    result = await leave_message(call, box(greeting=custom), spool, NOW)
    assert result.outcome is Outcome.SAVED
    starts = [start // 8 for start, _ in call.played]
    assert starts[:2] == [0, 1000]  # greeting cut at 1 s, beep right after, no instructions
    assert compare(beep(), call.played[1][1]).snr_db > 60


async def test_skip_instructions(spool: Spool) -> None:
    call = FakeCall(caller_audio=speech(20), keys=[(GREETING_MS + BEEP_MS + 3000, "#")])
    await leave_message(call, box(skip_instructions=True), spool, NOW)
    assert len(call.played[0][1]) == len(prompt("vm-greeting"))
    assert compare(beep(), call.played[1][1]).snr_db > 60


async def test_hang_up_during_greeting_leaves_nothing(spool: Spool) -> None:
    call = FakeCall(caller_audio=speech(5), hangup_at_ms=1500)
    result = await leave_message(call, box(), spool, NOW)
    assert result.outcome is Outcome.NO_MESSAGE and spool.entries() == []


class _StuckInGreeting(FakeCall):
    """A call whose greeting never ends (until the script is cancelled)."""

    async def play(
        self,
        audio: Audio | tuple[Audio, ...],
        interrupt_on: str = "",
        then: Audio | None = None,
        from_answer: bool = False,
    ) -> str | None:
        await asyncio.Event().wait()
        return None


async def test_a_script_cancelled_during_the_greeting_leaves_nothing(spool: Spool) -> None:
    call = _StuckInGreeting(caller_audio=speech(5))
    task = asyncio.create_task(leave_message(call, box(), spool, NOW))
    async with asyncio.timeout(20):
        while not spool.entries():  # noqa: ASYNC110  (the entry is created on a thread)
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        while spool.entries():  # noqa: ASYNC110  (removed once its creation is done)
            await asyncio.sleep(0.01)
    assert list(spool.directory.iterdir()) == []


class _NoticesRecording(FakeCall):
    """A fake call that tells when the script starts recording (a SIP call drops what the
    caller says before that)."""

    recording: asyncio.Event

    async def record(self, sink: RecordingSink, **limits: Any) -> Recording:
        self.recording.set()
        return await super().record(sink, **limits)


async def test_recording_starts_at_the_beep_even_if_the_spool_entry_is_late(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    create = SpoolWriter.create

    def slow_create(writer: SpoolWriter) -> None:
        gate.wait(20)
        create(writer)

    monkeypatch.setattr(SpoolWriter, "create", slow_create)
    beep_end = GREETING_MS + INSTRUCTIONS_MS + BEEP_MS
    said = speech(4)
    call = _NoticesRecording(
        caller_audio=caller_timeline(said, beep_end), keys=[(beep_end + 5000, "#")]
    )
    call.recording = asyncio.Event()
    task = asyncio.create_task(leave_message(call, box(), spool, NOW))
    try:
        async with asyncio.timeout(10):
            await call.recording.wait()  # while the entry is still being created
        assert spool.entries() == []
    finally:
        gate.set()
    result = await task
    assert result.outcome is Outcome.SAVED and result.entry is not None
    assert compare(said, Spool.read_pcm(result.entry)).snr_db > 60


@pytest.mark.parametrize(("busy", "after"), [(False, "vm-unavailable-after-name"), (True, "vm-busy-after-name")])
async def test_no_greeting_the_system_one_says_the_recorded_name(
    spool: Spool, busy: bool, after: str
) -> None:
    name = speech(0.9, seed=7)
    expected = np.concatenate([name, prompt(after)])
    call = FakeCall(hangup_at_ms=len(expected) // 8 + 50)
    await leave_message(call, box(name=name, busy=busy, skip_instructions=True), spool, NOW)
    [(start, first)] = call.played[:1]
    assert start == 0 and np.array_equal(first, expected)

    call = FakeCall(hangup_at_ms=200)
    greeting = speech(0.5, seed=8)
    await leave_message(call, box(name=name, greeting=greeting), spool, NOW)
    assert np.array_equal(call.played[0][1], greeting[: len(call.played[0][1])])  # a greeting wins


@pytest.mark.parametrize(
    ("busy", "after"), [(False, "vm-unavailable-after-name"), (True, "vm-busy-after-name")]
)
async def test_no_greeting_nor_name_the_system_one_reads_the_extension(
    spool: Spool, busy: bool, after: str
) -> None:
    names = [PERSON_AT_EXTENSION, "say-2", "say-0", "say-1", after]
    expected = np.concatenate([prompt(name) for name in names])
    call = FakeCall(hangup_at_ms=len(expected) // 8 + BEEP_MS + 50)
    await leave_message(call, box(extension="201", busy=busy, skip_instructions=True), spool, NOW)
    [(start, first)] = call.played[:1]
    assert start == 0 and np.array_equal(first, expected)
    assert np.array_equal(call.played[1][1], beep())  # then the beep, as after any greeting

    # in the mailbox's language; a recorded name or a greeting wins over the extension
    call = FakeCall(hangup_at_ms=200)
    await leave_message(call, box(extension="201", language="de"), spool, NOW)
    said = sequence(
        [PERSON_AT_EXTENSION, *say_digits("201", "de"), "vm-unavailable-after-name"], "de"
    )
    assert np.array_equal(call.played[0][1], said[: len(call.played[0][1])])
    name = speech(0.9, seed=7)
    call = FakeCall(hangup_at_ms=200)
    await leave_message(call, box(extension="201", name=name), spool, NOW)
    assert np.array_equal(call.played[0][1], name[: len(call.played[0][1])])
    greeting = speech(0.5, seed=8)
    call = FakeCall(hangup_at_ms=200)
    await leave_message(call, box(extension="201", greeting=greeting), spool, NOW)
    assert np.array_equal(call.played[0][1], greeting[: len(call.played[0][1])])


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_extension_greeting_is_recorded_in_every_language(language: str) -> None:
    for name in (PERSON_AT_EXTENSION, "vm-unavailable-after-name", "vm-busy-after-name"):
        assert (PROMPTS_DIR / language / f"{name}.wav").is_file()
    assert len(prompt(PERSON_AT_EXTENSION, language)) > 8000 * 0.5
