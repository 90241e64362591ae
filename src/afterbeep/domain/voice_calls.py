"""Voice calls of the Telephony API (seed 002): a partner system's record of one call, its
transcript, and the rules of its updates.

A voice call is open (`is_active_call`) from its creation until an update that does not say
`isActiveCall: true`: the vendor's own sample sequence ends with an update carrying only the
recording fields, so such an update completes the conversation (and sets the end time to now
when none was given). The duration is computed when both the start and end times are known.

Times come as ISO 8601 strings or epoch milliseconds (the vendor's clients differ); epoch
seconds are accepted where a number is too small to be milliseconds of this century (the demo
connector sends seconds in its transcripts). Everything here is pure: `now` is passed in.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from afterbeep.domain.errors import InvalidInput

MAX_KEY_LEN = 200
MAX_NUMBER_LEN = 64
MAX_NAME_LEN = 200
MAX_ATTRIBUTES_LEN = 32_768
MAX_LOCATION_LEN = 2_000
MAX_CONTENT_LEN = 32_768
MAX_MESSAGES = 500  # per request
MAX_PARTICIPANTS = 20
# Numbers below this are epoch seconds, at or above it epoch milliseconds (1e11 ms is 1973).
_MS_THRESHOLD = 100_000_000_000
_MIN_EPOCH_SECONDS = 1_000_000_000  # 2001: smaller numbers are neither
_EARLIEST_MS = 946_684_800_000  # 2000-01-01
_LATEST_MS = 253_370_764_800_000  # 9999-01-01: room for a tolerance after it
# A transcript entry may start a little before the call's recorded start (clocks differ).
MESSAGE_TOLERANCE = timedelta(seconds=5)
_KEY_RE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces


class InitiationMethod(enum.StrEnum):
    INBOUND = "Inbound"
    TRANSFER = "Transfer"
    OUTBOUND = "Outbound"
    CALLBACK = "Callback"  # a callback requested on another voice call (its parent)


class CallOrigin(enum.StrEnum):
    VOICEMAIL = "Voicemail"
    PREVIEW = "Preview"
    PROGRESSIVE = "Progressive"


class SenderType(enum.StrEnum):
    END_USER = "END_USER"
    EXTERNAL_USER = "EXTERNAL_USER"
    HUMAN_AGENT = "HUMAN_AGENT"
    SUPERVISOR = "SUPERVISOR"
    VIRTUAL_AGENT = "VIRTUAL_AGENT"


@dataclass(frozen=True, slots=True)
class Participant:
    participant_key: str
    type: str = "END_USER"


@dataclass(frozen=True, slots=True)
class VoiceCall:
    id: str
    account_id: str
    call_center_id: str
    vendor_call_key: str
    to_number: str
    from_number: str
    initiation_method: InitiationMethod
    start_time: datetime
    created_at: datetime
    updated_at: datetime
    participants: tuple[Participant, ...] = ()
    call_origin: CallOrigin | None = None
    parent_voice_call_id: str | None = None
    queue: str | None = None  # as the partner named it (a queue id or name)
    agent: str | None = None
    call_attributes: str | None = None  # a string holding a JSON object
    end_time: datetime | None = None
    is_active_call: bool = True
    recording_location: str | None = None
    total_recording_duration: float | None = None  # seconds
    disconnect_reason: str | None = None
    disconnect_is_error: bool | None = None
    enqueue_time: datetime | None = None
    accept_time: datetime | None = None
    total_hold_duration: float | None = None
    longest_hold_duration: float | None = None
    number_of_holds: int | None = None
    agent_interaction_duration: float | None = None
    callback_number: str | None = None
    callback_voice_call_id: str | None = None  # the voice call requestCallback made
    routed_queue_id: str | None = None  # the queue omniFlow chose, kept so routing is stable
    work_item_id: str | None = None

    @property
    def duration(self) -> float | None:
        """Seconds between the start and end times, when both are known."""
        if self.end_time is None:
            return None
        return max((self.end_time - self.start_time).total_seconds(), 0.0)

    @property
    def start_ms(self) -> int:
        return epoch_ms(self.start_time)


@dataclass(frozen=True, slots=True)
class TranscriptMessage:
    voice_call_id: str
    message_id: str
    participant_id: str
    sender_type: SenderType
    start_ms: int  # epoch milliseconds
    end_ms: int
    content: str


class _Unset(enum.Enum):
    UNSET = "unset"


UNSET = _Unset.UNSET


@dataclass(frozen=True, slots=True)
class VoiceCallUpdate:
    """Parsed fields of an update; a field left UNSET does not change. `is_active_call` is
    True only when the update says `isActiveCall: true`."""

    is_active_call: bool = False
    start_time: datetime | _Unset = UNSET
    end_time: datetime | _Unset | None = UNSET
    call_origin: CallOrigin | _Unset | None = UNSET
    recording_location: str | _Unset | None = UNSET
    total_recording_duration: float | _Unset | None = UNSET
    queue: str | _Unset | None = UNSET
    agent: str | _Unset | None = UNSET
    call_attributes: str | _Unset | None = UNSET
    disconnect_reason: str | _Unset | None = UNSET
    disconnect_is_error: bool | _Unset | None = UNSET
    enqueue_time: datetime | _Unset | None = UNSET
    accept_time: datetime | _Unset | None = UNSET
    total_hold_duration: float | _Unset | None = UNSET
    longest_hold_duration: float | _Unset | None = UNSET
    number_of_holds: int | _Unset | None = UNSET
    agent_interaction_duration: float | _Unset | None = UNSET
    changes: tuple[str, ...] = field(default=())


def epoch_ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def from_epoch_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def _number_ms(value: float, name: str) -> int:
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(name, "must be a time: ISO 8601 or epoch milliseconds")
    if value >= _MS_THRESHOLD:
        return round(value)
    if value >= _MIN_EPOCH_SECONDS:
        return round(value * 1000)  # epoch seconds, as the demo connector sends
    raise InvalidInput(name, "must be a time: ISO 8601 or epoch milliseconds")


def parse_time_ms(value: Any, name: str) -> int:
    """Epoch milliseconds of an ISO 8601 string (a zone-less one is UTC) or an epoch number
    (milliseconds, or seconds where too small for milliseconds), from 2000 to 9998."""
    found = _time_ms(value, name)
    if not _EARLIEST_MS <= found <= _LATEST_MS:
        raise InvalidInput(name, "must be a time between the years 2000 and 9998")
    return found


def _time_ms(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise InvalidInput(name, "must be a time: ISO 8601 or epoch milliseconds")
    if isinstance(value, int | float):
        return _number_ms(float(value), name)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return _number_ms(float(text), name)
        try:
            moment = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError as exc:
            raise InvalidInput(name, "must be a time: ISO 8601 or epoch milliseconds") from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return epoch_ms(moment)
    raise InvalidInput(name, "must be a time: ISO 8601 or epoch milliseconds")


def parse_time(value: Any, name: str) -> datetime:
    return from_epoch_ms(parse_time_ms(value, name))


def check_text(value: Any, name: str, max_len: int, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidInput(name, "must be a string")
    text = value.strip()
    if "\x00" in text:
        raise InvalidInput(name, "must not contain NUL characters")
    if not text and not allow_empty:
        raise InvalidInput(name, "must not be empty")
    if len(text) > max_len:
        raise InvalidInput(name, f"must be at most {max_len} characters")
    return text


def check_vendor_call_key(value: Any, name: str = "vendorCallKey") -> str:
    key = check_text(value, name, MAX_KEY_LEN)
    if not _KEY_RE.match(key) or "/" in key:
        raise InvalidInput(name, "must be printable ASCII without spaces or '/'")
    return key


def check_call_attributes(value: Any, name: str = "callAttributes") -> str:
    """A string holding a JSON object (the seed's shape), kept as sent."""
    if not isinstance(value, str):
        raise InvalidInput(name, "must be a string holding a JSON object")
    if len(value) > MAX_ATTRIBUTES_LEN:
        raise InvalidInput(name, f"must be at most {MAX_ATTRIBUTES_LEN} characters")
    try:
        decoded = json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(name, "must be a string holding a JSON object: it is not JSON") from exc
    if not isinstance(decoded, dict):
        raise InvalidInput(name, "must be a string holding a JSON object")
    return value


def check_duration(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(name, "must be a number of seconds")
    number = float(value)
    if not math.isfinite(number) or number < 0 or number > 31 * 86_400:
        raise InvalidInput(name, "must be a number of seconds between 0 and 31 days")
    return number


def parse_call_origin(value: Any, name: str = "callOrigin") -> CallOrigin:
    for origin in CallOrigin:
        if isinstance(value, str) and value.strip().lower() == origin.value.lower():
            return origin
    raise InvalidInput(name, f"must be one of {', '.join(o.value for o in CallOrigin)}")


def parse_initiation_method(value: Any) -> InitiationMethod:
    allowed = (InitiationMethod.INBOUND, InitiationMethod.TRANSFER, InitiationMethod.OUTBOUND)
    for method in allowed:
        if isinstance(value, str) and value.strip().lower() == method.value.lower():
            return method
    raise InvalidInput("initiationMethod", f"must be one of {', '.join(m.value for m in allowed)}")


def parse_sender_type(value: Any, name: str) -> SenderType:
    if isinstance(value, str):
        try:
            return SenderType(value.strip().upper())
        except ValueError:
            pass
    raise InvalidInput(name, f"must be one of {', '.join(s.value for s in SenderType)}")


def parse_participants(value: Any) -> tuple[Participant, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_PARTICIPANTS:
        raise InvalidInput("participants", f"must be an array of at most {MAX_PARTICIPANTS}")
    found: list[Participant] = []
    for n, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidInput(f"participants[{n}]", "must be an object")
        key = check_text(
            item.get("participantKey"), f"participants[{n}].participantKey", MAX_KEY_LEN
        )
        kind = check_text(item.get("type", "END_USER"), f"participants[{n}].type", 32)
        found.append(Participant(key, kind.upper()))
    return tuple(found)


def check_times(start: datetime, end: datetime | None) -> None:
    if end is not None and end < start:
        raise InvalidInput("endTime", "must not be before startTime")


def apply_update(call: VoiceCall, update: VoiceCallUpdate, now: datetime) -> VoiceCall:
    """The call after `update`. An update that does not say `isActiveCall: true` completes
    the conversation; a completed one without an end time ends now (not before its start)."""
    values: dict[str, Any] = {}
    for name in VoiceCallUpdate.__dataclass_fields__:
        if name in ("is_active_call", "changes"):
            continue
        value = getattr(update, name)
        if value is not UNSET:
            values[name] = value
    updated = replace(call, **values, is_active_call=update.is_active_call, updated_at=now)
    if not updated.is_active_call and updated.end_time is None:
        updated = replace(updated, end_time=max(now, updated.start_time))
    check_times(updated.start_time, updated.end_time)
    return updated


def parse_messages(call: VoiceCall, raw: Any, *, name: str = "messages") -> list[TranscriptMessage]:
    """Transcript entries of one call: `messageId` unique among them, times inside the call
    (from a little before its start to its end, when it has one)."""
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(name, "must be a non-empty array")
    if len(raw) > MAX_MESSAGES:
        raise InvalidInput(name, f"must hold at most {MAX_MESSAGES} entries")
    found: list[TranscriptMessage] = []
    seen: set[str] = set()
    earliest = epoch_ms(call.start_time - MESSAGE_TOLERANCE)
    latest = None if call.end_time is None else epoch_ms(call.end_time + MESSAGE_TOLERANCE)
    for n, item in enumerate(raw):
        at = f"{name}[{n}]"
        if not isinstance(item, dict):
            raise InvalidInput(at, "must be an object")
        message_id = check_vendor_call_key(item.get("messageId"), f"{at}.messageId")
        if message_id in seen:
            raise InvalidInput(f"{at}.messageId", "is repeated: a messageId is unique in the call")
        seen.add(message_id)
        start = parse_time_ms(item.get("startTime"), f"{at}.startTime")
        end = parse_time_ms(item.get("endTime", item.get("startTime")), f"{at}.endTime")
        if end < start:
            raise InvalidInput(f"{at}.endTime", "must not be before startTime")
        if start < earliest or (latest is not None and end > latest):
            raise InvalidInput(f"{at}.startTime", "must be within the call (epoch milliseconds)")
        found.append(
            TranscriptMessage(
                voice_call_id=call.id,
                message_id=message_id,
                participant_id=check_text(
                    item.get("participantId"), f"{at}.participantId", MAX_KEY_LEN
                ),
                sender_type=parse_sender_type(item.get("senderType"), f"{at}.senderType"),
                start_ms=start,
                end_ms=end,
                content=check_text(
                    item.get("content"), f"{at}.content", MAX_CONTENT_LEN, allow_empty=True
                ),
            )
        )
    return found


def same_message(a: TranscriptMessage, b: TranscriptMessage) -> bool:
    return (a.participant_id, a.sender_type, a.start_ms, a.end_ms, a.content) == (
        b.participant_id,
        b.sender_type,
        b.start_ms,
        b.end_ms,
        b.content,
    )


def ordered(messages: Sequence[TranscriptMessage]) -> list[TranscriptMessage]:
    return sorted(messages, key=lambda m: (m.start_ms, m.end_ms, m.message_id))


def _optional(body: dict[str, Any], wire: str, parse: Any) -> Any:
    value = body[wire]
    return None if value is None else parse(value, wire)


def parse_update(body: dict[str, Any]) -> VoiceCallUpdate:
    """An update's wire JSON (the seed's camelCase names); unknown fields are ignored, as the
    vendor's clients send more than this service keeps."""
    values: dict[str, Any] = {}
    times = {
        "startTime": "start_time",
        "endTime": "end_time",
        "enqueueTime": "enqueue_time",
        "acceptTime": "accept_time",
    }
    for wire, name in times.items():
        if wire in body:
            values[name] = _optional(body, wire, parse_time)
    if values.get("start_time", UNSET) is None:
        raise InvalidInput("startTime", "must not be null")
    durations = {
        "totalRecordingDuration": "total_recording_duration",
        "totalHoldDuration": "total_hold_duration",
        "longestHoldDuration": "longest_hold_duration",
        "agentInteractionDuration": "agent_interaction_duration",
    }
    for wire, name in durations.items():
        if wire in body:
            values[name] = _optional(body, wire, check_duration)
    if "numberOfHolds" in body:
        holds = body["numberOfHolds"]
        if holds is not None and (
            isinstance(holds, bool) or not isinstance(holds, int) or not 0 <= holds <= 100_000
        ):
            raise InvalidInput("numberOfHolds", "must be a whole number from 0 to 100000")
        values["number_of_holds"] = holds
    if "callOrigin" in body:
        values["call_origin"] = _optional(body, "callOrigin", parse_call_origin)
    texts = {"queue": ("queue", MAX_NAME_LEN), "agent": ("agent", MAX_NAME_LEN)}
    texts["recordingLocation"] = ("recording_location", MAX_LOCATION_LEN)
    for wire, (name, limit) in texts.items():
        if wire in body:
            values[name] = _optional(body, wire, lambda v, n, lim=limit: check_text(v, n, lim))
    if "callAttributes" in body:
        values["call_attributes"] = _optional(body, "callAttributes", check_call_attributes)
    if "disconnectReason" in body:
        reason = body["disconnectReason"]
        if isinstance(reason, dict):  # {value, isError}
            values["disconnect_reason"] = _optional(
                {"disconnectReason.value": reason.get("value")},
                "disconnectReason.value",
                lambda v, n: check_text(v, n, MAX_NAME_LEN),
            )
            is_error = reason.get("isError")
            if is_error is not None and not isinstance(is_error, bool):
                raise InvalidInput("disconnectReason.isError", "must be true or false")
            values["disconnect_is_error"] = is_error
        else:
            values["disconnect_reason"] = _optional(
                body, "disconnectReason", lambda v, n: check_text(v, n, MAX_NAME_LEN)
            )
    active = body.get("isActiveCall")
    if active is not None and not isinstance(active, bool):
        if isinstance(active, str) and active.strip().lower() in ("true", "false"):
            active = active.strip().lower() == "true"
        else:
            raise InvalidInput("isActiveCall", "must be true or false")
    return VoiceCallUpdate(is_active_call=active is True, changes=tuple(sorted(values)), **values)
