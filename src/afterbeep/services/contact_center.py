"""The ports between the parts of the representatives' chain (seed 002).

Three parts meet here:
- the Telephony API (`/telephony/v1`): voice calls, their transcript, routing them (omniFlow);
- the work router: a routed voice call becomes a work item in a queue, offered to an agent;
- the sequence: a voicemail left for a team runs the seed's steps (create, update, transcript,
  route, close), against afterbeep's own Telephony API in process or an outside contact center's
  over HTTP (the connector).

`TelephonyApi` speaks the wire JSON (the seed's field names, camelCase) in both directions, so
the same sequence runs unchanged against the local service or a remote one.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

Json = dict[str, Any]


class Channel(enum.StrEnum):
    VOICEMAIL = "voicemail"
    CALL = "call"
    CALLBACK = "callback"


class TelephonyApiError(Exception):
    """A step the far end refused or could not do: `status` is the HTTP status (or the one the
    local service maps its error to), `problem` the RFC 9457 body or the seed's `errors` answer.
    `retryable` is True for 5xx, 429 and transport errors."""

    def __init__(self, status: int, problem: Mapping[str, Any], *, retryable: bool = False) -> None:
        super().__init__(f"telephony api {status}: {problem.get('title') or problem}")
        self.status = status
        self.problem = dict(problem)
        self.retryable = retryable


class TelephonyApi(Protocol):
    """The seed 002 Telephony API, one call center's view of it. Bodies and answers are the wire
    JSON of `/telephony/v1`."""

    async def create_voice_call(self, body: Mapping[str, Any]) -> Json:
        """POST /voiceCalls -> {"voiceCallId": ..., "errors": []}."""
        ...

    async def update_voice_call(self, key: str, body: Mapping[str, Any]) -> Json:
        """PATCH /voiceCalls/{voiceCallId or vendorCallKey}."""
        ...

    async def add_messages(self, vendor_call_key: str, body: Mapping[str, Any]) -> Json:
        """POST /voiceCalls/{vendorCallKey}/messages ({"messages": [...]})."""
        ...

    async def route(self, voice_call_id: str, body: Mapping[str, Any]) -> Json:
        """PATCH /voiceCalls/{id}/omniFlow -> {"agent": ..., "queue": ...} or {"errors": [...]}."""
        ...


@dataclass(frozen=True, slots=True)
class WorkRequest:
    """Route one voice call into a queue. `weight` None: the channel's default (a voicemail is
    lighter than a live call); `priority`: lower is offered first (1 highest)."""

    account_id: str
    voice_call_id: str
    queue_id: str
    channel: Channel = Channel.VOICEMAIL
    priority: int = 5
    weight: int | None = None


@dataclass(frozen=True, slots=True)
class WorkPlacement:
    work_item_id: str
    queue_id: str
    agent_id: str | None  # the user (usr_) it is offered to or assigned to; None while pending
    created: bool  # False: the voice call already had a work item (routing is idempotent)


class WorkRouter(Protocol):
    """Work items: pending -> reserved -> assigned -> wrapping -> completed, or canceled."""

    async def place(self, request: WorkRequest) -> WorkPlacement:
        """Create the voice call's work item (or return the one it has) and offer it if an agent
        can take it now."""
        ...

    async def clear(self, account_id: str, voice_call_id: str, reason: str) -> bool:
        """clearRouting: cancel the voice call's open work item; False when it had none."""
        ...

    async def voice_call_changed(self, account_id: str, voice_call_id: str) -> None:
        """The voice call's transcript or recording changed: refresh what its agent sees."""
        ...


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    participant_id: str
    sender_type: str  # END_USER, HUMAN_AGENT, VIRTUAL_AGENT, ...
    start_ms: int  # within the call
    end_ms: int
    content: str


@dataclass(frozen=True, slots=True)
class VoiceCallSummary:
    """What an agent's work item shows of its voice call."""

    voice_call_id: str
    vendor_call_key: str
    from_number: str  # E.164 where it is a number
    to_number: str
    call_origin: str | None  # Voicemail, Preview, Progressive
    recording_location: str | None
    total_recording_duration: float | None  # seconds
    callback_number: str | None
    transcript: tuple[TranscriptLine, ...]
    call_center_id: str


class VoiceCallReader(Protocol):
    async def summary(self, account_id: str, voice_call_id: str) -> VoiceCallSummary | None: ...


class CallbackState(enum.StrEnum):
    CALLING_AGENT = "calling_agent"
    CALLING_CUSTOMER = "calling_customer"
    CONNECTED = "connected"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    account_id: str
    agent_user_id: str  # usr_: its registered devices ring first
    customer_number: str  # E.164
    caller_id: str  # E.164 the customer sees (the number the call center chose)
    voice_call_id: str  # the result is recorded on it
    work_item_id: str | None = None


@dataclass(frozen=True, slots=True)
class CallbackStatus:
    id: str  # cb_
    state: CallbackState
    reason: str | None = None  # why it failed: agent_no_answer, customer_busy, ...


class Callbacks(Protocol):
    """The agent's callback action: ring the agent's device, then the customer, bridge them."""

    async def start(self, request: CallbackRequest) -> CallbackStatus:
        """Starts the calls and returns at once (state calling_agent) or raises InvalidInput /
        Unavailable (no registered device, outbound not allowed)."""
        ...

    async def status(self, account_id: str, callback_id: str) -> CallbackStatus | None: ...
