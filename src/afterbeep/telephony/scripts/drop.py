"""Drop a message on an answering machine: the steps of an answered outbound drop call.

The script (`drop_message`) listens from the answer: the answering machine detector and the
SIT detector hear every received frame. Then:

- a person (`human`): hang up at once, nothing played: `human_answered`;
- a machine, once its greeting ended (`machine_end_beep`: after the beep; `machine_end_silence`
  or `machine_end_other`: no beep came): the whole recording, then BYE: `left_voicemail`;
  a hang-up while it plays is `failed` / `message_cut_off` (retried);
- a fax: `failed` / `fax`; special information tones: `failed` / `sit_tone`;
- an answer (or re-INVITE) aiming our audio outside the network policy: BYE, nothing sent
  there, `failed` / `media_address_not_allowed` (final);
- `unknown` (nothing to go on by the detector's time limit), or the far end hanging up before
  any decision: hang up, nothing played, `no_answer` (reason `undetermined`), retried like any
  no-answer. Audio is never risked on a call the detector has not classed as a machine; a
  `machine_start` that reaches no end within the wall-clock bound (no RTP arrives) is the one
  case played, since the detector did class it as a machine.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, replace
from typing import Protocol

from afterbeep.audio.amd import AmdDecision, AnsweredBy
from afterbeep.audio.sit import SitDetector
from afterbeep.domain.drops import DETECTION_LIMIT_S, DropFailure, DropOutcome, DropResult
from afterbeep.telephony.interface import Audio, CallEnded, ListeningCall

__all__ = ["UNDETERMINED", "Detector", "drop_message"]

UNDETERMINED = "undetermined"
MACHINE_ENDS = frozenset(
    {AnsweredBy.MACHINE_END_BEEP, AnsweredBy.MACHINE_END_SILENCE, AnsweredBy.MACHINE_END_OTHER}
)


class Detector(Protocol):
    """`afterbeep.audio.amd.MachineDetector`'s surface: fed audio from the answer on."""

    def feed(self, pcm: Audio) -> list[AmdDecision]: ...

    @property
    def decision(self) -> AmdDecision | None: ...


@dataclass(frozen=True, slots=True)
class _Heard:
    decision: AmdDecision | None  # the final one, if any
    started: AmdDecision | None  # machine_start, if it came
    sit: bool


async def _listen(call: ListeningCall, detector: Detector, sit: SitDetector, limit: float) -> _Heard:
    """Feed what the far end sends to both detectors until one of them decides, the call
    ends, or `limit` seconds pass."""
    started: AmdDecision | None = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit), contextlib.aclosing(call.listen()) as heard:
            async for block in heard:
                if sit.feed(block) is not None:
                    return _Heard(None, started, True)
                for decision in detector.feed(block):
                    if decision.answered_by is AnsweredBy.MACHINE_START:
                        started = decision
                    elif decision.final:
                        return _Heard(decision, started, False)
    return _Heard(None, started, False)


async def drop_message(
    call: ListeningCall,
    audio: Audio,
    detector: Detector,
    *,
    detection_limit: float = DETECTION_LIMIT_S,
) -> DropResult:
    """The drop on an answered call, as the module docstring says; always hangs up."""
    try:
        heard = await _listen(call, detector, SitDetector(), detection_limit)
        decision = heard.decision
        if decision is None and heard.started is not None and not heard.sit:
            decision = replace(heard.started, answered_by=AnsweredBy.MACHINE_END_OTHER)
        detected = DropResult(
            DropOutcome.NO_ANSWER,
            reason=UNDETERMINED,
            answered_by=decision.answered_by.value if decision else None,
            detection_ms=decision.detection_ms if decision else None,
            beep_ms=decision.beep_end_ms if decision else None,
        )
        if heard.sit:
            return replace(detected, outcome=DropOutcome.FAILED, reason=DropFailure.SIT_TONE.value)
        if decision is None or decision.answered_by is AnsweredBy.UNKNOWN:
            return detected
        if decision.answered_by is AnsweredBy.HUMAN:
            await call.hangup()
            return replace(detected, outcome=DropOutcome.HUMAN_ANSWERED, reason=None)
        if decision.answered_by is AnsweredBy.FAX:
            return replace(detected, outcome=DropOutcome.FAILED, reason=DropFailure.FAX.value)
        assert decision.answered_by in MACHINE_ENDS
        try:
            await call.play(audio)
        except CallEnded:
            cut_off = DropFailure.MESSAGE_CUT_OFF.value
            return replace(detected, outcome=DropOutcome.FAILED, reason=cut_off)
        return replace(detected, outcome=DropOutcome.LEFT_VOICEMAIL, reason=None)
    finally:
        await call.hangup()
