"""The seed 002 sequence for one voicemail left for a team: its steps, the wire bodies of each,
and what a failed step leads to. Pure: no I/O, the time is passed in.

A delivery (`ccr_...`) is one message's run of the sequence against one Telephony API (afterbeep's
own, or an outside contact center's through a connector):

1. `create`: POST /voiceCalls with `callOrigin: Voicemail` and a vendorCallKey derived from the
   message's call (the same key again answers the same record);
2. `activate`: PATCH the call with `isActiveCall: true` (the conversation stays open);
3. `transcript`: once the message's transcription is over (or the wait for it ran out), POST its
   sentences as END_USER entries; a message without a transcript (too long, failed, off) goes on
   without one, and the delivery says why;
4. `route`: PATCH /omniFlow with the dialed number, the mailbox's queue as `fallbackQueue`;
5. `close`: PATCH the call with `isActiveCall: false`, `recordingLocation`,
   `totalRecordingDuration`.

The steps done are kept with the delivery, so a restart resumes at the first step not done and
never repeats one that succeeded. A retryable failure (5xx, 429, transport) is tried again after
a backoff, up to `max_attempts` in a row; any other failure, or the last try, fails the delivery
with its reason.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from afterbeep.domain.clock import iso
from afterbeep.domain.transcripts import Transcript, TranscriptionStatus, voice_call_messages
from afterbeep.domain.webhooks import backoff

Json = dict[str, Any]

CALL_CENTER_API_NAME_MAX = 80
ERROR_MAX = 500
# The namespace of the vendorCallKeys afterbeep derives (UUID v5 of account and call id).
_KEY_NAMESPACE = uuid.UUID("5b0e1d0c-6f7a-4d55-9c1e-a1b2c3d4e5f6")
ANONYMOUS = "anonymous"


class Step(enum.StrEnum):
    CREATE = "create"
    ACTIVATE = "activate"
    TRANSCRIPT = "transcript"
    ROUTE = "route"
    CLOSE = "close"


STEPS: tuple[Step, ...] = tuple(Step)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Tries of one step in a row before the delivery fails; the backoff between them."""

    max_attempts: int = 8
    base_seconds: float = 5.0
    cap_seconds: float = 600.0
    transcript_wait_seconds: float = 300.0  # how long `transcript` waits for the transcription
    transcript_poll_seconds: float = 15.0  # while waiting, how often it looks again


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str  # ccr_
    account_id: str
    message_id: str
    mailbox_id: str
    queue_id: str
    vendor_call_key: str
    status: DeliveryStatus
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime
    transcript_wait_until: datetime
    connector_id: str | None = None  # ccx_: an outside contact center; None: afterbeep's own
    call_center_id: str | None = None  # cc_: the call center of afterbeep's own API
    steps_done: tuple[Step, ...] = ()
    attempts: int = 0  # failed tries of the current step in a row
    voice_call_id: str | None = None
    routed: Json | None = None  # the omniFlow answer ({"agent", "queue"})
    transcript_note: str | None = None  # what became of the transcript step
    last_error: str | None = None  # the last failure (the reason, once failed)

    def next_step(self) -> Step | None:
        for step in STEPS:
            if step not in self.steps_done:
                return step
        return None


@dataclass(frozen=True, slots=True)
class Recording:
    """What the sequence needs of the saved message."""

    message_id: str
    call_id: str
    caller: str | None
    callee: str | None  # the dialed number
    duration_ms: int
    saved_at: datetime  # when the message was stored (the call had ended)
    transcription_status: TranscriptionStatus
    transcription_reason: str | None
    transcript: Transcript | None
    recording_location: str

    @property
    def ended_at(self) -> datetime:
        return self.saved_at

    @property
    def started_at(self) -> datetime:
        """When the recording began (the call's start as far as the voice call is concerned)."""
        return self.saved_at - timedelta(milliseconds=self.duration_ms)

    @property
    def from_number(self) -> str:
        return self.caller or ANONYMOUS

    @property
    def to_number(self) -> str:
        return self.callee or ""


FAILED_EVENT = "cc_delivery.failed"


def to_json(delivery: Delivery) -> Json:
    """The delivery as webhook events carry it (the API adds its requests and answers)."""
    return {
        "id": delivery.id,
        "message_id": delivery.message_id,
        "mailbox_id": delivery.mailbox_id,
        "queue_id": delivery.queue_id,
        "connector_id": delivery.connector_id,
        "call_center_id": delivery.call_center_id,
        "vendor_call_key": delivery.vendor_call_key,
        "voice_call_id": delivery.voice_call_id,
        "status": delivery.status.value,
        "steps_done": [step.value for step in delivery.steps_done],
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
        "created_at": iso(delivery.created_at),
        "updated_at": iso(delivery.updated_at),
    }


