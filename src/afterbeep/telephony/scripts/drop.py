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

With words (`TurnWords`), the first turn the detector hands over (`turn_to_transcribe`) is
transcribed on a worker thread while frames keep coming; its text goes back to the detector
(`hear`) at the next frame. A busy or failing transcriber gives the detector None: timing alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from afterbeep.audio.amd import AmdDecision, AnsweredBy
from afterbeep.audio.sit import SitDetector
from afterbeep.domain.drops import DETECTION_LIMIT_S, DropFailure, DropOutcome, DropResult
from afterbeep.telephony.interface import Audio, CallEnded, ListeningCall

__all__ = ["UNDETERMINED", "Detector", "TurnWords", "WordsDetector", "drop_message"]

UNDETERMINED = "undetermined"
MACHINE_ENDS = frozenset(
    {AnsweredBy.MACHINE_END_BEEP, AnsweredBy.MACHINE_END_SILENCE, AnsweredBy.MACHINE_END_OTHER}
)


class Detector(Protocol):
    """`afterbeep.audio.amd.MachineDetector`'s surface: fed audio from the answer on."""

    def feed(self, pcm: Audio) -> list[AmdDecision]: ...

    @property
    def decision(self) -> AmdDecision | None: ...


@runtime_checkable
class WordsDetector(Detector, Protocol):
    """A detector that listens to the words of the first turn too."""

    def turn_to_transcribe(self) -> Audio | None: ...

    def hear(self, transcript: str | None, reason: str = "") -> None: ...


class TurnWords(Protocol):
    """Transcribes a first turn off the event loop: a future of its text, or None when every
    worker is busy (`afterbeep.asr.turns.TurnTranscriber`)."""

    def submit(self, audio: Audio) -> Future[str] | None: ...


@dataclass(frozen=True, slots=True)
class _Heard:
    decision: AmdDecision | None  # the final one, if any
    started: AmdDecision | None  # machine_start, if it came
    sit: bool


class _Words:
    """The first turn's transcription on its way, for one detector."""

    def __init__(self, detector: Detector, words: TurnWords | None) -> None:
        self._detector = detector if words is not None and isinstance(detector, WordsDetector) else None
        self._words = words
        self._pending: asyncio.Future[str] | None = None

    def before_frame(self) -> None:
        """Hand a transcript that came back to the detector."""
        if self._detector is None or self._pending is None or not self._pending.done():
            return
        pending, self._pending = self._pending, None
        if pending.cancelled() or pending.exception() is not None:
            self._detector.hear(None, "FAILED")
        else:
            self._detector.hear(pending.result())

    def after_frame(self) -> None:
        """Send a first turn that has ended to be transcribed."""
        if self._detector is None or self._words is None:
            return
        turn = self._detector.turn_to_transcribe()
        if turn is None:
            return
        future = self._words.submit(turn)
        if future is None:
            self._detector.hear(None, "BUSY")
        else:
            self._pending = asyncio.wrap_future(future)

    async def aclose(self) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()  # a transcription already running finishes on its thread
            await asyncio.gather(self._pending, return_exceptions=True)


async def _listen(
    call: ListeningCall, detector: Detector, sit: SitDetector, limit: float, words: TurnWords | None
) -> _Heard:
    """Feed what the far end sends to both detectors until one of them decides, the call
    ends, or `limit` seconds pass."""
    started: AmdDecision | None = None
    turn = _Words(detector, words)
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit), contextlib.aclosing(call.listen()) as heard:
                async for block in heard:
                    if sit.feed(block) is not None:
                        return _Heard(None, started, True)
                    turn.before_frame()
                    for decision in detector.feed(block):
                        if decision.answered_by is AnsweredBy.MACHINE_START:
                            started = decision
                        elif decision.final:
                            return _Heard(decision, started, False)
                    turn.after_frame()
        return _Heard(None, started, False)
    finally:
        await turn.aclose()


async def drop_message(
    call: ListeningCall,
    audio: Audio,
    detector: Detector,
    *,
    detection_limit: float = DETECTION_LIMIT_S,
    words: TurnWords | None = None,
) -> DropResult:
    """The drop on an answered call, as the module docstring says; always hangs up."""
    try:
        heard = await _listen(call, detector, SitDetector(), detection_limit, words)
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
