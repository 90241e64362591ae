"""Ringing and the back-to-back bridge against real peers on 127.0.0.1: a SIPp caller calls the
service, the service rings SIPp devices addressed by `RingTarget` and bridges the one that
answers; RTP peers send known audio and digits on both sides and keep what they receive."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from pathlib import Path

import pytest

from afterbeep.audio.compare import compare
from afterbeep.audio.tones import speech_like
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.media import Codec, Direction
from afterbeep.telephony.ringing import RINGBACK
from afterbeep.telephony.scripts.ringer import BridgeEnd, RingOutcome
from tests.sip import conftest as sip_rig
from tests.telephony.bridge_rig import (
    RtpPeer,
    caller,
    codec_keys,
    device,
    first_invite_time,
    service,
    stream_of,
    targets,
)

pytestmark = pytest.mark.timeout(90)

sipp_bin = sip_rig.sipp_bin


async def _talk_through(
    sipp_bin: str,
    tmp_path: Path,
    caller_codec: Codec,
    callee_codec: Codec,
    *,
    caller_scenario: str,
    callee_scenario: str,
    caller_timing: dict[str, int] | None = None,
    callee_timing: dict[str, int] | None = None,
) -> None:
    """Ring two devices (one answers, one rings until CANCEL), talk both ways, press keys."""
    a_peer, b_peer = await RtpPeer.open(), await RtpPeer.open()
    try:
        async with service() as rig:
            answering, a_port = await device(
                sipp_bin,
                callee_scenario,
                tmp_path,
                *codec_keys(callee_codec, b_peer.port),
                answer_ms=600,
                **(callee_timing or {}),
            )  # fmt: skip
            ringing, r_port = await device(sipp_bin, "media_uas_ring_no_answer.xml", tmp_path)
            rig.targets = list(targets(a_port, r_port))
            assert rig.server.udp_port is not None
            uac = caller(
                sipp_bin,
                caller_scenario,
                tmp_path,
                rig.server.udp_port,
                *codec_keys(caller_codec, a_peer.port),
                **(caller_timing or {}),
            )
            result = await asyncio.wait_for(asyncio.shield(rig.rung), 15)
            assert result.outcome is RingOutcome.ANSWERED
            assert result.target is not None and result.target.label == "dev_0"
            to_caller, to_callee = await rig.relaying()
            said_by_a = speech_like(1500, seed=11)
            said_by_b = speech_like(1500, seed=12)
            await asyncio.gather(
                a_peer.play(to_caller, stream_of(caller_codec, said_by_a, "5#")),
                b_peer.play(to_callee, stream_of(callee_codec, said_by_b, "7")),
            )
            await asyncio.sleep(0.3)
            outcomes = await asyncio.gather(uac, answering, ringing)
            end = await asyncio.wait_for(asyncio.shield(rig.ended), 10)
        for outcome in outcomes:
            assert outcome.returncode == 0, outcome.output
        # the forks carry the caller id asked for and the caller's display name
        for device_run in outcomes[1:]:
            assert 'From: "Alice Caller" <sip:+12025550100@127.0.0.1>;tag=' in device_run.messages
        b_heard = compare(said_by_a, b_peer.audio())
        a_heard = compare(said_by_b, a_peer.audio())
        print(f"callee heard {b_heard}\ncaller heard {a_heard}")
        assert b_heard.snr_db >= 30 and b_heard.missing_tail_ms <= 20
        assert a_heard.snr_db >= 30 and a_heard.missing_tail_ms <= 20
        assert b_peer.digits() == "5#" and a_peer.digits() == "7"
        assert b_peer.payload_types() == {callee_codec.value, 101}
        assert a_peer.payload_types() == {caller_codec.value, 101}
        assert rig.server.media.sessions == 0
        return_value = end
    finally:
        a_peer.close()
        b_peer.close()
    assert return_value in (BridgeEnd.CALLER_HUNG_UP, BridgeEnd.CALLEE_HUNG_UP)


async def test_two_devices_ring_one_answers_audio_and_digits_cross_and_the_caller_hangs_up(
    sipp_bin: str, tmp_path: Path
) -> None:
    await _talk_through(
        sipp_bin,
        tmp_path,
        Codec.PCMU,
        Codec.PCMU,
        caller_scenario="bridge_uac_hangup.xml",
        callee_scenario="bridge_uas_answer.xml",
        caller_timing={"talk_ms": 4000},
    )


async def test_pcma_caller_to_pcmu_device_is_transcoded_and_the_device_hangs_up(
    sipp_bin: str, tmp_path: Path
) -> None:
    await _talk_through(
        sipp_bin,
        tmp_path,
        Codec.PCMA,
        Codec.PCMU,
        caller_scenario="bridge_uac_wait_bye.xml",
        callee_scenario="bridge_uas_answer_bye.xml",
        callee_timing={"talk_ms": 3500},
    )


async def test_hold_and_resume_are_passed_across(sipp_bin: str, tmp_path: Path) -> None:
    a_peer, b_peer = await RtpPeer.open(), await RtpPeer.open()
    try:
        async with service() as rig:
            answering, port = await device(
                sipp_bin,
                "bridge_uas_hold.xml",
                tmp_path,
                *codec_keys(Codec.PCMU, b_peer.port),
                answer_ms=200,
            )  # fmt: skip
            rig.targets = list(targets(port))
            assert rig.server.udp_port is not None
            uac = caller(
                sipp_bin,
                "bridge_uac_hold.xml",
                tmp_path,
                rig.server.udp_port,
                *codec_keys(Codec.PCMU, a_peer.port),
                talk_ms=1000,
                hold_ms=1500,
            )  # fmt: skip
            _, to_callee = await rig.relaying()
            call, leg = rig.bridged.result()
            # the device talks all along: the caller hears it except while it holds
            b_peer.play(to_callee, stream_of(Codec.PCMU, speech_like(3200, seed=4), ""))
            async with asyncio.timeout(10):
                while not _holding(leg):  # noqa: ASYNC110 (the re-INVITE goes out on its own)
                    await asyncio.sleep(0.02)
            assert call.media is not None and not call.media.sending  # toward the holder
            held_at = len(a_peer.packets)
            await asyncio.sleep(0.5)
            assert len(a_peer.packets) == held_at  # nothing relayed to the held caller
            results = await asyncio.gather(uac, answering)
            end = await asyncio.wait_for(asyncio.shield(rig.ended), 10)
    finally:
        a_peer.close()
        b_peer.close()
    for result in results:
        assert result.returncode == 0, result.output
    assert end is BridgeEnd.CALLER_HUNG_UP
    assert len(a_peer.packets) > held_at  # resumed: audio flows again


def _holding(leg: SipCall) -> bool:
    n = leg.media.negotiated if leg.media is not None else None
    return n is not None and n.direction is Direction.SENDONLY


async def test_the_callers_cancel_cancels_every_fork(sipp_bin: str, tmp_path: Path) -> None:
    async with service() as rig:
        first, port1 = await device(sipp_bin, "media_uas_ring_no_answer.xml", tmp_path)
        second, port2 = await device(sipp_bin, "media_uas_ring_no_answer.xml", tmp_path)
        rig.targets = list(targets(port1, port2))
        assert rig.server.udp_port is not None
        uac = caller(sipp_bin, "uac_cancel.xml", tmp_path, rig.server.udp_port, "-nr")
        results = await asyncio.gather(uac, first, second)
        outcome = await asyncio.wait_for(asyncio.shield(rig.rung), 10)
        await asyncio.sleep(0.2)
        assert rig.server.media.sessions == 0
    for result in results:
        assert result.returncode == 0, result.output
    assert outcome.outcome is RingOutcome.CALLER_GONE


async def test_sequential_ringing_rings_one_device_after_the_other(
    sipp_bin: str, tmp_path: Path
) -> None:
    async with service() as rig:
        devices = [
            await device(sipp_bin, "media_uas_ring_no_answer.xml", tmp_path) for _ in range(3)
        ]
        rig.targets = list(targets(*(port for _, port in devices), timeout_sec=1.0))
        rig.sequential = True
        rig.timeout = 2.5  # the third device gets the half second left
        assert rig.server.udp_port is not None
        uac = caller(sipp_bin, "bridge_uac_unanswered.xml", tmp_path, rig.server.udp_port,
                     *codec_keys(Codec.PCMU, 9))  # fmt: skip
        outcome = await asyncio.wait_for(asyncio.shield(rig.rung), 10)
        results = await asyncio.gather(uac, *(task for task, _ in devices))
    for result in results:
        assert result.returncode == 0, result.output
    assert outcome.outcome is RingOutcome.NO_ANSWER
    times = [first_invite_time(result) for result in results[1:]]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    print(f"INVITE times {times}, gaps {gaps}")
    assert times == sorted(times)
    assert all(0.9 <= gap <= 1.5 for gap in gaps)
    assert [label for label, _ in rig.forks] == ["dev_0", "dev_1", "dev_2"]


async def test_all_devices_busy_is_busy(sipp_bin: str, tmp_path: Path) -> None:
    async with service() as rig:
        busy1, port1 = await device(sipp_bin, "media_uas_busy.xml", tmp_path)
        busy2, port2 = await device(sipp_bin, "media_uas_busy.xml", tmp_path)
        rig.targets = list(targets(port1, port2))
        assert rig.server.udp_port is not None
        uac = caller(sipp_bin, "bridge_uac_unanswered.xml", tmp_path, rig.server.udp_port,
                     *codec_keys(Codec.PCMU, 9))  # fmt: skip
        outcome = await asyncio.wait_for(asyncio.shield(rig.rung), 10)
        results = await asyncio.gather(uac, busy1, busy2)
    for result in results:
        assert result.returncode == 0, result.output
    assert outcome.outcome is RingOutcome.BUSY


async def test_an_answered_caller_hears_a_ringback_tone_until_the_device_answers(
    sipp_bin: str, tmp_path: Path
) -> None:
    a_peer, b_peer = await RtpPeer.open(), await RtpPeer.open()
    try:
        async with service() as rig:
            rig.answer_first = True
            answering, port = await device(
                sipp_bin,
                "bridge_uas_answer.xml",
                tmp_path,
                *codec_keys(Codec.PCMU, b_peer.port),
                answer_ms=1500,
            )  # fmt: skip
            rig.targets = list(targets(port))
            assert rig.server.udp_port is not None
            uac = caller(
                sipp_bin,
                "bridge_uac_hangup.xml",
                tmp_path,
                rig.server.udp_port,
                *codec_keys(Codec.PCMU, a_peer.port),
                talk_ms=2500,
            )
            await rig.relaying()
            before_bridge = a_peer.audio()
            results = await asyncio.gather(uac, answering)
    finally:
        a_peer.close()
        b_peer.close()
    for result in results:
        assert result.returncode == 0, result.output
    assert 1.0 * 8000 <= len(before_bridge) <= 2.5 * 8000  # about the 1.5 s it rang
    heard = compare(RINGBACK.pcm[: len(before_bridge)], before_bridge, max_lag_ms=100)
    print(f"ringback heard {heard}")
    assert heard.lag == 0 and heard.snr_db >= 30


async def test_a_losing_fork_that_answers_after_its_cancel_is_acked_and_hung_up(
    sipp_bin: str, tmp_path: Path
) -> None:
    b_peer = await RtpPeer.open()
    try:
        async with service() as rig:
            winner, port1 = await device(
                sipp_bin,
                "bridge_uas_answer.xml",
                tmp_path,
                *codec_keys(Codec.PCMU, b_peer.port),
                answer_ms=300,
            )  # fmt: skip
            late, port2 = await device(sipp_bin, "bridge_uas_late_answer.xml", tmp_path)
            rig.targets = list(targets(port1, port2))
            assert rig.server.udp_port is not None
            uac = caller(
                sipp_bin,
                "bridge_uac_hangup.xml",
                tmp_path,
                rig.server.udp_port,
                *codec_keys(Codec.PCMU, 9),
                talk_ms=1500,
            )
            result = await asyncio.wait_for(asyncio.shield(rig.rung), 15)
            results = await asyncio.gather(uac, winner, late)
            end = await asyncio.wait_for(asyncio.shield(rig.ended), 10)
            await asyncio.sleep(0.2)
            assert rig.server.ua.dialog_count == 0
    finally:
        b_peer.close()
    for outcome in results:
        assert outcome.returncode == 0, outcome.output  # the late device got its ACK and BYE
    assert result.target is not None and result.target.label == "dev_0"
    assert end is BridgeEnd.CALLER_HUNG_UP


async def test_simultaneous_ringing_starts_each_device_after_its_delay(
    sipp_bin: str, tmp_path: Path
) -> None:
    async with service() as rig:
        devices = [
            await device(sipp_bin, "media_uas_ring_no_answer.xml", tmp_path) for _ in range(2)
        ]
        now, later = targets(*(port for _, port in devices))
        rig.targets = [now, replace(later, delay_sec=1.0)]
        rig.timeout = 2.0
        assert rig.server.udp_port is not None
        uac = caller(sipp_bin, "bridge_uac_unanswered.xml", tmp_path, rig.server.udp_port,
                     *codec_keys(Codec.PCMU, 9))  # fmt: skip
        outcome = await asyncio.wait_for(asyncio.shield(rig.rung), 10)
        results = await asyncio.gather(uac, *(task for task, _ in devices))
    for result in results:
        assert result.returncode == 0, result.output  # both rang until the CANCEL at 2 s
    assert outcome.outcome is RingOutcome.NO_ANSWER
    first, second = (first_invite_time(result) for result in results[1:])
    gap = (second - first).total_seconds()
    print(f"second device rang {gap:.3f} s after the first")
    assert 0.9 <= gap <= 1.5
