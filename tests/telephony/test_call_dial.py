"""Outbound calls with dial() to SIPp callees on 127.0.0.1: ringing, answer, playout, busy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from afterbeep.audio.compare import compare
from afterbeep.audio.tones import speech_like
from afterbeep.telephony.call import DialFailed, DialState
from afterbeep.telephony.media import Codec
from afterbeep.telephony.server import TelephonyServer, telephony_configs
from tests.fixtures.rtp_pcap import RtpCapture, g711_roundtrip
from tests.sip import conftest as sip_rig
from tests.sip.conftest import SippResult, free_udp_port, run_sipp, wait_udp_bound

pytestmark = pytest.mark.timeout(60)

sipp_bin = sip_rig.sipp_bin


@pytest.fixture
async def server() -> AsyncIterator[TelephonyServer]:
    ua_config, media_config = telephony_configs("127.0.0.1:0", None, 24000, 24999)
    async with TelephonyServer(ua_config, media_config) as srv:
        yield srv


async def callee(
    sipp: str, scenario: str, tmp_path: Path, *keys: str
) -> tuple[asyncio.Task[SippResult], int]:
    """A SIPp UAS on a free port, listening before this returns."""
    port = free_udp_port()
    extra = ("-mp", str(free_udp_port()), *keys)
    task = asyncio.ensure_future(
        run_sipp(sipp, scenario, tmp_path, remote=None, local_port=port, extra=extra)
    )
    await wait_udp_bound(port)
    return task, port


async def test_dial_rings_then_answers_and_the_callee_hears_the_audio(
    sipp_bin: str, tmp_path: Path, server: TelephonyServer
) -> None:
    capture = await RtpCapture.open()
    try:
        sipp, port = await callee(
            sipp_bin, "media_uas_ring_answer.xml", tmp_path, "-key", "rtp_port", str(capture.port)
        )
        outbound = await server.dial(
            f"sip:+12025550199@127.0.0.1:{port}", "sip:+12025550100@127.0.0.1", timeout=10
        )
        states = [state async for state in outbound.updates()]
        assert states == [DialState.RINGING, DialState.ANSWERED]
        call = await outbound.wait_answered()
        assert call.direction == "outbound"
        assert call.callee == "+12025550199" and call.caller == "+12025550100"
        speech = speech_like(2000, seed=3)
        assert await call.play(speech) is None
        await call.hangup()
        result = await sipp
    finally:
        capture.close()
    assert result.returncode == 0, result.output
    heard = compare(g711_roundtrip(Codec.PCMU, speech), capture.audio())
    print(f"dialled callee heard: {heard}")
    assert heard.lag == 0 and heard.snr_db >= 30 and heard.missing_tail_ms <= 20
    assert server.media.sessions == 0


async def test_busy_callee_reports_486(
    sipp_bin: str, tmp_path: Path, server: TelephonyServer
) -> None:
    sipp, port = await callee(sipp_bin, "media_uas_busy.xml", tmp_path)
    outbound = await server.dial(f"sip:+12025550199@127.0.0.1:{port}", "sip:+12025550100@127.0.0.1")
    assert [state async for state in outbound.updates()] == [DialState.FAILED]
    with pytest.raises(DialFailed) as failed:
        await outbound.wait_answered()
    assert failed.value.code == 486
    result = await sipp  # the scenario ends only once our ACK for the 486 arrived
    assert result.returncode == 0, result.output
    assert server.media.sessions == 0


async def test_early_media_then_answer(
    sipp_bin: str, tmp_path: Path, server: TelephonyServer
) -> None:
    capture = await RtpCapture.open()
    try:
        sipp, port = await callee(
            sipp_bin, "media_uas_early_media.xml", tmp_path, "-key", "rtp_port", str(capture.port)
        )
        outbound = await server.dial(
            f"sip:+12025550199@127.0.0.1:{port}", "sip:+12025550100@127.0.0.1"
        )
        assert [s async for s in outbound.updates()] == [DialState.EARLY_MEDIA, DialState.ANSWERED]
        assert outbound.early_media.is_set() and not outbound.ringing.is_set()
        call = await outbound.wait_answered()
        assert call.media is not None and call.media.negotiated is not None
        assert call.media.negotiated.remote_port == capture.port
        await call.hangup()
        result = await sipp
    finally:
        capture.close()
    assert result.returncode == 0, result.output


async def test_cancel_while_ringing_reports_487(
    sipp_bin: str, tmp_path: Path, server: TelephonyServer
) -> None:
    sipp, port = await callee(sipp_bin, "media_uas_ring_no_answer.xml", tmp_path)
    outbound = await server.dial(f"sip:+12025550199@127.0.0.1:{port}", "sip:+12025550100@127.0.0.1")
    updates = outbound.updates()
    assert await anext(updates) is DialState.RINGING
    outbound.cancel()
    assert await anext(updates) is DialState.FAILED
    with pytest.raises(DialFailed) as failed:
        await outbound.wait_answered()
    assert failed.value.code == 487
    result = await sipp  # CANCEL sent, 487 ACKed
    assert result.returncode == 0, result.output
    assert server.media.sessions == 0
