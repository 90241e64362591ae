"""SipCall against SIPp callers on 127.0.0.1: recording, keys, playout, interruption, hang-ups.

The caller's audio and keys are pcap files made by tests.fixtures.rtp_pcap and replayed by
SIPp (``play_pcap_audio``); what the service plays is caught by an RtpCapture socket named in
the caller's SDP. Scripts run in a real TelephonyServer.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from afterbeep.audio.compare import compare
from afterbeep.audio.tones import speech_like
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.interface import Audio, CallEnded, EndedBy, Recording
from afterbeep.telephony.media import Codec
from afterbeep.telephony.prompts import prompt
from afterbeep.telephony.server import ServerLimits, TelephonyServer, telephony_configs
from tests.fixtures.rtp_pcap import RtpCapture, RtpStreamBuilder, g711_roundtrip, write_pcap
from tests.sip import conftest as sip_rig
from tests.sip.conftest import free_udp_port, run_sipp

sipp_bin = sip_rig.sipp_bin  # the session fixture of tests/sip: installs sip-tester if missing

pytestmark = pytest.mark.timeout(60)

RTP_RANGE = (23000, 23999)
CALLER = "+12025550123"  # the From of the media_* scenarios
SERVICE = "2025550100"


class MemorySink:
    def __init__(self) -> None:
        self.blocks: list[Audio] = []

    def write(self, pcm: Audio) -> None:
        self.blocks.append(pcm.copy())

    @property
    def pcm(self) -> Audio:
        return np.concatenate(self.blocks) if self.blocks else np.zeros(0, dtype=np.int16)


@asynccontextmanager
async def serve(
    script: Callable[[SipCall], Awaitable[None]],
    *,
    limits: ServerLimits = ServerLimits(),
    **media: Any,
) -> AsyncIterator[TelephonyServer]:
    ua_config, media_config = telephony_configs("127.0.0.1:0", None, *RTP_RANGE)
    media_config = dataclasses.replace(media_config, **media)
    server = TelephonyServer(ua_config, media_config, script, limits=limits)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(drain_timeout=2, hangup_timeout=2)


def sipp_args(*keys: tuple[str, object]) -> tuple[str, ...]:
    """-mp on a free port (SIPp's own media socket), -s the number called, -key values."""
    args: list[str] = ["-mp", str(free_udp_port()), "-s", SERVICE]
    for name, value in keys:
        args += ["-key", name, str(value)]
    return tuple(args)


async def call_sipp(
    sipp: str, scenario: str, tmp_path: Path, server: TelephonyServer, *keys: tuple[str, object]
) -> None:
    result = await run_sipp(
        sipp, scenario, tmp_path, remote=f"127.0.0.1:{server.udp_port}", extra=sipp_args(*keys)
    )
    assert result.returncode == 0, result.output


async def calls_finished(server: TelephonyServer) -> None:
    async with asyncio.timeout(10):
        await server.idle()


@pytest.mark.parametrize(
    ("codec", "ptime", "event_pt"),
    [(Codec.PCMU, 20, 101), (Codec.PCMA, 30, 96)],
    ids=["pcmu-20ms-pt101", "pcma-30ms-pt96"],
)
async def test_recording_equals_the_audio_sent_and_each_key_arrives_once(
    sipp_bin: str, tmp_path: Path, codec: Codec, ptime: int, event_pt: int
) -> None:
    speech = speech_like(3000, seed=7)
    caller = RtpStreamBuilder(codec, ptime, event_pt)
    write_pcap(tmp_path / "speech.pcap", caller.audio(speech).take())
    write_pcap(tmp_path / "digits.pcap", caller.digits("#123#").take())
    sink = MemorySink()
    seen: dict[str, Any] = {}

    async def script(call: SipCall) -> None:
        await call.answer()
        seen["recording"] = await call.record(sink, max_seconds=30, silence_seconds=10)
        seen["digits"] = await call.collect_digits(10, timeout=5)
        async with asyncio.timeout(10):
            await call.ended.wait()
        seen["call"] = call

    async with serve(script) as server:
        await call_sipp(
            sipp_bin,
            "media_uac_speak_keys.xml",
            tmp_path,
            server,
            ("codec_pt", codec.value),
            ("codec_name", codec.name),
            ("event_pt", event_pt),
            ("ptime", ptime),
        )
        await calls_finished(server)

    recording: Recording = seen["recording"]
    call: SipCall = seen["call"]
    assert recording.ended_by is EndedBy.FINISH_KEY
    assert recording.samples == len(sink.pcm)
    result = compare(g711_roundtrip(codec, speech), sink.pcm)
    print(f"{codec.name}/{ptime}ms: {result}")
    assert result.snr_db >= 30
    assert result.missing_head_ms == 0
    assert result.missing_tail_ms <= 20
    assert result.extra_ms <= 20  # no key audio after the speech
    assert seen["digits"] == "123"
    assert call.digits_received == 5  # "#123#", each once
    assert call.end_reason == "remote"
    assert call.caller == CALLER
    assert call.caller_name == "SIPp Caller"
    assert call.callee == "+1" + SERVICE
    assert call.call_id.startswith("call_") and call.sip_call_id
    stats = call.media_stats()
    assert stats is not None and stats.dropped_payload_type == 0 and stats.lost == 0


async def test_played_prompt_reaches_the_caller(sipp_bin: str, tmp_path: Path) -> None:
    greeting = prompt("vm-greeting")
    capture = await RtpCapture.open()

    async def script(call: SipCall) -> None:
        await call.answer()
        assert await call.play(greeting) is None
        await call.hangup()

    try:
        async with serve(script) as server:
            await call_sipp(
                sipp_bin, "media_uac_listen.xml", tmp_path, server, ("rtp_port", capture.port)
            )
            await calls_finished(server)
    finally:
        capture.close()
    heard = capture.audio()
    result = compare(g711_roundtrip(Codec.PCMU, greeting), heard)
    print(f"played: {result}")
    assert result.lag == 0  # the first packet carries the first sample
    assert result.snr_db >= 30
    assert result.missing_tail_ms <= 20
    assert {p.payload_type for p in capture.packets} == {0}


async def test_key_by_rfc4733_interrupts_play(sipp_bin: str, tmp_path: Path) -> None:
    write_pcap(tmp_path / "key.pcap", RtpStreamBuilder().digit("#").take())
    long_prompt = prompt("vm-instructions")
    seen: dict[str, Any] = {}

    async def script(call: SipCall) -> None:
        await call.answer()
        seen["key"] = await call.play(long_prompt, interrupt_on="#")
        seen["stats"] = call.media_stats()
        await call.hangup()

    async with serve(script) as server:
        await call_sipp(sipp_bin, "media_uac_key_rfc4733.xml", tmp_path, server)
        await calls_finished(server)
    assert seen["key"] == "#"
    frames = len(long_prompt) // 160
    assert 0 < seen["stats"].packets_sent < frames


async def test_key_by_sip_info_interrupts_play_and_others_are_typed_ahead(
    sipp_bin: str, tmp_path: Path
) -> None:
    long_prompt = prompt("vm-instructions")
    seen: dict[str, Any] = {}

    async def script(call: SipCall) -> None:
        await call.answer()
        seen["key"] = await call.play(long_prompt, interrupt_on="#")
        seen["stats"] = call.media_stats()
        seen["digits"] = await call.collect_digits(1, timeout=2)
        await call.hangup()

    async with serve(script) as server:
        await call_sipp(sipp_bin, "media_uac_key_info.xml", tmp_path, server)
        await calls_finished(server)
    assert seen["key"] == "#"
    assert seen["digits"] == "5"
    assert 0 < seen["stats"].packets_sent < len(long_prompt) // 160


async def test_inter_digit_timeout_ends_an_entry_over_rfc4733(
    sipp_bin: str, tmp_path: Path
) -> None:
    """"1" and "2" 0.2 s apart, "3" 2.5 s later: a one-second inter-digit timeout ends the entry
    at "12"; the "3" is the next entry's."""
    keys = RtpStreamBuilder().digits("12").pause(2500).digit("3")
    write_pcap(tmp_path / "key.pcap", keys.take())
    seen: dict[str, Any] = {}

    async def script(call: SipCall) -> None:
        await call.answer()
        seen["entry"] = await call.collect_digits(
            10, timeout=10, terminator="", inter_digit_timeout=1.0
        )
        seen["next"] = await call.collect_digits(10, timeout=10, inter_digit_timeout=1.0)
        await call.hangup()

    async with serve(script) as server:
        await call_sipp(sipp_bin, "media_uac_key_rfc4733.xml", tmp_path, server)
        await calls_finished(server)
    assert seen["entry"] == "12"
    assert seen["next"] == "3"


async def test_rtp_inactivity_hangs_up(sipp_bin: str, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def script(call: SipCall) -> None:
        await call.answer()
        try:
            await call.collect_digits(4, timeout=30)
        except CallEnded:
            seen["reason"] = call.end_reason

    async with serve(script, inactivity_timeout=1.0) as server:
        await call_sipp(sipp_bin, "media_uac_wait_bye.xml", tmp_path, server)  # gets our BYE
        await calls_finished(server)
    assert seen["reason"] == "rtp-timeout"


async def test_no_common_codec_is_answered_488(sipp_bin: str, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def script(call: SipCall) -> None:
        try:
            await call.answer()
        except CallEnded:
            seen["reason"] = call.end_reason
            raise

    async with serve(script) as server:
        await call_sipp(sipp_bin, "media_uac_no_common_codec.xml", tmp_path, server)
        await calls_finished(server)
        assert server.media.sessions == 0
    assert seen["reason"] == "no-common-media"


async def test_hold_and_resume_by_reinvite(sipp_bin: str, tmp_path: Path) -> None:
    speech = speech_like(1200, seed=5)
    seen: dict[str, Any] = {}

    async def script(call: SipCall) -> None:
        await call.answer()
        await call.play(speech)  # held after 0.3 s, resumed 0.3 s later, BYE 1.5 s after
        seen["stats"] = call.media_stats()
        async with asyncio.timeout(10):
            await call.ended.wait()
        assert call.media is not None and call.media.negotiated is not None
        seen["direction"] = call.media.negotiated.direction

    async with serve(script) as server:
        # the scenario checks our answers: recvonly to its sendonly, then sendrecv again
        await call_sipp(sipp_bin, "media_uac_hold_resume.xml", tmp_path, server)
        await calls_finished(server)
    stats = seen["stats"]
    assert stats.frames_withheld > 0  # nothing sent while held...
    assert stats.packets_sent + stats.frames_withheld == len(speech) // 160  # ...time kept
    assert seen["direction"] == "sendrecv"


async def test_late_offer_gets_its_answer_from_the_ack(sipp_bin: str, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def script(call: SipCall) -> None:
        await call.answer()  # returns once the ACK brought the answer
        assert call.media is not None
        seen["negotiated"] = call.media.negotiated
        async with asyncio.timeout(10):
            await call.ended.wait()

    async with serve(script) as server:
        await call_sipp(sipp_bin, "media_uac_late_offer.xml", tmp_path, server)
        await calls_finished(server)
    negotiated = seen["negotiated"]
    assert negotiated is not None
    assert negotiated.codec is Codec.PCMU and negotiated.telephone_event_pt == 101
    assert negotiated.remote_port > 0
