"""Mailboxes (seed 003's voicemail row) and the rules on their settings and PINs.

Email addresses are checked for syntax with `email-validator` (no DNS look-up here: whether
mail arrives is shown by sending it).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import unicodedata
import zoneinfo
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from afterbeep.domain.errors import InvalidInput, WeakPin
from afterbeep.domain.ids import is_id

PIN_MIN_DIGITS = 4
PIN_MAX_DIGITS = 10

NAME_MAX = 200
EMAIL_MAX = 320
LANGUAGE_MAX = 16
# Inclusive bounds of the numeric settings.
QUOTA_MB = (1, 100_000)
MAX_MESSAGE_SECONDS = (5, 3600)
MIN_MESSAGE_SECONDS = (0, 60)
SILENCE_SECONDS = (1, 60)
MAX_MESSAGES = (1, 10_000)

# A BCP 47 language tag in its common shapes: `en`, `en-US`, `pt-BR`, `zh-Hant-TW`.
_LANGUAGE_RE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")
# Names zoneinfo can load that are not IANA zones a person would choose.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


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
    owner_member_id: str | None = None  # the member (mem_...) whose inbox shows it
    # Played to callers sent here through a busy path, and (the temporary one), while set,
    # instead of the unavailable `greeting_media_id` or the busy one (an out-of-office message).
    busy_greeting_media_id: str | None = None
    temp_greeting_media_id: str | None = None
    # 0022_phone_menu: the owner's recorded name (said by the system greeting), and whether a
    # call from one of the owner's own phones (`*97`) reaches the menu without the PIN.
    name_media_id: str | None = None
    skip_pin_from_own_device: bool = False
    # A team's mailbox: its messages become voice calls routed to this queue (the seed 002
    # sequence), through afterbeep's own Telephony API as this call center, or (a connector)
    # an outside contact center's.
    queue_id: str | None = None
    call_center_id: str | None = None
    connector_id: str | None = None

    @property
    def greeting_ids(self) -> tuple[str | None, ...]:
        return (
            self.greeting_media_id,
            self.busy_greeting_media_id,
            self.temp_greeting_media_id,
            self.name_media_id,
        )

    @property
    def playing_greeting_id(self) -> str | None:
        """The greeting a caller hears now: the temporary one while set, else the unavailable."""
        return self.temp_greeting_media_id or self.greeting_media_id

    def greeting_for(self, *, busy: bool) -> str | None:
        """The greeting a caller hears: the temporary one while set, else the busy one when the
        call came through a busy path (and one is set), else the unavailable one."""
        if busy and self.temp_greeting_media_id is None and self.busy_greeting_media_id:
            return self.busy_greeting_media_id
        return self.playing_greeting_id


@dataclass(frozen=True, slots=True)
class Usage:
    messages: int
    bytes: int
    unread: int = 0


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
    "owner_member_id": None,
    "busy_greeting_media_id": None,
    "temp_greeting_media_id": None,
    "name_media_id": None,
    "skip_pin_from_own_device": False,
    "queue_id": None,
    "call_center_id": None,
    "connector_id": None,
}

# What a client may set (on create and update); the rest is kept by the service.
EDITABLE = frozenset({"name", *DEFAULTS})
GREETING_FIELDS = (
    "greeting_media_id",
    "busy_greeting_media_id",
    "temp_greeting_media_id",
    "name_media_id",
)
TEAM_FIELDS = (("queue_id", "q"), ("call_center_id", "cc"), ("connector_id", "ccx"))
NULLABLE = frozenset(
    {*GREETING_FIELDS, "notify_email", "owner_member_id", *(name for name, _ in TEAM_FIELDS)}
)


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
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(pin)}
    if steps in ({1}, {9}):
        raise WeakPin("pin", "must not be a straight run of digits")


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones() - _NOT_ZONES)


def is_timezone(name: str) -> bool:
    return name in _zones()


def normalise_email(value: str) -> str:
    """The address in normal form; `InvalidInput` when its syntax is wrong."""
    if len(value) > EMAIL_MAX:
        raise InvalidInput("notify_email", f"must be at most {EMAIL_MAX} characters")
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidInput("notify_email", f"is not an email address: {exc}") from exc


def _check_int(field: str, value: object, bounds: tuple[int, int]) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(field, "must be an integer")
    low, high = bounds
    if not low <= value <= high:
        raise InvalidInput(field, f"must be between {low} and {high}")


def _check_bool(field: str, value: object) -> None:
    if not isinstance(value, bool):
        raise InvalidInput(field, "must be true or false")


def check_mailbox(mailbox: Mailbox) -> Mailbox:
    """The mailbox with its settings normalised; `InvalidInput` names the first bad one."""
    name = mailbox.name.strip() if isinstance(mailbox.name, str) else ""
    if not 1 <= len(name) <= NAME_MAX:
        raise InvalidInput("name", f"must be 1 to {NAME_MAX} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise InvalidInput("name", "must not contain control characters")
    _check_bool("skip_instructions", mailbox.skip_instructions)
    _check_bool("attach_audio", mailbox.attach_audio)
    _check_bool("skip_pin_from_own_device", mailbox.skip_pin_from_own_device)
    _check_int("quota_mb", mailbox.quota_mb, QUOTA_MB)
    _check_int("max_message_seconds", mailbox.max_message_seconds, MAX_MESSAGE_SECONDS)
    _check_int("min_message_seconds", mailbox.min_message_seconds, MIN_MESSAGE_SECONDS)
    _check_int("silence_seconds", mailbox.silence_seconds, SILENCE_SECONDS)
    _check_int("max_messages", mailbox.max_messages, MAX_MESSAGES)
    if mailbox.min_message_seconds >= mailbox.max_message_seconds:
        raise InvalidInput("min_message_seconds", "must be less than max_message_seconds")
    if not isinstance(mailbox.language, str) or not (
        len(mailbox.language) <= LANGUAGE_MAX and _LANGUAGE_RE.fullmatch(mailbox.language)
    ):
        raise InvalidInput("language", "must be a language tag such as 'en' or 'pt-BR'")
    if not isinstance(mailbox.timezone, str) or not is_timezone(mailbox.timezone):
        raise InvalidInput("timezone", "must be an IANA time zone such as 'Europe/Paris'")
    email = mailbox.notify_email
    if email is not None:
        if not isinstance(email, str):
            raise InvalidInput("notify_email", "must be a string")
        email = normalise_email(email.strip())
    for field_name, greeting in zip(GREETING_FIELDS, mailbox.greeting_ids, strict=True):
        if greeting is not None and (not isinstance(greeting, str) or not is_id(greeting, "media")):
            raise InvalidInput(field_name, "must be a media id", "invalid-reference")
    owner = mailbox.owner_member_id
    if owner is not None and (not isinstance(owner, str) or not is_id(owner, "mem")):
        raise InvalidInput("owner_member_id", "must be a member id (mem_...)", "invalid-reference")
    for field_name, prefix in TEAM_FIELDS:
        value = getattr(mailbox, field_name)
        if value is not None and (not isinstance(value, str) or not is_id(value, prefix)):
            raise InvalidInput(field_name, f"must be an id ({prefix}_...)", "invalid-reference")
    if mailbox.call_center_id is not None and mailbox.connector_id is not None:
        raise InvalidInput("connector_id", "a mailbox names a call center or a connector, not both")
    if mailbox.queue_id is None and (mailbox.call_center_id or mailbox.connector_id):
        raise InvalidInput("queue_id", "is required when a call center or a connector is named")
    return dataclasses.replace(mailbox, name=name, notify_email=email)
