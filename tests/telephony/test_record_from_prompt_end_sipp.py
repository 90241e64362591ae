"""A SIPp caller who talks over the greeting, then speaks 150 ms after the beep, while the event
loop is blocked for 400 ms right after the beep (a burst of new calls): the recording holds
all of what was said after the beep (compared with the audio sent) and nothing said before it,
on the native receive thread and on the Python receive path. Without `from_prompt_end` the
head of the speech is lost, which is what the check catches."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from afterbeep.audio.compare import compare
from afterbeep.audio.tones import speech_like
from afterbeep.metrics import REGISTRY
from afterbeep.telephony.call import CallSettings, SipCall
from afterbeep.telephony.interface import Audio, EndedBy, Recording, RecordingSink
from afterbeep.telephony.media import Codec
from afterbeep.telephony.prompts import beep
from afterbeep.telephony.scripts.deposit import DepositBox, DepositResult, Outcome, leave_message
from afterbeep.telephony.server import TelephonyServer, telephony_configs
from afterbeep.telephony.spool import Spool
from tests.fixtures.rtp_pcap import RtpStreamBuilder, g711_roundtrip, write_pcap
from tests.telephony.test_call_sipp import (
    RTP_RANGE,
    MemorySink,
    call_sipp,
    calls_finished,
    serve,
    sipp_bin,
)

__all__ = ["sipp_bin"]

pytestmark = pytest.mark.timeout(60)

RATE = 8000
GREETING = np.full(RATE, 1500, dtype=np.int16)  # 1 s
BEEP = np.full(RATE // 10, 3000, dtype=np.int16)  # 0.1 s: the prompts end 1.1 s after the answer
SPEAKS_AT = 1.25  # s after the answer (the ACK): 150 ms after the beep's end
BLOCKED = 0.4  # s: the loop stalls right after the beep


def _caller(codec: Codec, tmp_path: Path, speaks_at: float) -> Audio:
    """caller.pcap: 0.7 s of speech over the greeting, then from ``speaks_at`` 2 s of it (the
    message); what is said after the beep is returned."""
    over = speech_like(700, seed=3)
    said = speech_like(2000, seed=7)
    caller = np.zeros(int((speaks_at + 2.0) * RATE), dtype=np.int16)
    caller[: len(over)] = over
    caller[int(speaks_at * RATE) :] = said
    write_pcap(tmp_path / "caller.pcap", RtpStreamBuilder(codec, 20, 101).audio(caller).take())
    return said


async def _call(sipp: str, tmp_path: Path, server: Any, codec: Codec) -> None:
    await call_sipp(
        sipp,
        "media_uac_speak_after_beep.xml",
        tmp_path,
        server,
        ("codec_pt", codec.value),
        ("codec_name", codec.name),
        ("event_pt", 101),
        ("ptime", 20),
    )
    await calls_finished(server)


def _late_seconds() -> float:
    value = REGISTRY.get_sample_value("afterbeep_recording_start_late_seconds_sum")
    return value or 0.0


@pytest.mark.parametrize(
    ("native_receive", "from_prompt_end"),
    [(True, True), (False, True), (True, False)],
    ids=["native", "python-receive", "from-now"],
)
async def test_a_late_loop_keeps_the_words_said_right_after_the_beep(
    sipp_bin: str, tmp_path: Path, native_receive: bool, from_prompt_end: bool
) -> None:
    codec = Codec.PCMU
    said = _caller(codec, tmp_path, SPEAKS_AT)
    sink = MemorySink()
    seen: dict[str, Any] = {}
    late_before = _late_seconds()

    async def script(call: SipCall) -> None:
        await call.answer()
        await call.play((GREETING,), then=BEEP, from_answer=True)
        time.sleep(BLOCKED)  # noqa: ASYNC251 (on purpose: the event loop blocked, packets wait)
        seen["recording"] = await call.record(
            sink, max_seconds=20, silence_seconds=20, from_prompt_end=from_prompt_end
        )

    async with serve(script, native_receive=native_receive) as server:
        await _call(sipp_bin, tmp_path, server, codec)

    recording: Recording = seen["recording"]
    assert recording.ended_by is EndedBy.HANGUP
    result = compare(g711_roundtrip(codec, said), sink.pcm)
    print(f"native={native_receive} from_prompt_end={from_prompt_end}: {result}")
    if not from_prompt_end:
        assert result.missing_head_ms > 100  # the loss this test is about
        return
    assert result.missing_head_ms == 0
    assert result.snr_db >= 30
    assert 0 <= result.lag < 0.4 * RATE  # the message starts at the beep's end, ...
    assert not np.abs(sink.pcm[: result.lag]).any()  # ... without what was said over the greeting
    # observed in the metric (from the end of the beep's last frame, a frame after it left)
    assert _late_seconds() - late_before >= BLOCKED - 0.03


class _LateAfterTheBeep:
    """The deposit's view of a SipCall whose event loop blocks as the recording is set up."""

    def __init__(self, call: SipCall) -> None:
        self._call = call
        self.call_id, self.caller, self.callee = call.call_id, call.caller, call.callee
        self.caller_name = call.caller_name
        self.answer, self.play, self.hangup = call.answer, call.play, call.hangup
        self.collect_digits = call.collect_digits

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
        time.sleep(BLOCKED)  # noqa: ASYNC251 (on purpose: the event loop blocked, packets wait)
        return await self._call.record(
            sink,
            max_seconds=max_seconds,
            silence_seconds=silence_seconds,
            finish_on=finish_on,
            silence_threshold=silence_threshold,
            from_prompt_end=from_prompt_end,
        )


