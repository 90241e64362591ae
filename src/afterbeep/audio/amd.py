"""Answering machine detection: a streaming detector fed 8 kHz audio from the moment of answer.

(Contract only; the detector is being written.)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Audio = npt.NDArray[np.int16]

RATE = 8000
FRAME = 160  # 20 ms


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

    @property
    def final(self) -> bool:
        return self.answered_by in FINAL


class MachineDetector:
    """Feed audio as it arrives; decisions come back as they are made: `human`, `fax` or
    `unknown` (final), or `machine_start` and later one `machine_end_*` (final)."""

    def feed(self, pcm: Audio) -> list[AmdDecision]:
        raise NotImplementedError

    @property
    def decision(self) -> AmdDecision | None:
        """The final decision once made."""
        raise NotImplementedError


def classify(pcm: Audio) -> list[AmdDecision]:
    """Every decision over a whole recording (8 kHz mono int16), the final one last."""
    raise NotImplementedError
