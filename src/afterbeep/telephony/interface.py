"""The small call interface that call scripts are written against.

A script (deposit, phone menu, drop) only sees `Call`: the SIP implementation and the scripted
`FakeCall` of the unit tests both provide it. Audio is 8 kHz mono int16 PCM throughout.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from afterbeep.domain.messages import EndedBy as EndedBy

Audio = npt.NDArray[np.int16]

DTMF_KEYS = frozenset("0123456789*#ABCD")


class CallEnded(Exception):
    """The far end hung up (or the call failed) while the script was waiting on it."""


@dataclass(frozen=True, slots=True)
class Recording:
    samples: int
    ended_by: EndedBy

    @property
    def duration_ms(self) -> int:
        return self.samples // 8


class RecordingSink(Protocol):
    """Where `record()` puts audio as it arrives (a spool file for messages)."""

    def write(self, pcm: Audio) -> None: ...


class Call(Protocol):
    call_id: str
    caller: str | None
    caller_name: str | None
    callee: str | None

    async def answer(self) -> None: ...

    async def play(
        self,
        audio: Audio | tuple[Audio, ...],
        interrupt_on: str = "",
        then: Audio | None = None,
        from_answer: bool = False,
    ) -> str | None:
        """Play to the end, or until one of `interrupt_on` is pressed (that key is returned).

        A tuple is played back to back, a key skipping the rest of it; `then` follows at once
        (after a key too) and cannot be skipped: the whole sequence is on time even when the
        event loop is not (a beep after the greeting, say). With `from_answer`, the call's
        first audio is timed from the answer: what of the tuple was due before the play began
        is skipped, so that `then` is not late (a deposit's beep).

        Raises CallEnded when the far end hangs up.
        """
        ...

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
        """Record into `sink` until a finish key, hang-up, the maximum length, or silence.

        A hang-up ends the recording normally (what was said is kept). The recording starts
        now, or, with `from_prompt_end`, where the last prompt played ended on the media
        clock (its last frame's scheduled time, a deposit's beep): what the caller said since
        then is kept however late the script gets here (up to a few seconds), what came before
        is not, and the maximum length and the silence count from there.
        """
        ...

    async def collect_digits(
        self,
        max_digits: int,
        timeout: float,
        terminator: str = "#",
        *,
        inter_digit_timeout: float | None = None,
    ) -> str:
        """Keys pressed (including any typed ahead), until `max_digits` of them, one of the
        `terminator` keys (not returned; `""`: none) or a timeout. Raises CallEnded.

        `timeout` bounds the whole entry; with `inter_digit_timeout`, it bounds the wait for
        the first key only, and after each key the next must come within `inter_digit_timeout`.
        """
        ...

    async def hangup(self) -> None: ...


class ListeningCall(Call, Protocol):
    """A call whose received audio a script can listen to as it arrives (the drop's
    answering machine detector does); `SipCall` and `FakeCall` are both."""

    def listen(self) -> AsyncGenerator[Audio, None]:
        """The audio received from now on, as it arrives, until the call ends. Close it when
        done (`contextlib.aclosing`)."""
        ...