async def test_a_deposit_on_a_late_loop_stores_the_words_said_right_after_the_beep(
    sipp_bin: str, tmp_path: Path
) -> None:
    codec = Codec.PCMU
    greeting = np.full(RATE, 1500, dtype=np.int16)
    speaks_at = (len(greeting) + len(beep())) / RATE + 0.15
    said = _caller(codec, tmp_path, speaks_at)
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
        now = datetime.now(UTC)
        results.append(await leave_message(_LateAfterTheBeep(call), box, spool, now))

    async with serve(script) as server:
        await _call(sipp_bin, tmp_path, server, codec)

    [result] = results
    assert result.outcome is Outcome.SAVED and result.entry is not None
    stored = Spool.read_pcm(result.entry)
    compared = compare(g711_roundtrip(codec, said), stored)
    print(f"deposit: {compared}")
    assert compared.missing_head_ms == 0 and compared.snr_db >= 30
    assert 0 <= compared.lag < 0.4 * RATE and not np.abs(stored[: compared.lag]).any()


def _overflows() -> float:
    return REGISTRY.get_sample_value("afterbeep_recording_preroll_overflow_total") or 0.0


async def test_a_loop_later_than_the_pre_roll_keeps_the_newest_audio_and_counts_it(
    sipp_bin: str, tmp_path: Path
) -> None:
    codec = Codec.PCMU
    said = _caller(codec, tmp_path, SPEAKS_AT)
    sink = MemorySink()
    before = _overflows()

    async def script(call: SipCall) -> None:
        await call.answer()
        await call.play((GREETING,), then=BEEP, from_answer=True)
        time.sleep(BLOCKED)  # noqa: ASYNC251 (on purpose: the event loop blocked, packets wait)
        await call.record(sink, max_seconds=20, silence_seconds=20, from_prompt_end=True)

    ua_config, media_config = telephony_configs("127.0.0.1:0", None, *RTP_RANGE)
    settings = CallSettings(preroll_seconds=0.1)  # shorter than the loop's 400 ms stall
    server = TelephonyServer(ua_config, media_config, script, call_settings=settings)
    await server.start()
    try:
        await _call(sipp_bin, tmp_path, server, codec)
    finally:
        await server.stop(drain_timeout=2, hangup_timeout=2)

    assert _overflows() == before + 1
    result = compare(g711_roundtrip(codec, said), sink.pcm)
    print(f"past the pre-roll: {result}")
    # about (0.4 - 0.1 - 0.15) s of the speech's head lost, the rest whole from there on
    assert 50 <= result.missing_head_ms <= 250
    assert result.snr_db >= 30 and result.missing_tail_ms == 0
