"""Ringless voicemail: telephony setups, use cases, sends and the rules checked before every attempt.

A telephony setup is a SIP trunk with the numbers it owns and its deposit settings; a use case
ties a setup to sending rules (who the sender is, consent, calling window, attempts). A send is
`accepted` until the delivery engine ends it `delivered`, `failed` (with a reason) or `skipped`
(stopped by a rule before any call, with a reason). The rule functions here are pure: the engine
passes in the time and what it read from the database, and acts on the decision.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as pn_timezone

from afterbeep.domain.errors import InvalidInput
from afterbeep.domain.ids import new_id
from afterbeep.domain.netpolicy import is_hostname, sip_uri_hosts

MIN_AUDIO_MS = 10_000
MAX_AUDIO_MS = 60_000
MAX_AUDIO_BYTES = 8 * 1024 * 1024
AUDIO_FORMATS = frozenset({"MP3"})
DEFAULT_WINDOW_START = time(8, 0)
DEFAULT_WINDOW_END = time(21, 0)
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_RETRY_BACKOFF_SECONDS = 300
MAX_RETRY_DELAY = timedelta(hours=6)
DEFAULT_CAP_ATTEMPTS = 3
DEFAULT_CAP_PERIOD_HOURS = 72
TO_PLACEHOLDER = "{to}"
# drops, two-call technique: call 2 after this delay; call 1 cancelled by this bound at the latest
DEFAULT_SECOND_CALL_DELAY_MS = 2000
DEFAULT_FIRST_CALL_BOUND_MS = 6000
MIN_SECOND_CALL_DELAY_MS = 500
MAX_SECOND_CALL_DELAY_MS = 10_000
MAX_FIRST_CALL_BOUND_MS = 30_000


class Channel(enum.StrEnum):
    RINGLESS_VOICEMAIL = "ringless_voicemail"
    VOICEMAIL_DROP = "voicemail_drop"


SUPPORTED_CHANNELS = frozenset({Channel.RINGLESS_VOICEMAIL, Channel.VOICEMAIL_DROP})


class SendKind(enum.StrEnum):
    """A ringless send (`/v1/voicemails`) or a voicemail drop (`/v1/drops`): one table, one engine."""

    RINGLESS = "ringless"
    DROP = "drop"


SEND_ID_PREFIX = {SendKind.RINGLESS: "vmsend", SendKind.DROP: "drop"}


class DropTechnique(enum.StrEnum):
    TWO_CALL = "two_call"
    SINGLE = "single"


class Transport(enum.StrEnum):
    UDP = "udp"
    TCP = "tcp"


class SenderSelection(enum.StrEnum):
    FIXED = "fixed"
    ROUND_ROBIN = "round_robin"
    LOCAL_PRESENCE = "local_presence"


class SendStatus(enum.StrEnum):
    ACCEPTED = "accepted"
    DELIVERED = "delivered"
    FAILED = "failed"
    SKIPPED = "skipped"
    # a campaign's sends while the campaign is paused (back to accepted on resume)
    PAUSED = "paused"
    # drops
    LEFT_VOICEMAIL = "left_voicemail"
    HUMAN_ANSWERED = "human_answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"


FINAL_STATUSES = frozenset(
    {
        SendStatus.DELIVERED,
        SendStatus.FAILED,
        SendStatus.SKIPPED,
        SendStatus.LEFT_VOICEMAIL,
        SendStatus.HUMAN_ANSWERED,
        SendStatus.NO_ANSWER,
        SendStatus.BUSY,
    }
)
RINGLESS_STATUSES = frozenset(
    {SendStatus.ACCEPTED, SendStatus.PAUSED, SendStatus.DELIVERED, SendStatus.FAILED, SendStatus.SKIPPED}
)
DROP_STATUSES = frozenset(SendStatus) - {SendStatus.DELIVERED}


class SkipReason(enum.StrEnum):
    SUPPRESSED = "suppressed"
    NO_CONSENT = "no_consent"
    RECIPIENT_CAP = "recipient_cap"
    CANCELLED = "cancelled"


class DeliveryMethod(enum.StrEnum):
    LOCAL_DEPOSIT = "local_deposit"
    SIP_DEPOSIT = "sip_deposit"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class SetupNumber:
    e164: str
    verified: bool


@dataclass(frozen=True, slots=True)
class TelephonySetup:
    id: str
    account_id: str
    name: str
    trunk_host: str
    trunk_port: int
    transport: Transport
    username: str | None
    password_ref: str | None
    outbound_proxy: str | None
    from_domain: str | None
    max_calls_per_second: float
    max_concurrent_calls: int
    numbers: tuple[SetupNumber, ...]
    deposit_uri: str
    deposit_headers: Mapping[str, str]
    created_at: datetime
    updated_at: datetime

    def deposit_target(self, to_e164: str) -> str:
        return self.deposit_uri.replace(TO_PLACEHOLDER, to_e164)

    @property
    def offers_deposit(self) -> bool:
        """False when the setup has no `deposit_uri` (drops only, or a ringless fallback)."""
        return bool(self.deposit_uri)

    def call_target(self, to_e164: str) -> str:
        """The SIP URI that calls `to_e164` through the trunk (a drop's INVITE)."""
        uri = f"sip:{to_e164}@{self.trunk_host}:{self.trunk_port}"
        return uri + ";transport=tcp" if self.transport is Transport.TCP else uri


def password_ref(setup_id: str) -> str:
    """Where a setup's SIP password lives in the secret store."""
    return f"kv:setup:{setup_id}:password"


@dataclass(frozen=True, slots=True)
class CallingWindow:
    start: time = DEFAULT_WINDOW_START
    end: time = DEFAULT_WINDOW_END


@dataclass(frozen=True, slots=True)
class RecipientCap:
    attempts: int = DEFAULT_CAP_ATTEMPTS
    period_hours: int = DEFAULT_CAP_PERIOD_HOURS

    @property
    def period(self) -> timedelta:
        return timedelta(hours=self.period_hours)


@dataclass(frozen=True, slots=True)
class UseCase:
    id: str
    account_id: str
    channel: Channel
    name: str
    description: str | None
    setup_id: str
    sender_selection: SenderSelection
    sender_number: str | None
    require_consent: bool
    calling_window: CallingWindow
    max_attempts: int
    retry_backoff_seconds: int
    recipient_cap: RecipientCap
    created_at: datetime
    updated_at: datetime
    fallback_use_case_id: str | None = None
    second_call_delay_ms: int = 2000
    first_call_bound_ms: int = 6000


@dataclass(frozen=True, slots=True)
class VoicemailSend:
    id: str
    account_id: str
    use_case_id: str
    setup_id: str
    media_id: str
    from_e164: str
    to_e164: str
    foreign_id: str | None
    metadata: Mapping[str, Any] | None
    send_at: datetime | None
    status: SendStatus
    attempts: int
    next_attempt_at: datetime | None
    claimed_until: datetime | None
    method: DeliveryMethod | None
    failure_reason: str | None
    skip_reason: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None = None
    kind: SendKind = SendKind.RINGLESS
    technique: DropTechnique | None = None
    answered_by: str | None = None
    detection_ms: int | None = None
    beep_ms: int | None = None
    campaign_id: str | None = None

    @property
    def reason(self) -> str | None:
        return self.failure_reason or self.skip_reason

    @classmethod
    def accepted(
        cls,
        *,
        account_id: str,
        use_case_id: str,
        setup_id: str,
        media_id: str,
        from_e164: str,
        to_e164: str,
        now: datetime,
        send_at: datetime | None = None,
        foreign_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        kind: SendKind = SendKind.RINGLESS,
        technique: DropTechnique | None = None,
        campaign_id: str | None = None,
    ) -> VoicemailSend:
        """A new send, `accepted`, due at `send_at` (now if it is unset or already past)."""
        return cls(
            id=new_id(SEND_ID_PREFIX[kind]),
            account_id=account_id,
            use_case_id=use_case_id,
            setup_id=setup_id,
            media_id=media_id,
            from_e164=from_e164,
            to_e164=to_e164,
            foreign_id=foreign_id,
            metadata=dict(metadata) if metadata is not None else None,
            send_at=send_at.astimezone(UTC) if send_at is not None else None,
            status=SendStatus.ACCEPTED,
            attempts=0,
            next_attempt_at=max(send_at, now) if send_at is not None else now,
            claimed_until=None,
            method=None,
            failure_reason=None,
            skip_reason=None,
            created_at=now,
            updated_at=now,
            kind=kind,
            technique=technique,
            campaign_id=campaign_id,
        )


@dataclass(frozen=True, slots=True)
class SendAttempt:
    """One try at delivering a send: when, how, and what the far end answered."""

    id: str
    account_id: str
    send_id: str
    to_e164: str
    number: int
    method: DeliveryMethod
    started_at: datetime
    ended_at: datetime | None
    sip_code: int | None
    duration_ms: int | None
    outcome: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class Suppression:
    id: str
    account_id: str
    e164: str
    reason: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Consent:
    id: str
    account_id: str
    e164: str
    source: str
    captured_at: datetime
    revoked_at: datetime | None
    created_at: datetime

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class SendStats:
    counts: Mapping[SendStatus, int]
    failure_reasons: Mapping[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def delivery_rate(self) -> float | None:
        """Delivered among the sends that ended (delivered or failed); None before any ended."""
        delivered = self.counts.get(SendStatus.DELIVERED, 0)
        ended = delivered + self.counts.get(SendStatus.FAILED, 0)
        return delivered / ended if ended else None

    @property
    def left_voicemail_rate(self) -> float | None:
        """Drops left in voicemail among the drops that ended (waiting and skipped ones aside)."""
        left = self.counts.get(SendStatus.LEFT_VOICEMAIL, 0)
        ended = sum(
            n
            for s, n in self.counts.items()
            if s not in (SendStatus.ACCEPTED, SendStatus.PAUSED, SendStatus.SKIPPED)
        )
        return left / ended if ended else None


# -- rules ---------------------------------------------------------------------


class RuleAction(enum.StrEnum):
    ALLOW = "allow"
    SKIP = "skip"
    HOLD = "hold"


@dataclass(frozen=True, slots=True)
class RuleDecision:
    action: RuleAction
    reason: SkipReason | None = None
    until: datetime | None = None

    @classmethod
    def allow(cls) -> RuleDecision:
        return cls(RuleAction.ALLOW)

    @classmethod
    def skip(cls, reason: SkipReason) -> RuleDecision:
        return cls(RuleAction.SKIP, reason=reason)

    @classmethod
    def hold_until(cls, until: datetime) -> RuleDecision:
        return cls(RuleAction.HOLD, until=until)


def check_rules(
    send: VoicemailSend,
    use_case: UseCase,
    now: datetime,
    suppressed: bool,
    consent: Consent | None,
    attempts_in_period: int,
) -> RuleDecision:
    """What to do with `send` at `now`, before an attempt.

    `attempts_in_period` counts the attempts already made to this recipient by this account
    in the use case's cap period ending at `now` (this send's earlier attempts included).
    Stopping rules come first (suppression, consent, cap), then timing (send_at, window).
    """
    if suppressed:
        return RuleDecision.skip(SkipReason.SUPPRESSED)
    if use_case.require_consent and (consent is None or not consent.active):
        return RuleDecision.skip(SkipReason.NO_CONSENT)
    if attempts_in_period >= use_case.recipient_cap.attempts:
        return RuleDecision.skip(SkipReason.RECIPIENT_CAP)
    if send.send_at is not None and send.send_at > now:
        return RuleDecision.hold_until(send.send_at)
    window = use_case.calling_window
    opens = calling_window_opens(now, recipient_timezone(send.to_e164), window.start, window.end)
    if opens is not None:
        return RuleDecision.hold_until(opens)
    return RuleDecision.allow()


def recipient_timezone(e164: str) -> str | None:
    """The first time zone phonenumbers gives for the number; None when it knows none."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    zones = pn_timezone.time_zones_for_number(parsed)
    if not zones or zones[0] == pn_timezone.UNKNOWN_TIMEZONE:
        return None
    return str(zones[0])


def _zone(tz: str | None) -> ZoneInfo:
    if tz is None:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def calling_window_opens(now: datetime, tz: str | None, start: time, end: time) -> datetime | None:
    """None when `now` is inside the window [start, end) in zone `tz` (UTC when unknown);
    otherwise the UTC instant the window next opens. A window with start > end spans midnight."""
    if start == end:
        return None
    zone = _zone(tz)
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    inside = (start <= clock < end) if start < end else (clock >= start or clock < end)
    if inside:
        return None
    day = local.date()
    if clock >= start:
        day = day + timedelta(days=1)
    return datetime.combine(day, start, tzinfo=zone).astimezone(UTC)


def area_code(e164: str) -> str | None:
    """The NANP area code (the three digits after +1); None for other numbers."""
    if e164.startswith("+1") and len(e164) == 12 and e164[1:].isdigit():
        return e164[2:5]
    return None


def pick_sender(
    use_case: UseCase, numbers: Sequence[SetupNumber], to_e164: str, rr_counter: int
) -> str:
    """The caller id for a send: only verified numbers of the use case's setup qualify."""
    verified = [n.e164 for n in numbers if n.verified]
    if use_case.sender_selection is SenderSelection.FIXED:
        if use_case.sender_number is None or use_case.sender_number not in verified:
            raise InvalidInput(
                "sender_number",
                "must be a verified number of the use case's setup",
                error_id="no-verified-sender",
            )
        return use_case.sender_number
    if not verified:
        raise InvalidInput(
            "setup_id", "the setup has no verified number to send from", error_id="no-verified-sender"
        )
    pool = verified
    if use_case.sender_selection is SenderSelection.LOCAL_PRESENCE:
        code = area_code(to_e164)
        local = [n for n in verified if code is not None and area_code(n) == code]
        pool = local or verified
    return pool[rr_counter % len(pool)]


def retry_delay(attempt: int, base_seconds: int = DEFAULT_RETRY_BACKOFF_SECONDS) -> timedelta:
    """The wait after failed attempt number `attempt` (1-based): doubling from the base, capped."""
    exponent = max(attempt - 1, 0)
    seconds = base_seconds * (2 ** min(exponent, 16))
    return min(timedelta(seconds=seconds), MAX_RETRY_DELAY)


def check_deposit_uri(uri: str) -> None:
    """A deposit URI template, or "" for a setup that offers no SIP deposit."""
    if uri == "":
        return
    lowered = uri.lower()
    if TO_PLACEHOLDER not in uri or not (lowered.startswith("sip:") or lowered.startswith("sips:")):
        raise InvalidInput("deposit_uri", "must be a sip: URI containing {to}")
    check_sip_uri("deposit_uri", uri.replace(TO_PLACEHOLDER, "+15550000000"))


# Characters that would end a SIP header line, a quoted string or a bracketed URI.
_UNSAFE_IN_URI = frozenset('<>"\\ ')
# RFC 3261 `token`, the grammar of a header name.
HEADER_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
# deposit_headers names besides `X-...`: headers a voicemail platform reads to file a deposit.
# P-Asserted-Identity is not among them: the service sets it from a verified sender number.
DEPOSIT_HEADER_ALLOWLIST = frozenset({"diversion", "history-info", "privacy", "subject"})
MAX_HEADER_VALUE = 1000
RESERVED_HEADER_PREFIX = "x-afterbeep-"  # the service's own deposit headers


def has_control(value: str) -> bool:
    """CR, LF, NUL or another control character (tab excepted): never in a header field."""
    return any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value)


def check_text(field: str, value: str | None) -> None:
    if value is not None and has_control(value):
        raise InvalidInput(field, "must not contain CR, LF, NUL or other control characters")


def check_host(field: str, value: str | None) -> None:
    """A host name or IP literal (a trunk host, a From domain)."""
    if value is None:
        return
    check_text(field, value)
    if not is_hostname(value):
        raise InvalidInput(field, "must be a host name or an IP address")


def check_sip_uri(field: str, uri: str) -> None:
    """A SIP URI (or `host:port`) with no character that could break out of a header."""
    check_text(field, uri)
    if any(c in _UNSAFE_IN_URI for c in uri):
        raise InvalidInput(field, "must not contain spaces, quotes, backslashes or angle brackets")
    if not all(is_hostname(host) for host in sip_uri_hosts(uri)):
        raise InvalidInput(field, "must name a host name or an IP address")


def deposit_header_name_allowed(name: str) -> bool:
    lowered = name.lower()
    if not HEADER_TOKEN.match(name) or lowered.startswith(RESERVED_HEADER_PREFIX):
        return False
    return (lowered.startswith("x-") and len(name) > 2) or lowered in DEPOSIT_HEADER_ALLOWLIST


def deposit_header_allowed(name: str, value: str) -> bool:
    """Whether a stored deposit header may go on the wire (rows written before these rules)."""
    return deposit_header_name_allowed(name) and not has_control(value)


def check_deposit_headers(headers: Mapping[str, str]) -> None:
    """Extra INVITE headers of a deposit: `X-` names and `DEPOSIT_HEADER_ALLOWLIST` only,
    values of one line."""
    for name, value in headers.items():
        if not HEADER_TOKEN.match(name):
            raise InvalidInput("deposit_headers", f"{name[:40]!r} is not a header name")
        if not deposit_header_name_allowed(name):
            allowed = ", ".join(sorted(h.title() for h in DEPOSIT_HEADER_ALLOWLIST))
            raise InvalidInput(
                "deposit_headers",
                f"{name!r} is not allowed; use X- headers (not X-Afterbeep-) or one of {allowed}",
                "header-not-allowed",
            )
        if has_control(value) or len(value) > MAX_HEADER_VALUE:
            raise InvalidInput(
                "deposit_headers",
                f"the value of {name!r} must be one line of at most {MAX_HEADER_VALUE} characters",
            )


def check_use_case(use_case: UseCase, setup: TelephonySetup) -> None:
    """The rules a use case must keep against its setup whenever it is written."""
    if use_case.channel not in SUPPORTED_CHANNELS:
        raise InvalidInput(
            "channel",
            f"{use_case.channel.value!r} is not available yet; supported: ringless_voicemail",
            error_id="unsupported-channel",
        )
    if use_case.sender_selection is SenderSelection.FIXED:
        verified = {n.e164 for n in setup.numbers if n.verified}
        if use_case.sender_number is None:
            raise InvalidInput("sender_number", "is required when sender_selection is fixed")
        if use_case.sender_number not in verified:
            raise InvalidInput(
                "sender_number",
                "must be a verified number of the setup",
                error_id="no-verified-sender",
            )
    if not 1 <= use_case.max_attempts <= 10:
        raise InvalidInput("max_attempts", "must be 1 to 10")
    if not 1 <= use_case.retry_backoff_seconds <= 86_400:
        raise InvalidInput("retry_backoff_seconds", "must be 1 to 86400")
    cap = use_case.recipient_cap
    if not 1 <= cap.attempts <= 100 or not 1 <= cap.period_hours <= 24 * 90:
        raise InvalidInput("recipient_cap", "attempts 1 to 100, period_hours 1 to 2160")
    if not MIN_SECOND_CALL_DELAY_MS <= use_case.second_call_delay_ms <= MAX_SECOND_CALL_DELAY_MS:
        raise InvalidInput(
            "second_call_delay_ms",
            f"must be {MIN_SECOND_CALL_DELAY_MS} to {MAX_SECOND_CALL_DELAY_MS}",
        )
    if not use_case.second_call_delay_ms <= use_case.first_call_bound_ms <= MAX_FIRST_CALL_BOUND_MS:
        raise InvalidInput(
            "first_call_bound_ms",
            f"must be from second_call_delay_ms to {MAX_FIRST_CALL_BOUND_MS}",
        )
    if use_case.fallback_use_case_id is not None and use_case.channel is not Channel.RINGLESS_VOICEMAIL:
        raise InvalidInput(
            "fallback_use_case_id", "only a ringless_voicemail use case has a fallback"
        )


VOICEMAIL_STATUS_EVENT = "voicemail.status"


def status_payload(send: VoicemailSend) -> dict[str, Any]:
    """The `voicemail.status` event body, published on every status change of a send."""
    return {
        "voicemail_id": send.id,
        "status": send.status.value,
        "failure_reason": send.failure_reason,
        "skip_reason": send.skip_reason,
        "to": send.to_e164,
        "foreign_id": send.foreign_id,
        "use_case_id": send.use_case_id,
    }


# -- follow-up (the outreach dashboard) -------------------------------------------------------

REACHED_STATUSES = frozenset({SendStatus.DELIVERED, SendStatus.LEFT_VOICEMAIL})
FOLLOW_UP_STATUSES = frozenset({SendStatus.FAILED, SendStatus.SKIPPED})


def follow_ups(sends: Sequence[VoicemailSend]) -> list[VoicemailSend]:
    """Per recipient, the latest send that failed or was skipped, unless a later send reached
    them (delivered, or a drop left in voicemail): who may need another channel. Newest first."""
    latest_miss: dict[str, VoicemailSend] = {}
    latest_reach: dict[str, datetime] = {}
    for send in sends:
        to = send.to_e164
        if send.status in FOLLOW_UP_STATUSES:
            kept = latest_miss.get(to)
            if kept is None or (send.created_at, send.id) > (kept.created_at, kept.id):
                latest_miss[to] = send
        elif send.status in REACHED_STATUSES:
            reached = latest_reach.get(to)
            if reached is None or send.created_at > reached:
                latest_reach[to] = send.created_at
    found = [
        miss
        for to, miss in latest_miss.items()
        if to not in latest_reach or latest_reach[to] < miss.created_at
    ]
    return sorted(found, key=lambda s: (s.created_at, s.id), reverse=True)


def answered_by_counts(drops: Sequence[VoicemailSend]) -> dict[str, int]:
    """How the drops' calls were answered (`machine`, `human`, ...; `none` before an answer)."""
    counts: dict[str, int] = {}
    for drop in drops:
        key = drop.answered_by or "none"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
