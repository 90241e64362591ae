"""Mailboxes (seed 003's voicemail row) and the rules on their settings and PINs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from afterbeep.domain.errors import WeakPin

PIN_MIN_DIGITS = 4
PIN_MAX_DIGITS = 10


@dataclass(frozen=True, slots=True)
class Mailbox:
    id: str
    account_id: str
    name: str
    greeting_media_id: str | None
    skip_instructions: bool
    quota_mb: int
    notify_email: str | None
    pin_secret_ref: str | None
    language: str
    timezone: str
    max_message_seconds: int
    min_message_seconds: int
    silence_seconds: int
    max_messages: int
    attach_audio: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Usage:
    messages: int
    bytes: int


DEFAULTS: dict[str, object] = {
    "greeting_media_id": None,
    "skip_instructions": False,
    "quota_mb": 200,
    "notify_email": None,
    "language": "en",
    "timezone": "UTC",
    "max_message_seconds": 180,
    "min_message_seconds": 2,
    "silence_seconds": 8,
    "max_messages": 100,
    "attach_audio": True,
}


def is_full(mailbox: Mailbox, usage: Usage) -> bool:
    return usage.messages >= mailbox.max_messages or usage.bytes >= mailbox.quota_mb * 1024 * 1024


def pin_secret_ref(mailbox_id: str) -> str:
    return f"kv:vm:{mailbox_id}:pin"


def check_pin(pin: str) -> None:
    """Refuse PINs that are not 4-10 digits, one repeated digit, or a straight run (1234, 9876)."""
    if not pin.isascii() or not pin.isdigit():
        raise WeakPin("pin", "must contain digits only")
    if not PIN_MIN_DIGITS <= len(pin) <= PIN_MAX_DIGITS:
        raise WeakPin("pin", f"must be {PIN_MIN_DIGITS} to {PIN_MAX_DIGITS} digits")
    if len(set(pin)) == 1:
        raise WeakPin("pin", "must not repeat a single digit")
    steps = {(int(b) - int(a)) % 10 for a, b in zip(pin, pin[1:], strict=False)}
    if steps in ({1}, {9}):
        raise WeakPin("pin", "must not be a straight run of digits")
