"""Drops whose detector listens to the words of the first turn (AFTERBEEP_AMD_WORDS on, the
bundled tiny.en loaded once for the module), over real SIP on 127.0.0.1:

- a SIPp line where a person says one "Hello?" then waits in silence: the drop hangs up
  (`human_answered`) and the message is never played;
- a SIPp box whose greeting is "Leave a message." with no beep, then quiet: the drop plays
  the message and hangs up after it (`left_voicemail`, decided by the words);
- the same two through a line run by the test (a TelephonyServer that records every sample
  it receives): the person receives nothing louder than comfort silence, the box the whole
  message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest

from afterbeep.app import Runtime
from afterbeep.asr.turns import shared_engine
from afterbeep.audio.amd import AmdSettings
from afterbeep.audio.compare import compare
from afterbeep.audio.tones import silence
from afterbeep.domain.amd_words import WordsSettings
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.media import Codec
from tests.conftest import Backend
from tests.drops.support import attempts_of, row_of
from tests.drops.test_e2e import DROP_MESSAGE, Line, _pcm, a_drop, answer_with, callee
from tests.drops.test_quiet_box import _listening
from tests.e2e.rig import WAIT, api_of, sent
from tests.fixtures.rtp_pcap import RtpStreamBuilder, write_pcap
from tests.ringless.test_delivery import NOON_EDT, FakeClock, account_id_of, runtime_of
from tests.sip import conftest as sip_rig
from tests.sip.conftest import SippResult, free_udp_port, run_sipp

pytestmark = [
    pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True),
    pytest.mark.timeout(150),
]

sipp_bin = sip_rig.sipp_bin

HELLO_THEN_WAIT = np.concatenate([silence(300), _pcm("Hello?")])
SHORT_GREETING = np.concatenate([silence(300), _pcm("Please leave a message.")])


@pytest.fixture(scope="module", autouse=True)
def tiny_en_loaded() -> None:
    """Load the model once for the module (the runtimes share `shared_engine`)."""
    shared_engine(None).check("en")


@asynccontextmanager
async def words_sender(backend: Backend) -> AsyncIterator[tuple[Runtime, str]]:
    async with (
        runtime_of(backend, FakeClock(NOON_EDT), sip=True, amd_words=True, amd_language="en") as rt,
        api_of(rt) as api,
    ):
        assert rt.amd_words is None  # built with the delivery worker
        yield rt, await account_id_of(rt, api)


async def _drop_into_sipp(backend: Backend, sipp: str, tmp_path: Path, said: np.ndarray) -> tuple[object, SippResult, int]:
    builder = RtpStreamBuilder(Codec.PCMU, 20, 101)
    write_pcap(tmp_path / "greeting.pcap", builder.audio(said).take())
    port = free_udp_port()
    line = asyncio.ensure_future(
        run_sipp(
            sipp, "drop_uas_greeting_then_quiet.xml", tmp_path, remote=None, local_port=port,
            timeout=WAIT * 3, extra=("-mp", str(free_udp_port())),
        )
    )
    try:
        await _listening(port)
        async with words_sender(backend) as (rt, account):
            drop_id = await a_drop(rt, account, port, "single")
            async with asyncio.timeout(WAIT + 40):
                assert await rt.delivery().run_once() == 1
            assert rt.amd_words is not None
            transcribed = rt.amd_words.submitted
            row = await row_of(rt, drop_id)
            (attempt,) = await attempts_of(rt, drop_id)
        result = await line
    finally:
        if not line.done():
            line.cancel()
            await asyncio.gather(line, return_exceptions=True)
    assert result.returncode == 0, result.output  # our BYE came, and was answered
    assert attempt.sip_code == 200
    return row, result, transcribed


async def test_over_sipp_one_hello_then_silence_is_hung_up_on_and_hears_nothing(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    row, _result, transcribed = await _drop_into_sipp(backend, sipp_bin, tmp_path, HELLO_THEN_WAIT)
    assert (row.status, row.answered_by) == ("human_answered", "human"), row  # type: ignore[attr-defined]
    assert transcribed == 1
    # decided by the silence after the one hello (with its words, or by timing if they were
    # late on a busy machine). detection_ms is media time (frames fed to the detector), so the
    # bounds hold however slow the machine: not before the silence a person's hello needs, not
    # after the longest the words are waited for
    detection_ms = row.detection_ms  # type: ignore[attr-defined]
    assert detection_ms is not None, row
    hello_end_ms = len(HELLO_THEN_WAIT) // 8
    words, timing = WordsSettings(), AmdSettings()
    assert hello_end_ms + words.human_silence_ms - 100 <= detection_ms, row
    assert detection_ms <= hello_end_ms + max(words.wait_ms, timing.human_long_silence_ms) + 200, row


async def test_over_sipp_a_short_greeting_without_beep_gets_the_message(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    row, _result, transcribed = await _drop_into_sipp(backend, sipp_bin, tmp_path, SHORT_GREETING)
    assert (row.status, row.answered_by) == ("left_voicemail", "machine_end_silence"), row  # type: ignore[attr-defined]
    assert transcribed == 1


async def person_then_waits(call: SipCall, line: Line) -> None:
    await answer_with(call, line, HELLO_THEN_WAIT)


async def short_greeting_box(call: SipCall, line: Line) -> None:
    await answer_with(call, line, SHORT_GREETING)


async def test_a_person_who_says_one_hello_then_waits_receives_not_one_sound(backend: Backend) -> None:
    async with callee(person_then_waits) as line_owner, words_sender(backend) as (rt, account):
        drop_id = await a_drop(rt, account, line_owner.port, "single")
        async with asyncio.timeout(WAIT + 40):
            assert await rt.delivery().run_once() == 1
        await line_owner.idle()
        row = await row_of(rt, drop_id)
        assert (row.status, row.answered_by) == ("human_answered", "human"), row
        (line,) = line_owner.lines
        assert line.ended == "remote"
        received = line.received
        assert received.size == 0 or int(np.abs(received.astype(np.int32)).max()) < 100


async def test_a_box_with_a_short_greeting_and_no_beep_receives_the_whole_message(backend: Backend) -> None:
    async with callee(short_greeting_box) as line_owner, words_sender(backend) as (rt, account):
        drop_id = await a_drop(rt, account, line_owner.port, "single")
        async with asyncio.timeout(WAIT + 40):
            assert await rt.delivery().run_once() == 1
        await line_owner.idle()
        row = await row_of(rt, drop_id)
        assert (row.status, row.answered_by) == ("left_voicemail", "machine_end_silence"), row
        (line,) = line_owner.lines
        assert line.greeting_done is not None
        result = compare(sent(DROP_MESSAGE), line.received_since(line.greeting_done))
        assert result.snr_db > 30, result
        assert result.missing_head_ms < 40 and result.missing_tail_ms < 40, result
