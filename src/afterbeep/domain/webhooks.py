"""Webhook subscriptions, the events they carry, how deliveries are signed, and their retry schedule.

Signature scheme (what receivers verify):

    Afterbeep-Timestamp: <unix seconds when the attempt was sent>
    Afterbeep-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>

`body` is the exact request body (UTF-8 JSON). A receiver recomputes the HMAC with the
webhook's secret, compares in constant time, and refuses timestamps older than a few minutes
(replay protection); `verify_signature` does all three. The header may carry several
comma-separated `v1=` values (for secret rotation); any match is accepted.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from afterbeep.domain.errors import InvalidInput

EVENTS = frozenset(
    {
        "message.created",
        "message.updated",
        "message.deleted",
        "message.transcribed",
        "notification.failed",
        "voicemail.status",
        "drop.status",
        "cc_delivery.failed",  # a team's voicemail could not be given to its contact center
        "work_item.offered",
        "work_item.accepted",
        "work_item.declined",
        "work_item.timed_out",
        "work_item.completed",
        "work_item.canceled",
        "mailbox.pin_locked",
    }
)

SIGNATURE_VERSION = "v1"
MAX_URL_LENGTH = 2000
SECRET_MIN_LENGTH = 16
SECRET_MAX_LENGTH = 200


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    # refused by the network policy at connection time; final, and says nothing of the target
    BLOCKED = "blocked"


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    account_id: str
    url: str
    events: tuple[str, ...]
    secret: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    account_id: str
    webhook_id: str
    event_id: str
    event: str
    payload: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one delivery attempt changes on its row."""

    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None


def backoff(attempts: int, base_seconds: float = 5.0, cap_seconds: float = 3600.0) -> timedelta:
    """Delay before the next try after `attempts` failed ones: 5 s, 10 s, 20 s ... capped."""
    return timedelta(seconds=min(cap_seconds, base_seconds * 2 ** max(attempts - 1, 0)))


def after_attempt(
    attempts_before: int,
    status_code: int | None,
    error: str | None,
    now: datetime,
    max_attempts: int,
) -> AttemptOutcome:
    """The delivery's next state: 2xx delivers; otherwise retry with backoff until max_attempts."""
    attempts = attempts_before + 1
    if status_code is not None and 200 <= status_code < 300:
        return AttemptOutcome(DeliveryStatus.DELIVERED, attempts, now, status_code, None)
    if error is None:
        error = f"HTTP {status_code}"
    if attempts >= max_attempts:
        return AttemptOutcome(DeliveryStatus.FAILED, attempts, now, status_code, error[:500])
    return AttemptOutcome(
        DeliveryStatus.PENDING, attempts, now + backoff(attempts), status_code, error[:500]
    )


def blocked_attempt(attempts_before: int, now: datetime) -> AttemptOutcome:
    """The delivery's state when its target address is not allowed: final, no detail."""
    return AttemptOutcome(DeliveryStatus.BLOCKED, attempts_before + 1, now, None, None)


def check_url(url: str, allowed_hosts: frozenset[str] = frozenset()) -> str:
    """A valid absolute http(s) URL; when `allowed_hosts` is given, its host must be one of them."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput("url", f"must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        raise InvalidInput("url", "is not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("url", "must be an absolute http:// or https:// URL")
    if not url.isprintable() or any(ch.isspace() for ch in url):
        raise InvalidInput("url", "must not contain whitespace or control characters")
    if allowed_hosts and (parts.hostname or "").lower() not in allowed_hosts:
        raise InvalidInput("url", "host is not in the allowed webhook hosts", "webhook-host-not-allowed")
    return url


def check_events(events: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(sorted(set(events)))
    if not chosen:
        raise InvalidInput("events", "must name at least one event")
    unknown = [e for e in chosen if e not in EVENTS]
    if unknown:
        raise InvalidInput("events", f"unknown events {unknown}; known: {sorted(EVENTS)}")
    return chosen


def check_secret(secret: str) -> str:
    if not SECRET_MIN_LENGTH <= len(secret) <= SECRET_MAX_LENGTH:
        raise InvalidInput(
            "secret", f"must be {SECRET_MIN_LENGTH} to {SECRET_MAX_LENGTH} characters"
        )
    if not secret.isascii() or not secret.isprintable() or " " in secret:
        raise InvalidInput("secret", "must be printable ASCII without spaces")
    return secret


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `Afterbeep-Signature` header value for a body sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify_signature(
    secret: str,
    timestamp: str | int,
    body: bytes | str,
    signature: str,
    now: datetime | float,
    tolerance: int = 300,
) -> bool:
    """True when `signature` (an `Afterbeep-Signature` header) signs `body` at `timestamp`,
    and `timestamp` is within `tolerance` seconds of `now` (a datetime or unix seconds)."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    now_s = now.timestamp() if isinstance(now, datetime) else float(now)
    if abs(now_s - ts) > tolerance:
        return False
    raw = body.encode() if isinstance(body, str) else body
    expected = sign(secret, ts, raw)
    offered = [part.strip() for part in signature.split(",")]
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)
