"""The drop script on a scripted call (FakeCall) with a scripted detector, the outcome mapping,
and the SIT detector on generated tones."""

from __future__ import annotations

import numpy as np
import pytest

from afterbeep.audio.amd import AmdDecision, AnsweredBy
from afterbeep.audio.g711 import ulaw_decode, ulaw_encode
from afterbeep.audio.sit import SitDetector
from afterbeep.audio.tones import beep, dual_tone, silence, speech_like, tone
from afterbeep.domain.drops import (
    DropOutcome,
    DropResult,
    drop_step,
    fallback_step,
    outcome_of_code,
)
from afterbeep.domain.ringless import SendStatus
from afterbeep.telephony.fake import FakeCall
from afterbeep.telephony.interface import Audio
from afterbeep.telephony.scripts.drop import drop_message

MESSAGE = speech_like(10_000, seed=4)


class ScriptedDetector:
    """Decides at fixed points of the audio fed: [(ms, decision), ...]."""

    def __init__(self, *script: tuple[int, AmdDecision]) -> None:
        self.script = list(script)
        self.fed_ms = 0
        self._decision: AmdDecision | None = None

    def feed(self, pcm: Audio) -> list[AmdDecision]:
        self.fed_ms += len(pcm) // 8
        due = [d for at, d in self.script if at <= self.fed_ms]
        self.script = [(at, d) for at, d in self.script if at > self.fed_ms]
        for d in due:
            if d.final:
                self._decision = d
        return due

    @property
    def decision(self) -> AmdDecision | None:
        return self._decision


def decided(answered_by: AnsweredBy, at: int, beep_end: int | None = None) -> tuple[int, AmdDecision]:
    return at, AmdDecision(answered_by, at, "TEST", beep_end)


def sit_tones() -> Audio:
    return np.concatenate(
        [tone(913.8, 274, ramp_ms=2), tone(1370.6, 274, ramp_ms=2), tone(1776.7, 380, ramp_ms=2)]
    )


async def test_a_machine_gets_the_whole_message_after_the_beep() -> None:
    call = FakeCall(caller_audio=np.concatenate([speech_like(3000), beep(), silence(5000)]))
    detector = ScriptedDetector(
        decided(AnsweredBy.MACHINE_START, 1500), decided(AnsweredBy.MACHINE_END_BEEP, 3300, 3250)
    )
    result = await drop_message(call, MESSAGE, detector)
    assert result == DropResult(
        DropOutcome.LEFT_VOICEMAIL, answered_by="machine_end_beep", detection_ms=3300, beep_ms=3250
    )
    ((start, played),) = call.played
    assert start == 3300 * 8  # not a sample before the decision, which comes after the beep
    assert np.array_equal(played, MESSAGE)
    assert call.hung_up_by_us


@pytest.mark.parametrize("end", [AnsweredBy.MACHINE_END_SILENCE, AnsweredBy.MACHINE_END_OTHER])
async def test_a_machine_without_a_beep_gets_the_message_after_its_greeting(end: AnsweredBy) -> None:
    call = FakeCall(caller_audio=speech_like(4000))
    detector = ScriptedDetector(decided(AnsweredBy.MACHINE_START, 2000), decided(end, 7000))
    result = await drop_message(call, MESSAGE, detector)
    assert (result.outcome, result.answered_by) == (DropOutcome.LEFT_VOICEMAIL, end.value)
    assert len(call.heard()) == 7000 * 8 + len(MESSAGE)


async def test_a_person_hears_nothing() -> None:
    call = FakeCall(caller_audio=np.concatenate([speech_like(600), silence(3000)]))
    result = await drop_message(call, MESSAGE, ScriptedDetector(decided(AnsweredBy.HUMAN, 1300)))
    assert (result.outcome, result.answered_by, result.detection_ms) == (
        DropOutcome.HUMAN_ANSWERED,
        "human",
        1300,
    )
    assert call.played == [] and call.hung_up_by_us
    assert call.now_ms == 1300  # hung up as soon as the decision came


async def test_unknown_plays_nothing_and_is_a_retryable_no_answer() -> None:
    call = FakeCall(caller_audio=silence(1000))
    result = await drop_message(call, MESSAGE, ScriptedDetector(decided(AnsweredBy.UNKNOWN, 6000)))
    assert (result.outcome, result.reason, result.answered_by) == (
        DropOutcome.NO_ANSWER,
        "undetermined",
        "unknown",
    )
    assert call.played == [] and result.retryable


