"""Answering machine detection: a streaming detector fed 8 kHz audio from the moment of answer.

Each 20 ms frame is high-passed (pre-emphasis, so hum and rumble are not voice) and goes
through webrtcvad (the WebRTC voice activity detector, from ``webrtcvad-wheels``), gated by
energy: 6 dB over a noise floor that is the minimum frame energy over the last 3 s (lost
packets and suppressed silence, digital zero, do not count). Every frame also goes through
the beep detector (`afterbeep.audio.beep`). Speech runs of >= 100 ms open an utterance;
inside one, a frame more than 15 dB below the voice heard so far does not extend it (far talk
that the VAD calls speech would otherwise join a hello to the "Hello?" said after it);
utterances join into a turn across gaps < 950 ms (a greeting's pauses between sentences are
shorter than the wait of a person who said something and expects an answer). Once a turn is
longer than a person's hello (2 s), speech fragments too short to open an utterance (>= 40 ms,
see below) also bridge the gap: in heavy noise the VAD hears only the loud bits of a long
greeting's words, and a hole in them must not split off its last sentence as a "Hello?" said
again. Then timing:

- nothing heard for 6 s: ``unknown`` (INITIALSILENCE). Carrier silence before a greeting is
  only waiting, never evidence of a person.
- a turn of <= 1 s then 1 s of silence, or <= 2 s then 1.1 s of silence: ``human``
  (HUMAN-SHORT for the first turn; HUMAN-REPROMPT for a later one: "Hello? ... Hello?").
  The wait is long enough for a beep that follows a short greeting to start (a tone in
  progress holds every decision). For this rule only, speech fragments too short to open an
  utterance (>= 40 ms) that come less than a turn gap after the talk before them still count as
  talk: in heavy noise the VAD hears only the loud bits of a greeting's words, and the gaps
  between them are not a person waiting.
- a turn of 9 s, or a long turn after others making 9 s: ``machine_start`` (LONGGREETING).
- a first turn longer than 2 s, then 3 s of silence: a greeting with no beep:
  ``machine_start`` + ``machine_end_silence`` (AFTERGREETINGSILENCE).
- a beep at any point (at most 15 dB below the voice): ``machine_start`` (if not yet) +
  ``machine_end_beep`` with the beep's end (BEEP); after ``machine_start``, 2 s of silence:
  ``machine_end_silence`` (SILENCE).
- 2100 Hz for 900 ms, or a lone 2100 Hz or ~0.5 s 1100 Hz tone before any speech: ``fax``
  (CED, CNG).
- 30 s: ``unknown`` (TOOLONG), or ``machine_end_other`` (TOOLONG) after ``machine_start``.

All thresholds are in `AmdSettings`. Our own code because no package does AMD; the features
are the ones Asterisk app_amd and the literature use (initial silence, greeting length,
pauses, words), read from a real VAD instead of a fixed energy threshold. The trade-off is
deliberate: by timing alone, a short greeting with no beep ("Leave a message." then silence)
reads as a person rather than risk playing a message to one.

Words (with ``cues``): once 500 ms of silence follow the first turn, `turn_to_transcribe`
hands its audio over (once; again if the turn went on after that pause, up to
`WordsSettings.max_asks` times in all) and the caller
transcribes it off this thread and gives the text to `hear`. `afterbeep.domain.amd_words`
then decides with the timing: a machine cue starts the greeting at once (WORDS-MACHINE), a
short turn or a person's words end in ``human`` after 800-1000 ms of silence (a short turn
with a person's phrase that is no name, "who is this", as soon as its words are back), a first turn of
up to 6 s with no cue after 1.1 s. While the words are awaited the timing rules hold their
decision, up to 2 s of silence; without words (busy pool, failure, too late) they decide
alone and their cause says why (``HUMAN-SHORT/NOWORDS-BUSY``). A turn then the end of the
audio always decides; ``unknown`` is left for a line with no speech.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import webrtcvad

from afterbeep.audio.beep import Beep, BeepDetector, BeepSettings
from afterbeep.domain.amd_words import (
    Call,
    CueList,
    Verdict,
    Words,
    WordsSettings,
    WordsState,
    decide_first_turn,
    read_words,
    timing_may_decide,
)

Audio = npt.NDArray[np.int16]

RATE = 8000
FRAME = 160  # 20 ms
FRAME_MS = 20


class AnsweredBy(enum.StrEnum):
    HUMAN = "human"
    MACHINE_START = "machine_start"
    MACHINE_END_BEEP = "machine_end_beep"
    MACHINE_END_SILENCE = "machine_end_silence"
    MACHINE_END_OTHER = "machine_end_other"
    FAX = "fax"
    UNKNOWN = "unknown"


FINAL = frozenset(AnsweredBy) - {AnsweredBy.MACHINE_START}


@dataclass(frozen=True, slots=True)
class AmdDecision:
    answered_by: AnsweredBy
    detection_ms: int  # audio time from the answer to this decision
    cause: str  # Asterisk style: INITIALSILENCE, LONGGREETING, MAXWORDS, HUMAN, TOOLONG, BEEP, ...
    beep_end_ms: int | None = None  # machine_end_beep: where the beep ended, from the answer
    transcript: str | None = None  # the first turn's words, when they were transcribed
    cue: str | None = None  # the cue phrase of the first turn's words, if one was found

    @property
    def final(self) -> bool:
        return self.answered_by in FINAL


@dataclass(frozen=True, slots=True)
class AmdSettings:
    """Thresholds, all in ms unless named otherwise."""

    vad_mode: int = 3  # webrtcvad aggressiveness 0..3
    speech_gate_db: float = 6.0  # a speech frame is this far above the noise floor
    min_speech_dbfs: float = -55.0
    min_onset_ms: int = 100  # speech must last this long to open an utterance
    blip_ms: int = 40  # speech runs too short to open an utterance but this long, close to
    # the talk before them, still mean "not silent": the loud bits of words in heavy noise
    quiet_below_speech_db: float = 15.0  # a speech frame this far below the voice does not extend
    # an utterance: far talk (babble) the VAD calls speech must not join a hello to its reprompt
    min_turn_speech_ms: int = 140  # a lone turn with less speech than this was a noise
    word_gap_ms: int = 300  # shorter gaps join speech into one utterance
    turn_gap_ms: int = 950  # shorter gaps join utterances into one turn
    human_quick_turn_ms: int = 1000  # a turn up to this long, then ...
    human_silence_ms: int = 1000  # ... this much silence: a person waiting
    human_max_turn_ms: int = 2000  # a turn up to this long, then ...
    human_long_silence_ms: int = 1100  # ... this much silence: a person waiting
    machine_speech_ms: int = 9000  # a turn this long is a recorded greeting
    greeting_silence_ms: int = 3000  # after a longer first turn: a machine recording in silence
    end_silence_ms: int = 2000  # after machine_start: the greeting is over
    initial_silence_ms: int = 6000  # nothing heard at all: unknown
    total_ms: int = 30000
    beep_below_speech_db: float = 15.0  # a beep quieter than the voice by more is ignored
    ced_hz: float = 2100.0
    ced_ms: int = 900
    cng_hz: float = 1100.0
    cng_ms: tuple[int, int] = (350, 800)
    fax_tolerance_hz: float = 40.0
    noise_window_ms: int = 3000


class _State(enum.Enum):
    LISTENING = enum.auto()
    GREETING = enum.auto()  # machine_start said; waiting for the end
    DONE = enum.auto()


_BLOCK_FRAMES = 25  # noise floor: minimum per 500 ms block, over the last few blocks
_DIGITAL_SILENCE = 24  # frames within +-24: a lost packet or silence suppression, not line noise
_PRE_EMPHASIS = 0.9  # high-pass: mains hum and rumble below the telephone band are not speech


class MachineDetector:
    """Feed audio as it arrives; decisions come back as they are made: `human`, `fax` or
    `unknown` (final), or `machine_start` and later one `machine_end_*` (final)."""

    def __init__(
        self,
        settings: AmdSettings | None = None,
        beep: BeepSettings | None = None,
        *,
        cues: CueList | None = None,
        words: WordsSettings | None = None,
    ) -> None:
        """``cues``: listen to the words of the first turn too (`turn_to_transcribe`, `hear`),
        with these cue phrases; None: timing alone."""
        self.settings = s = settings or AmdSettings()
        self._cues = cues
        self._words_settings = words or WordsSettings()
        self._words_state = WordsState.OFF if cues is None else WordsState.WAITING
        self._words: Words | None = None
        self._words_note = "" if cues is not None else "NOWORDS-OFF"
        self._asked_end = -1  # end of the first turn's speech when it was sent to be transcribed
        self._asks = 0
        self._request: Audio | None = None
        self._frames: list[Audio] = []
        self._vad = webrtcvad.Vad(s.vad_mode)
        self._beeps = BeepDetector(beep)
        self._gate = 10 ** (s.speech_gate_db / 10)
        self._beep_margin = 10 ** (-s.beep_below_speech_db / 10)
        self._quiet_margin = 10 ** (-s.quiet_below_speech_db / 10)
        self._min_speech = (32768.0 * 10 ** (s.min_speech_dbfs / 20)) ** 2
        self._blocks: deque[float] = deque(maxlen=max(1, s.noise_window_ms // (_BLOCK_FRAMES * FRAME_MS)))
        self._block_min = float("inf")
        self._block_n = 0
        self._floor = self._min_speech / self._gate
        self._pending: Audio = np.zeros(0, dtype=np.int16)
        self._previous = 0.0
        self._t = 0  # ms of audio fed
        self._state = _State.LISTENING
        self._decision: AmdDecision | None = None
        self._run = 0  # consecutive speech frames
        self._in_utterance = False
        self._last_speech = -1  # end of the last speech frame, ms
        self._voice_before_run = -1  # _last_voice when the current speech run began
        self._last_voice = -1  # end of the last speech run of >= blip_ms, even too short to count
        self._turn_start = -1
        self._turns = 0
        self._first_speech = -1
        self._speech_ms = 0  # total speech heard
        self._speech_level = 0.0  # running mean square of speech frames

    @property
    def decision(self) -> AmdDecision | None:
        """The final decision once made."""
        return self._decision

    @property
    def elapsed_ms(self) -> int:
        return self._t

    def feed(self, pcm: Audio) -> list[AmdDecision]:
        if self._state is _State.DONE:
            return []
        data = np.concatenate((self._pending, pcm)) if len(self._pending) else pcm
        out: list[AmdDecision] = []
        whole = len(data) - len(data) % FRAME
        for i in range(0, whole, FRAME):
            out.extend(self._frame(data[i : i + FRAME]))
            if self._decision is not None:
                self._pending = np.zeros(0, dtype=np.int16)
                return out
        self._pending = data[whole:].copy()
        return out

    def finish(self) -> list[AmdDecision]:
        """End of input: force the final decision if none was made."""
        if self._state is _State.DONE:
            return []
        if self._state is _State.GREETING:
            return [self._final(AnsweredBy.MACHINE_END_OTHER, "ENDOFAUDIO")]
        if self._turns and self._speech_ms >= self.settings.min_turn_speech_ms:
            return self._after_turn_at_end()
        return [self._final(AnsweredBy.UNKNOWN, "ENDOFAUDIO")]

    def _after_turn_at_end(self) -> list[AmdDecision]:
        """The audio ended after speech: a turn then silence always decides. A short last turn,
        or a person's words: ``human``; a greeting's words: a machine; a long turn without cue
        words: a greeting that ended."""
        verdict = self._words.verdict if self._words is not None else Verdict.NEUTRAL
        turn = self._last_speech - self._turn_start
        if verdict is Verdict.MACHINE:
            return [self._start("ENDOFAUDIO-WORDS"), self._final(AnsweredBy.MACHINE_END_OTHER, "ENDOFAUDIO-WORDS")]
        if turn <= self.settings.human_max_turn_ms or verdict is Verdict.PERSON:
            return [self._final(AnsweredBy.HUMAN, self._caused("ENDOFAUDIO"))]
        return [self._start("ENDOFAUDIO"), self._final(AnsweredBy.MACHINE_END_SILENCE, "ENDOFAUDIO")]

    # -- words -------------------------------------------------------------------------------

    @property
    def words(self) -> Words | None:
        """What the first turn's words said, once heard."""
        return self._words

    def turn_to_transcribe(self) -> Audio | None:
        """The first turn's audio, once, when it has ended and wants transcribing: the caller
        transcribes it off this thread and hands the text to `hear` (or None to `hear` when it
        cannot). Decisions wait for it, at most `WordsSettings.wait_ms` of silence."""
        request, self._request = self._request, None
        return request

    def hear(self, transcript: str | None, reason: str = "") -> None:
        """The first turn's transcript (None: there will be none; ``reason`` says why, as
        BUSY or FAILED). It counts from the next frame fed."""
        if self._words_state is not WordsState.WAITING or self._cues is None:
            return
        if transcript is None:
            self._words_state = WordsState.NONE
            self._words_note = f"NOWORDS-{reason or 'NONE'}"
            return
        self._words_state = WordsState.HEARD
        self._words = read_words(transcript, self._cues)

    def _ask_words(self, t: int, silence: int) -> None:
        w = self._words_settings
        turn = self._last_speech - self._turn_start
        went_on = (
            1 <= self._asks < w.max_asks
            and self._words_state is WordsState.HEARD
            and self._words is not None
            and self._words.verdict is not Verdict.MACHINE
            and self._last_speech > self._asked_end
        )
        if (
            (went_on or (self._words_state is WordsState.WAITING and self._asks == 0))
            and self._turns == 1
            and silence >= (w.reask_after_ms if self._asks else w.ask_after_ms)
            and self._speech_ms >= self.settings.min_turn_speech_ms
        ):
            self._asked_end = self._last_speech
            self._asks += 1
            if turn > w.max_turn_ms:
                self._words_state = WordsState.NONE
                self._words_note = "NOWORDS-LONG"
            else:
                self._words_state = WordsState.WAITING
                start = max(0, self._first_speech - 200) // FRAME_MS
                self._request = np.concatenate(self._frames[start:])
            if self._asks >= w.max_asks or self._words_state is WordsState.NONE:
                self._frames = []

    def _caused(self, cause: str) -> str:
        """A timing decision's cause, with why the words had no say when they were wanted."""
        if self._words_state is WordsState.WAITING and self._asked_end >= 0:
            return f"{cause}/NOWORDS-LATE"
        return f"{cause}/{self._words_note}" if self._words_note and self._cues is not None else cause

    # -- per frame ---------------------------------------------------------------------------

    def _frame(self, frame: Audio) -> list[AmdDecision]:
        s = self.settings
        self._t += FRAME_MS
        if self._cues is not None and self._asks < self._words_settings.max_asks:
            self._frames.append(frame)
        t = self._t
        x = frame.astype(np.float32)
        y = x - _PRE_EMPHASIS * np.concatenate(((self._previous,), x[:-1]))
        self._previous = float(x[-1])
        energy = float(np.dot(y, y)) / FRAME
        if int(np.abs(frame).max()) > _DIGITAL_SILENCE:
            self._track_floor(energy)
        beep = self._beeps.feed_frame(frame)
        if beep is not None:
            return self._on_beep(beep)
        tone = self._beeps.tone
        if tone is not None:
            if abs(tone.freq_hz - s.ced_hz) <= s.fax_tolerance_hz and tone.duration_ms >= s.ced_ms:
                return [self._final(AnsweredBy.FAX, "CED")]
            return self._timeouts(t, tone_on=True)
        speech = (
            energy >= self._min_speech
            and energy >= self._floor * self._gate
            and self._vad.is_speech(np.clip(y, -32768, 32767).astype(np.int16).tobytes(), RATE)
        )
        level = float(np.dot(x, x)) / FRAME
        if speech:
            self._speech_level += 0.05 * (level - self._speech_level)
        return self._speech(t, speech, level)

    def _track_floor(self, energy: float) -> None:
        """Noise floor: the minimum frame energy per 500 ms block, over the last blocks."""
        self._block_min = min(self._block_min, energy)
        self._block_n += 1
        if self._block_n >= _BLOCK_FRAMES:
            if self._block_min != float("inf"):
                self._blocks.append(self._block_min)
                self._floor = min(self._blocks)
            self._block_min = float("inf")
            self._block_n = 0
        elif not self._blocks and self._block_min != float("inf"):
            self._floor = self._block_min

    def _speech(self, t: int, speech: bool, level: float) -> list[AmdDecision]:
        s = self.settings
        self._run = self._run + 1 if speech else 0
        if self._run == 1:
            self._voice_before_run = self._last_voice
        run_start = t - self._run * FRAME_MS
        talk_end = max(self._last_voice, self._last_speech)
        if self._run * FRAME_MS >= s.blip_ms and run_start - talk_end < s.turn_gap_ms:
            self._last_voice = t  # a fragment close to the talk before it: still talking
        if speech and self._in_utterance:
            if level >= self._speech_level * self._quiet_margin:
                self._speech_ms += FRAME_MS
                self._last_speech = t
        elif speech and self._run * FRAME_MS >= s.min_onset_ms:
            start = t - self._run * FRAME_MS
            self._in_utterance = True
            self._speech_ms += self._run * FRAME_MS
            gap = start - self._last_speech
            if self._last_speech - self._turn_start > s.human_max_turn_ms:
                gap = start - max(self._last_speech, self._voice_before_run)  # fragments bridge it
            if self._turns == 0 or gap >= s.turn_gap_ms:
                self._turns += 1
                self._turn_start = start
                if self._turns == 1:
                    self._first_speech = start
            self._last_speech = t
        elif not speech and self._in_utterance and t - self._last_speech >= s.word_gap_ms:
            self._in_utterance = False
        return self._timeouts(t, tone_on=False)

    def _timeouts(self, t: int, *, tone_on: bool) -> list[AmdDecision]:
        s = self.settings
        silence = 0 if tone_on or self._in_utterance else t - self._last_speech
        if self._state is _State.GREETING:
            if self._turns and silence >= s.end_silence_ms:
                return [self._final(AnsweredBy.MACHINE_END_SILENCE, "SILENCE")]
            if t >= s.total_ms:
                return [self._final(AnsweredBy.MACHINE_END_OTHER, "TOOLONG")]
            return []
        if self._turns == 0:
            if t >= s.initial_silence_ms and not tone_on:
                return [self._final(AnsweredBy.UNKNOWN, "INITIALSILENCE")]
            return self._time_limit(t)
        turn = self._last_speech - self._turn_start
        if silence < s.turn_gap_ms:
            span = self._last_speech - self._first_speech
            if turn >= s.machine_speech_ms or (
                self._turns > 1 and turn > s.human_max_turn_ms and span >= s.machine_speech_ms
            ):
                return [self._start("LONGGREETING")]
        heard = self._words if self._words_state is WordsState.HEARD else None
        if heard is not None and heard.verdict is Verdict.MACHINE:
            return [self._start("WORDS-MACHINE")]
        if self._in_utterance or tone_on:
            return self._time_limit(t)
        if self._turns == 1 and self._speech_ms < s.min_turn_speech_ms:
            if silence >= s.turn_gap_ms:  # a click or a burst of noise, not a word
                self._turns = 0
                self._speech_ms = 0
            return self._time_limit(t)
        quiet = min(silence, t - max(self._last_voice, self._last_speech))
        if self._words_state is not WordsState.OFF:
            self._ask_words(t, silence)
            if self._turns == 1:
                decided = decide_first_turn(
                    turn, quiet, self._words_state, self._words,
                    whole_turn=self._last_speech == self._asked_end, settings=self._words_settings,
                )
                if decided is not None and decided.call is Call.HUMAN:
                    return [self._final(AnsweredBy.HUMAN, decided.cause)]
                if not timing_may_decide(self._words_state, quiet, self._words_settings):
                    return self._time_limit(t)
        if turn <= s.human_max_turn_ms:
            wait = s.human_silence_ms if turn <= s.human_quick_turn_ms else s.human_long_silence_ms
            if quiet >= wait:
                cause = "HUMAN-SHORT" if self._turns == 1 else "HUMAN-REPROMPT"
                return [self._final(AnsweredBy.HUMAN, self._caused(cause) if self._turns == 1 else cause)]
        elif silence >= s.greeting_silence_ms:
            cause = self._caused("AFTERGREETINGSILENCE")
            return [self._start(cause), self._final(AnsweredBy.MACHINE_END_SILENCE, cause)]
        return self._time_limit(t)

    def _time_limit(self, t: int) -> list[AmdDecision]:
        if t >= self.settings.total_ms:
            return [self._final(AnsweredBy.UNKNOWN, "TOOLONG")]
        return []

    def _on_beep(self, beep: Beep) -> list[AmdDecision]:
        s = self.settings
        if beep.power < self._speech_level * self._beep_margin:
            return []  # a tone far below the voice: something in the background
        if self._state is _State.LISTENING and self._speech_ms < s.min_turn_speech_ms:
            if abs(beep.freq_hz - s.ced_hz) <= s.fax_tolerance_hz:
                return [self._final(AnsweredBy.FAX, "CED")]
            if (
                abs(beep.freq_hz - s.cng_hz) <= s.fax_tolerance_hz
                and s.cng_ms[0] <= beep.duration_ms <= s.cng_ms[1]
            ):
                return [self._final(AnsweredBy.FAX, "CNG")]
        out = [self._start("BEEP")] if self._state is _State.LISTENING else []
        out.append(self._final(AnsweredBy.MACHINE_END_BEEP, "BEEP", beep.end_ms))
        return out

    def _start(self, cause: str) -> AmdDecision:
        self._state = _State.GREETING
        return self._said(AmdDecision(AnsweredBy.MACHINE_START, self._t, cause))

    def _final(self, answered_by: AnsweredBy, cause: str, beep_end_ms: int | None = None) -> AmdDecision:
        self._state = _State.DONE
        self._frames = []
        self._decision = self._said(AmdDecision(answered_by, self._t, cause, beep_end_ms))
        return self._decision

    def _said(self, decision: AmdDecision) -> AmdDecision:
        if self._words is None:
            return decision
        return replace(decision, transcript=self._words.transcript, cue=self._words.cue)


def classify(
    pcm: Audio,
    settings: AmdSettings | None = None,
    *,
    cues: CueList | None = None,
    transcribe: Callable[[Audio], str | None] | None = None,
) -> list[AmdDecision]:
    """Every decision over a whole recording (8 kHz mono int16), the final one last. With
    ``cues`` and ``transcribe``, the first turn's words count too (transcribed at once, as if
    the words came back instantly)."""
    detector = MachineDetector(settings, cues=cues if transcribe is not None else None)
    decisions: list[AmdDecision] = []
    for i in range(0, len(pcm), FRAME):
        decisions.extend(detector.feed(pcm[i : i + FRAME]))
        if detector.decision is not None:
            return decisions
        turn = detector.turn_to_transcribe()
        if turn is not None and transcribe is not None:
            text = transcribe(turn)
            detector.hear(text, "" if text is not None else "FAILED")
    return decisions + detector.finish()
