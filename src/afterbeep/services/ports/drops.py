"""The drop dialer port: the delivery engine asks it to place one voicemail drop.

The adapter (`afterbeep.telephony.dropper.SipDropper`) dials through the setup's trunk, paced
like every other call of that trunk, runs answering machine detection on the answered call and
plays the audio only to a machine, after its beep. It never raises for a call's outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from afterbeep.domain.drops import DropResult
from afterbeep.domain.ringless import (
    DEFAULT_FIRST_CALL_BOUND_MS,
    DEFAULT_SECOND_CALL_DELAY_MS,
    DropTechnique,
)

Audio = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class DropRequest:
    send_id: str
    setup_id: str
    calls_per_second: float
    max_concurrent_calls: int
    to_uri: str
    from_uri: str
    username: str | None
    password: str | None
    outbound_proxy: str | None
    headers: tuple[tuple[str, str], ...]
    audio: Audio = field(repr=False)
    technique: DropTechnique = DropTechnique.TWO_CALL
    second_call_delay_ms: int = DEFAULT_SECOND_CALL_DELAY_MS
    first_call_bound_ms: int = DEFAULT_FIRST_CALL_BOUND_MS


class DropDialer(Protocol):
    async def drop(self, request: DropRequest) -> DropResult: ...
