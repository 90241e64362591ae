"""Voicemail drops: how one drop call ended, and what that means for the send.

A drop is a send of kind `drop` (`drop_...`), delivered by the same engine and rules as a
ringless send, but by calling the recipient: the answering machine detector listens from the
answer, a person gets a hang-up and nothing played, a machine gets the whole recording after
its beep. The outcome of one attempt (`DropOutcome`) maps to the send's status here, in pure
functions the engine calls:

- `left_voicemail` and `human_answered` are final at once;
- `busy` and `no_answer` are retried with the use case's backoff up to `max_attempts`, then
  become the final status;
- `failed` carries a reason: `sit_tone`, `fax`, `invalid_number` and
  `media_address_not_allowed` (the far end's SDP aimed our audio outside the network policy)
  are final at once;
  `trunk_error` and `message_cut_off` are retried, then final.

A ringless send whose use case names a drop use case as its fallback may be delivered by a
drop: `left_voicemail` is `delivered` (method `drop`), the rest follows the ringless rules.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from afterbeep.domain.ringless import SendStatus, VoicemailSend

DROP_STATUS_EVENT = "drop.status"
DETECTION_LIMIT_S = 35.0  # wall clock a drop listens at most; the detector decides by 30 s of audio


class DropOutcome(enum.StrEnum):
    LEFT_VOICEMAIL = "left_voicemail"
    HUMAN_ANSWERED = "human_answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"


class DropFailure(enum.StrEnum):
    SIT_TONE = "sit_tone"
    FAX = "fax"
    INVALID_NUMBER = "invalid_number"
    TRUNK_ERROR = "trunk_error"
    MESSAGE_CUT_OFF = "message_cut_off"  # the far end hung up while the message played
    MEDIA_ADDRESS_NOT_ALLOWED = "media_address_not_allowed"


FINAL_FAILURES = frozenset(
    {
        DropFailure.SIT_TONE,
        DropFailure.FAX,
        DropFailure.INVALID_NUMBER,
        DropFailure.MEDIA_ADDRESS_NOT_ALLOWED,
    }
)
INVALID_NUMBER_CODES = frozenset({404, 484, 604})
BUSY_CODES = frozenset({486, 600, 603})
NO_ANSWER_CODES = frozenset({408, 480, 487})


@dataclass(frozen=True, slots=True)
class DropResult:
    """How one drop attempt ended. `reason` is a `DropFailure` value for `failed`; for the
    other outcomes it may say more (e.g. `undetermined` for a no-answer after an `unknown`
    detection). `answered_by`, `detection_ms`, `beep_ms` come from the detector."""

    outcome: DropOutcome
    sip_code: int | None = None
    reason: str | None = None
    duration_ms: int = 0
    answered_by: str | None = None
    detection_ms: int | None = None
    beep_ms: int | None = None

    @property
    def retryable(self) -> bool:
        if self.outcome in (DropOutcome.BUSY, DropOutcome.NO_ANSWER):
            return True
        return self.outcome is DropOutcome.FAILED and self.reason not in FINAL_FAILURES

    @property
    def failure_reason(self) -> str:
        """The reason a send records when this attempt does not leave the message."""
        if self.outcome is DropOutcome.FAILED:
            return self.reason or DropFailure.TRUNK_ERROR.value
        return self.outcome.value


def outcome_of_code(code: int) -> tuple[DropOutcome, DropFailure | None]:
    """A final SIP response to the drop's INVITE (no answer): busy, no answer or a failure."""
    if code in BUSY_CODES:
        return DropOutcome.BUSY, None
    if code in NO_ANSWER_CODES:
        return DropOutcome.NO_ANSWER, None
    if code in INVALID_NUMBER_CODES:
        return DropOutcome.FAILED, DropFailure.INVALID_NUMBER
    return DropOutcome.FAILED, DropFailure.TRUNK_ERROR


@dataclass(frozen=True, slots=True)
class Step:
    """What the engine does after an attempt: `retry` (the send stays accepted, due after
    the backoff) or the final `status` with `reason` (failure_reason of a failed send)."""

    status: SendStatus
    retry: bool
    reason: str | None


def drop_step(result: DropResult, attempt: int, max_attempts: int) -> Step:
    """After attempt number `attempt` of a drop send."""
    if result.outcome is DropOutcome.LEFT_VOICEMAIL:
        return Step(SendStatus.LEFT_VOICEMAIL, False, None)
    if result.outcome is DropOutcome.HUMAN_ANSWERED:
        return Step(SendStatus.HUMAN_ANSWERED, False, None)
    if result.retryable and attempt < max_attempts:
        return Step(SendStatus.ACCEPTED, True, result.failure_reason)
    if result.outcome is DropOutcome.BUSY:
        return Step(SendStatus.BUSY, False, None)
    if result.outcome is DropOutcome.NO_ANSWER:
        return Step(SendStatus.NO_ANSWER, False, None)
    return Step(SendStatus.FAILED, False, result.failure_reason)


def fallback_step(result: DropResult, attempt: int, max_attempts: int) -> Step:
    """After attempt `attempt` of a ringless send delivered by its fallback drop use case."""
    if result.outcome is DropOutcome.LEFT_VOICEMAIL:
        return Step(SendStatus.DELIVERED, False, None)
    if result.retryable and attempt < max_attempts:
        return Step(SendStatus.ACCEPTED, True, result.failure_reason)
    return Step(SendStatus.FAILED, False, result.failure_reason)


def drop_status_payload(send: VoicemailSend) -> dict[str, Any]:
    """The `drop.status` event body, published on every status change of a drop."""
    return {
        "id": send.id,
        "status": send.status.value,
        "failure_reason": send.failure_reason,
        "skip_reason": send.skip_reason,
        "to": send.to_e164,
        "foreign_id": send.foreign_id,
        "use_case_id": send.use_case_id,
        "campaign_id": send.campaign_id,
        "answered_by": send.answered_by,
        "detection_ms": send.detection_ms,
        "beep_ms": send.beep_ms,
    }
