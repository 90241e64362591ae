"""A re-implementation of Asterisk ``app_amd`` (answering machine detection), the baseline.

Written from the behaviour documented in ``amd.conf.sample`` and the AMD() application help,
not from its source: each 20 ms frame is silence when its mean absolute sample is below
``silence_threshold`` (Asterisk's DSP silence detector), and a state machine counts words
(voice runs of at least ``minimum_word_length`` after at least ``between_words_silence`` of
silence), total voice in the greeting and the current silence run:

- ``initial_silence`` of silence before any voice: MACHINE (INITIALSILENCE);
- voice for ``greeting`` in total: MACHINE (LONGGREETING);
- ``maximum_number_of_words`` words: MACHINE (MAXWORDS) (reached, as Asterisk >= 1.8 does);
- one word lasting ``maximum_word_length``: MACHINE (MAXWORDLENGTH);
- ``after_greeting_silence`` of silence after voice: HUMAN (HUMAN);
- ``total_analysis_time`` without a verdict: NOTSURE (TOOLONG).

MACHINE maps to ``machine_start`` followed at once by ``machine_end_other`` (app_amd does not
look for the end of the greeting), HUMAN to ``human``, NOTSURE to ``unknown``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from afterbeep.audio.amd import AmdDecision, AnsweredBy

FRAME = 160
FRAME_MS = 20


@dataclass(frozen=True, slots=True)
class AppAmdSettings:
    """amd.conf defaults, ms except the threshold (mean absolute sample, of 32767)."""

    total_analysis_time: int = 5000
    initial_silence: int = 2500
    greeting: int = 1500
    after_greeting_silence: int = 800
    minimum_word_length: int = 100
    between_words_silence: int = 50
    maximum_number_of_words: int = 2
    maximum_word_length: int = 5000
    silence_threshold: int = 256


class _Word(enum.Enum):
    IN_WORD = enum.auto()
    IN_SILENCE = enum.auto()


class AppAmd:
    """Streaming, like `MachineDetector`: feed int16 audio, get decisions."""

    def __init__(self, settings: AppAmdSettings | None = None) -> None:
        self.settings = settings or AppAmdSettings()
        self._pending = np.zeros(0, dtype=np.int16)
        self._total = 0
        self._silence = 0
        self._voice_run = 0
        self._voice = 0
        self._words = 0
        self._state = _Word.IN_WORD  # as app_amd starts: the first word needs silence before it
        self._in_initial_silence = True
        self._in_greeting = False
        self._decision: AmdDecision | None = None

    @property
    def decision(self) -> AmdDecision | None:
        return self._decision

    def feed(self, pcm: npt.NDArray[np.int16]) -> list[AmdDecision]:
        if self._decision is not None:
            return []
        data = np.concatenate((self._pending, pcm)) if len(self._pending) else pcm
        whole = len(data) - len(data) % FRAME
        for i in range(0, whole, FRAME):
            out = self._frame(data[i : i + FRAME])
            if out:
                return out
        self._pending = data[whole:].copy()
        return []

    def finish(self) -> list[AmdDecision]:
        if self._decision is not None:
            return []
        return [self._done(AnsweredBy.UNKNOWN, "ENDOFAUDIO")]

    def _frame(self, frame: npt.NDArray[np.int16]) -> list[AmdDecision]:
        s = self.settings
        self._total += FRAME_MS
        if self._total >= s.total_analysis_time:
            return [self._done(AnsweredBy.UNKNOWN, f"TOOLONG-{self._total}")]
        if float(np.abs(frame.astype(np.int32)).mean()) < s.silence_threshold:
            self._silence += FRAME_MS
            if self._silence >= s.between_words_silence:
                self._state = _Word.IN_SILENCE
                self._voice_run = 0
            if self._in_initial_silence and self._silence >= s.initial_silence:
                return self._machine(f"INITIALSILENCE-{self._silence}-{s.initial_silence}")
            if self._in_greeting and self._silence >= s.after_greeting_silence:
                return [self._done(AnsweredBy.HUMAN, f"HUMAN-{self._silence}-{s.after_greeting_silence}")]
            return []
        self._silence = 0
        self._voice_run += FRAME_MS
        self._voice += FRAME_MS
        if self._voice_run >= s.minimum_word_length and self._state is _Word.IN_SILENCE:
            self._words += 1
            self._state = _Word.IN_WORD
        if self._voice_run >= s.maximum_word_length:
            return self._machine(f"MAXWORDLENGTH-{self._voice_run}")
        if self._words >= s.maximum_number_of_words:
            return self._machine(f"MAXWORDS-{self._words}-{s.maximum_number_of_words}")
        if self._in_greeting and self._voice >= s.greeting:
            return self._machine(f"LONGGREETING-{self._voice}-{s.greeting}")
        if self._voice_run >= s.minimum_word_length:
            self._in_initial_silence = False
            self._in_greeting = True
        return []

    def _machine(self, cause: str) -> list[AmdDecision]:
        start = AmdDecision(AnsweredBy.MACHINE_START, self._total, cause)
        return [start, self._done(AnsweredBy.MACHINE_END_OTHER, cause)]

    def _done(self, answered_by: AnsweredBy, cause: str) -> AmdDecision:
        self._decision = AmdDecision(answered_by, self._total, cause)
        return self._decision


def classify(pcm: npt.NDArray[np.int16], settings: AppAmdSettings | None = None) -> list[AmdDecision]:
    detector = AppAmd(settings)
    return detector.feed(pcm) + detector.finish()