async def test_fax_and_sit_tones_fail_without_audio() -> None:
    call = FakeCall(caller_audio=silence(1000))
    fax = await drop_message(call, MESSAGE, ScriptedDetector(decided(AnsweredBy.FAX, 900)))
    assert (fax.outcome, fax.reason) == (DropOutcome.FAILED, "fax") and call.played == []
    call = FakeCall(caller_audio=np.concatenate([silence(200), sit_tones(), silence(3000)]))
    sit = await drop_message(call, MESSAGE, ScriptedDetector(decided(AnsweredBy.HUMAN, 3000)))
    assert (sit.outcome, sit.reason, sit.answered_by) == (DropOutcome.FAILED, "sit_tone", None)
    assert call.played == [] and not sit.retryable


async def test_hang_up_before_a_decision_or_during_the_message() -> None:
    call = FakeCall(caller_audio=speech_like(5000), hangup_at_ms=800)
    gone = await drop_message(call, MESSAGE, ScriptedDetector(decided(AnsweredBy.HUMAN, 3000)))
    assert (gone.outcome, gone.reason) == (DropOutcome.NO_ANSWER, "undetermined")
    assert call.played == []
    call = FakeCall(caller_audio=speech_like(5000), hangup_at_ms=9000)
    cut = await drop_message(
        call, MESSAGE, ScriptedDetector(decided(AnsweredBy.MACHINE_END_SILENCE, 6000))
    )
    assert (cut.outcome, cut.reason) == (DropOutcome.FAILED, "message_cut_off") and cut.retryable


def test_outcomes_of_sip_codes_and_statuses() -> None:
    assert outcome_of_code(486) == (DropOutcome.BUSY, None)
    assert outcome_of_code(408)[0] is DropOutcome.NO_ANSWER
    for code in (404, 484, 604):
        assert outcome_of_code(code)[1] == "invalid_number"
    assert outcome_of_code(503)[1] == "trunk_error"
    busy = DropResult(DropOutcome.BUSY, 486)
    assert drop_step(busy, 1, 3).retry and drop_step(busy, 2, 3).status is SendStatus.ACCEPTED
    assert drop_step(busy, 3, 3).status is SendStatus.BUSY
    no_answer = DropResult(DropOutcome.NO_ANSWER, 408)
    assert drop_step(no_answer, 3, 3).status is SendStatus.NO_ANSWER
    human = DropResult(DropOutcome.HUMAN_ANSWERED, 200)
    assert drop_step(human, 1, 3).status is SendStatus.HUMAN_ANSWERED
    invalid = DropResult(DropOutcome.FAILED, 404, "invalid_number")
    assert (drop_step(invalid, 1, 3).status, drop_step(invalid, 1, 3).reason) == (
        SendStatus.FAILED,
        "invalid_number",
    )
    trunk = DropResult(DropOutcome.FAILED, 503, "trunk_error")
    assert drop_step(trunk, 1, 3).retry and drop_step(trunk, 3, 3).reason == "trunk_error"
    left = DropResult(DropOutcome.LEFT_VOICEMAIL, 200)
    assert fallback_step(left, 1, 3).status is SendStatus.DELIVERED
    assert fallback_step(human, 1, 3) .status is SendStatus.FAILED
    assert fallback_step(human, 1, 3).reason == "human_answered"
    assert fallback_step(busy, 1, 3).retry and fallback_step(busy, 3, 3).reason == "busy"


def _detect(signal: Audio, block: int = 1600) -> list[int]:
    detector = SitDetector()
    hits = [detector.feed(signal[i : i + block]) for i in range(0, len(signal), block)]
    return [h for h in hits if h is not None]


def test_sit_tones_are_found_after_g711_and_nothing_else_is() -> None:
    short = np.concatenate([silence(130), sit_tones(), silence(500)])
    through_g711 = ulaw_decode(ulaw_encode(short))
    (at,) = _detect(through_g711)
    assert 1058 <= at <= 1120  # the third tone ends at 1058 ms
    long = np.concatenate(
        [tone(985.2, 380, ramp_ms=2), tone(1428.5, 380, ramp_ms=2), tone(1776.7, 380), silence(300)]
    )
    assert len(_detect(long, block=333)) == 1
    assert _detect(np.concatenate([beep(), silence(500), beep(), silence(500)])) == []
    assert _detect(np.concatenate([dual_tone(440, 480, 2000), silence(4000)])) == []
    assert _detect(speech_like(10_000, seed=2)) == []
    rising_wrong_order = np.concatenate([tone(1776.7, 274), tone(1370.6, 274), tone(913.8, 380)])
    assert _detect(np.concatenate([rising_wrong_order, silence(300)])) == []
