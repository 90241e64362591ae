"""A SIPp caller speaks 150 ms after the beep, presses `#` 400 ms later and goes on talking,
while the event loop is blocked across that moment (a burst of new calls): the recording ends
by the key, holds what was said before it and nothing of what came after, and the key is not
left typed ahead. The loop is blocked either after `play()` returned (the key waits as typed
ahead) or before it did (the key may reach the player of a prompt already over). Before, the
key was typed ahead and the message ran on: the checks below fail on that. Last, the same
through the deposit script, to the spool."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from afterbeep.audio.compare import compare
from afterbeep.audio.tones import speech_like
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.interface import Audio, EndedBy, Recording, RecordingSink
from afterbeep.telephony.media import Codec
from afterbeep.telephony.prompts import beep
from afterbeep.telephony.scripts.deposit import DepositBox, DepositResult, Outcome, leave_message
from afterbeep.telephony.spool import Spool
from tests.fixtures.rtp_pcap import RtpStreamBuilder, g711_roundtrip, write_pcap
from tests.telephony.test_call_sipp import MemorySink, call_sipp, calls_finished, serve, sipp_bin
from tests.telephony.test_record_from_prompt_end_sipp import _LateAfterTheBeep

__all__ = ["sipp_bin"]

pytestmark = pytest.mark.timeout(60)

RATE = 8000
GREETING = np.full(RATE, 1500, dtype=np.int16)  # 1 s
BEEP = np.full(RATE // 10, 3000, dtype=np.int16)  # the prompts end 1.1 s after the answer
SPEAKS_AT = 1.25  # s after the answer: 150 ms after the beep's end
SAID = 0.4  # s of speech, then `#` (1.65 s after the answer), then more speech
BLOCKED = 0.8  # s


def _caller(codec: Codec, tmp_path: Path) -> tuple[Audio, Audio]:
    """caller.pcap: speech over the greeting, the message, `#`, more speech."""
    over = speech_like(700, seed=3)
    said = speech_like(round(SAID * 1000), seed=7)
    after = speech_like(1000, seed=9)
    head = np.zeros(int(SPEAKS_AT * RATE), dtype=np.int16)
    head[: len(over)] = over
    stream = RtpStreamBuilder(codec, 20, 101)
    stream.audio(np.concatenate([head, said])).digit("#").audio(after)
    write_pcap(tmp_path / "caller.pcap", stream.take())
    return said, after


@pytest.mark.parametrize("blocked", ["after-play", "during-play"])
async def test_a_hash_pressed_while_the_loop_lags_after_the_beep_ends_the_message(
    sipp_bin: str, tmp_path: Path, blocked: str
) -> None:
    codec = Codec.PCMU
    said, after = _caller(codec, tmp_path)
    sink = MemorySink()
    seen: dict[str, Any] = {}

    async def script(call: SipCall) -> None:
        await call.answer()
        if blocked == "during-play":  # 0.1 s before the beep ends, past the `#`
            asyncio.get_running_loop().call_later(1.0, time.sleep, BLOCKED)
        seen["key"] = await call.play((GREETING,), interrupt_on="#", then=BEEP, from_answer=True)
        if blocked == "after-play":
            time.sleep(BLOCKED)  # noqa: ASYNC251 (on purpose: the event loop blocked, packets wait)
            await asyncio.sleep(0.1)  # the loop takes the packets (the key) before record()
        seen["recording"] = await call.record(
            sink, max_seconds=20, silence_seconds=20, finish_on="#", from_prompt_end=True
        )
        seen["typed"] = await call.collect_digits(1, timeout=0)
        async with asyncio.timeout(10):
            await call.ended.wait()

    async with serve(script) as server:
        await call_sipp(
            sipp_bin,
            "media_uac_speak_after_beep.xml",
            tmp_path,
            server,
            ("codec_pt", codec.value),
            ("codec_name", codec.name),
            ("event_pt", 101),
            ("ptime", 20),
        )
        await calls_finished(server)

    recording: Recording = seen["recording"]
    # after the prompt, the `#` interrupted nothing (play() returns it if it got there first)
    assert seen["key"] is None or blocked == "during-play"
    assert recording.ended_by is EndedBy.FINISH_KEY
    assert seen["typed"] == ""
    result = compare(g711_roundtrip(codec, said), sink.pcm)
    print(f"{blocked}: {result}, {len(sink.pcm)} samples")
    assert result.missing_head_ms == 0 and result.missing_tail_ms == 0 and result.snr_db >= 30
    assert 0 <= result.lag < 0.4 * RATE  # from the beep's end ...
    assert len(sink.pcm) - result.lag - len(said) <= 160  # ... up to the key, nothing after it
    assert compare(g711_roundtrip(codec, after), sink.pcm).snr_db < 10


class _CatchingUpAfterTheBeep(_LateAfterTheBeep):
    """The deposit's view of a SipCall whose loop stalls after the beep, then takes the
    packets that waited (the key among them) before the recording is set up."""

    async def record(
        self,
        sink: RecordingSink,
        *,
        max_seconds: float,
        silence_seconds: float,
        finish_on: str = "#",
        silence_threshold: int = 200,
        from_prompt_end: bool = False,
    ) -> Recording:
        time.sleep(DEPOSIT_BLOCKED)  # noqa: ASYNC251 (on purpose: the event loop blocked)
        await asyncio.sleep(0.1)
        return await self._call.record(
            sink,
            max_seconds=max_seconds,
            silence_seconds=silence_seconds,
            finish_on=finish_on,
            silence_threshold=silence_threshold,
            from_prompt_end=from_prompt_end,
        )


DEPOSIT_BLOCKED = 1.6  # s: past the key, 1.35 s after the beep


async def test_a_deposit_ends_by_a_hash_pressed_before_the_recording_was_set_up(
    sipp_bin: str, tmp_path: Path
) -> None:
    codec = Codec.PCMU
    greeting = np.full(RATE, 1500, dtype=np.int16)
    beep_end = (len(greeting) + len(beep())) / RATE
    said = speech_like(1200, seed=7)
    head = np.zeros(int((beep_end + 0.15) * RATE), dtype=np.int16)
    stream = RtpStreamBuilder(codec, 20, 101)
    stream.audio(np.concatenate([head, said])).digit("#").audio(speech_like(1500, seed=9))
    write_pcap(tmp_path / "caller.pcap", stream.take())
    spool = Spool(tmp_path / "spool")
    box = DepositBox(
        account_id="acc_01jf18ah3jeb5w6dfp27sgjsbt",
        mailbox_id="vm_01jg8asp59ps9rtt7azhrhvcre",
        language="en",
        greeting=greeting,
        skip_instructions=True,
        max_message_seconds=60,
        min_message_seconds=1,
        silence_seconds=10,
        silence_threshold=200,
        full=False,
    )
    results: list[DepositResult] = []

    async def script(call: SipCall) -> None:
        results.append(
            await leave_message(_CatchingUpAfterTheBeep(call), box, spool, datetime.now(UTC))
        )

    async with serve(script) as server:
        await call_sipp(sipp_bin, "deposit_uac_until_bye.xml", tmp_path, server)
        await calls_finished(server)

    [result] = results
    assert result.outcome is Outcome.SAVED and result.entry is not None
    assert result.entry.meta.ended_by == EndedBy.FINISH_KEY
    stored = Spool.read_pcm(result.entry)
    compared = compare(g711_roundtrip(codec, said), stored)
    print(f"deposit: {compared}, {len(stored)} samples")
    assert compared.missing_head_ms == 0 and compared.missing_tail_ms == 0
    assert compared.snr_db >= 30
    assert len(stored) - compared.lag - len(said) <= 160  # nothing after the key