def vendor_call_key(account_id: str, call_id: str) -> str:
    """The stable vendorCallKey of a recorded call: the same call always gets the same key."""
    return str(uuid.uuid5(_KEY_NAMESPACE, f"{account_id}:{call_id}"))


def epoch_ms(at: datetime) -> int:
    return int(at.astimezone(UTC).timestamp() * 1000)


def create_body(call_center_api_name: str, key: str, rec: Recording) -> Json:
    return {
        "callCenterApiName": call_center_api_name,
        "vendorCallKey": key,
        "to": rec.to_number,
        "from": rec.from_number,
        "initiationMethod": "Inbound",
        "callOrigin": "Voicemail",
        "startTime": iso(rec.started_at),
        "participants": [{"participantKey": rec.from_number, "type": "END_USER"}],
    }


def activate_body() -> Json:
    return {"isActiveCall": True, "callOrigin": "Voicemail"}


@dataclass(frozen=True, slots=True)
class TranscriptPlan:
    """What the transcript step does: post `body`, or (body None) go on and say why (`note`)."""

    body: Json | None
    note: str


def transcript_ready(rec: Recording, now: datetime, wait_until: datetime) -> bool:
    """Whether the transcript step may run now: the transcription is over, or waited for enough."""
    return rec.transcription_status is not TranscriptionStatus.PENDING or now >= wait_until


def transcript_plan(rec: Recording) -> TranscriptPlan:
    status, transcript = rec.transcription_status, rec.transcript
    if status is TranscriptionStatus.DONE and transcript is not None:
        entries = voice_call_messages(
            transcript,
            message_id=rec.message_id,
            participant_id=rec.from_number,
            recording_started_ms=epoch_ms(rec.started_at),
        )
        if entries:
            return TranscriptPlan({"messages": entries}, f"sent: {len(entries)} entries")
        return TranscriptPlan(None, "none: nothing was said")
    if status is TranscriptionStatus.PENDING:
        return TranscriptPlan(None, "none: the transcript was not ready in time")
    reason = f": {rec.transcription_reason}" if rec.transcription_reason else ""
    return TranscriptPlan(None, f"none: transcription {status.value}{reason}"[:ERROR_MAX])


def route_body(rec: Recording, fallback_queue: str | None) -> Json:
    body: Json = {"dialedNumber": rec.to_number}
    if fallback_queue:
        body["fallbackQueue"] = fallback_queue
    return body


def route_errors(answer: Json) -> str | None:
    """The errors of an omniFlow answer, as one reason; None when it routed."""
    errors = answer.get("errors")
    if not errors:
        return None
    parts = []
    for error in errors if isinstance(errors, list) else [errors]:
        if isinstance(error, dict):
            parts.append(str(error.get("message") or error.get("detail") or error))
        else:
            parts.append(str(error))
    return ("routing refused: " + "; ".join(parts))[:ERROR_MAX]


def close_body(rec: Recording) -> Json:
    return {
        "isActiveCall": False,
        "endTime": iso(rec.ended_at),
        "recordingLocation": rec.recording_location,
        "totalRecordingDuration": round(rec.duration_ms / 1000, 3),
    }


@dataclass(frozen=True, slots=True)
class AfterFailure:
    """A failed try of a step: tried again at `retry_at`, or (None) the delivery failed."""

    attempts: int
    retry_at: datetime | None
    reason: str


def after_failure(
    attempts_before: int, reason: str, *, retryable: bool, now: datetime, policy: RetryPolicy
) -> AfterFailure:
    attempts = attempts_before + 1
    reason = reason[:ERROR_MAX]
    if not retryable or attempts >= policy.max_attempts:
        return AfterFailure(attempts, None, reason)
    delay = backoff(attempts, policy.base_seconds, policy.cap_seconds)
    return AfterFailure(attempts, now + delay, reason)


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request to a Telephony API and its answer (or the error instead), as recorded."""

    step: Step
    method: str
    path: str
    request: Json | None
    status: int | None  # HTTP status (or the local service's); None: no answer (transport)
    answer: Json | None
    error: str | None
    at: datetime
    attempt: int = 1  # the HTTP attempt within the step (a connector retries 5xx, 429)
