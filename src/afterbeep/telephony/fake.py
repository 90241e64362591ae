"""A scripted call for unit tests of call scripts: no network, no clock, time is in samples.

The caller side is described up front: the audio it sends from the moment of answer, the keys
it presses (at ms offsets on the call's timeline) and when it hangs up. ``late_ms`` makes the
script late after each play (an event loop that lags): time passes before its next step, and
keys pressed meanwhile are typed ahead (a `record(from_prompt_end=True)` takes those as pressed
during the recording, as `SipCall` does). Everything the script plays is kept in `played` with
its start time, so a test can check what the caller heard.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import numpy as np

from afterbeep.audio.levels import is_silent
from afterbeep.telephony.interface import Audio, CallEnded, EndedBy, Recording, RecordingSink
from afterbeep.telephony.media.preroll import PREROLL_SECONDS

SAMPLES_PER_MS = 8
FRAME = 160


@dataclass
class FakeCall:
    caller_audio: Audio = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    keys: list[tuple[int, str]] = field(default_factory=list)
    hangup_at_ms: int | None = None
    late_ms: int = 0  # the script reaches its next step this late after each play
    call_id: str = "call_01jg8asp59ps9rtt7azhrhvcre"
    caller: str | None = "+12025550123"
    caller_name: str | None = None
    callee: str | None = "+12025550100"

    now: int = 0  # samples since answer
    answered: bool = False
    hung_up_by_us: bool = False
    played: list[tuple[int, Audio]] = field(default_factory=list)
    prompt_end: int | None = None  # where the last play ended
    _typed_ahead: list[tuple[int, str]] = field(default_factory=list)  # (when, key)

    @property
    def now_ms(self) -> int:
        return self.now // SAMPLES_PER_MS

    def heard(self) -> Audio:
        """What the caller heard, placed on the call's timeline."""
        end = max((start + len(audio) for start, audio in self.played), default=0)
        out = np.zeros(end, dtype=np.int16)
        for start, audio in self.played:
            out[start : start + len(audio)] = audio
        return out

    def _check_alive(self) -> None:
        if self.hung_up_by_us or self._remote_gone(self.now):
            raise CallEnded()

    def _remote_gone(self, at: int) -> bool:
        return self.hangup_at_ms is not None and at >= self.hangup_at_ms * SAMPLES_PER_MS

    def _keys_between(self, start: int, end: int) -> list[tuple[int, str]]:
        return [(ms * SAMPLES_PER_MS, k) for ms, k in self.keys if start <= ms * SAMPLES_PER_MS < end]

    async def answer(self) -> None:
        self.answered = True

    async def play(
        self,
        audio: Audio | tuple[Audio, ...],
        interrupt_on: str = "",
        then: Audio | None = None,
        from_answer: bool = False,
    ) -> str | None:
        key = None
        for part in audio if isinstance(audio, tuple) else (audio,):
            key = await self._play_one(part, interrupt_on)
            if key is not None:
                break
        if then is not None:
            await self._play_one(then, "")
        self.prompt_end = self.now
        self.now += self.late_ms * SAMPLES_PER_MS
        self._typed_ahead.extend(self._keys_between(self.prompt_end, self.now))
        return key

    async def _play_one(self, audio: Audio, interrupt_on: str) -> str | None:
        self._check_alive()
        start, end = self.now, self.now + len(audio)
        if self.hangup_at_ms is not None:
            end = min(end, self.hangup_at_ms * SAMPLES_PER_MS)
        for at, key in self._keys_between(start, end):
            if key in interrupt_on:
                self.played.append((start, audio[: at - start]))
                self.now = at + 1
                return key
            self._typed_ahead.append((at, key))
        self.played.append((start, audio[: end - start]))
        self.now = end
        self._check_alive()
        return None

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
        self._check_alive()
        if from_prompt_end and self.prompt_end is not None:  # as SipCall: a bounded pre-roll
            since = self.prompt_end
            # keys from the prompt's end on are the recording's: seen again below, from `now`
            self._typed_ahead = [(at, key) for at, key in self._typed_ahead if at < since]
            self.now = max(since, self.now - int(PREROLL_SECONDS * 8000))
            lost = [at for at, key in self._keys_between(since, self.now) if key in finish_on]
            if lost:
                self.now = lost[0] + 1  # pressed before the audio kept began
                return Recording(0, EndedBy.FINISH_KEY)
        limit = int(max_seconds * 8000)
        silence_limit = int(silence_seconds * 8000)
        taken = 0
        silent_run = 0
        while True:
            if self._remote_gone(self.now):
                return Recording(taken, EndedBy.HANGUP)
            for at, key in self._keys_between(self.now, self.now + FRAME):
                if key in finish_on:
                    self.now = at + 1
                    return Recording(taken, EndedBy.FINISH_KEY)
            frame = self.caller_audio[self.now : self.now + FRAME]
            if len(frame) < FRAME:
                frame = np.concatenate([frame, np.zeros(FRAME - len(frame), dtype=np.int16)])
            sink.write(frame)
            taken += FRAME
            self.now += FRAME
            silent_run = silent_run + FRAME if is_silent(frame, silence_threshold) else 0
            if taken >= limit:
                return Recording(taken, EndedBy.MAX_LENGTH)
            if silent_run >= silence_limit:
                return Recording(taken, EndedBy.SILENCE)

    async def collect_digits(
        self,
        max_digits: int,
        timeout: float,
        terminator: str = "#",
        *,
        inter_digit_timeout: float | None = None,
    ) -> str:
        digits = ""
        pending = self._typed_ahead
        self._typed_ahead = []
        deadline = self.now + int(timeout * 8000)
        for index, (_, key) in enumerate(pending):
            if key in terminator or len(digits) + 1 >= max_digits:
                self._typed_ahead = pending[index + 1 :]  # the rest stays typed ahead
                return digits if key in terminator else digits + key
            digits += key
        if digits and inter_digit_timeout is not None:
            deadline = self.now + int(inter_digit_timeout * 8000)
        while upcoming := self._keys_between(self.now, deadline):
            at, key = min(upcoming)
            self.now = at + 1
            if key in terminator:
                return digits
            digits += key
            if len(digits) >= max_digits:
                return digits
            if inter_digit_timeout is not None:
                deadline = at + int(inter_digit_timeout * 8000)
        self.now = deadline
        self._check_alive()
        return digits

    async def listen(self) -> AsyncGenerator[Audio, None]:
        """The caller's audio from `now` in 20 ms frames (silence after its end), until the
        caller hangs up or we do; time moves with every frame taken."""
        while not self.hung_up_by_us and not self._remote_gone(self.now):
            frame = self.caller_audio[self.now : self.now + FRAME]
            if len(frame) < FRAME:
                frame = np.concatenate([frame, np.zeros(FRAME - len(frame), dtype=np.int16)])
            self.now += FRAME
            yield frame

    async def hangup(self) -> None:
        self.hung_up_by_us = True
