"""Members: the people who sign in to the web pages of an account, their sessions and the
one-time sign-in links, and the rules on them (who sees which mailbox, how many attempts).

A member's email address signs them in, so it is unique over the whole service, not only
within its account. Passwords are kept only as Argon2 hashes, outside the `Member` value.
"""

from __future__ import annotations

import collections
import enum
import hashlib
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError, validate_email

from afterbeep.domain.errors import InvalidInput
from afterbeep.domain.ids import is_id
from afterbeep.domain.mailboxes import Mailbox

NAME_MAX = 200
EMAIL_MAX = 320
PASSWORD_MIN = 10
PASSWORD_MAX = 256

SESSION_SECONDS = 14 * 24 * 3600  # a session lasts this long from sign-in
LINK_SECONDS = 15 * 60  # a sign-in link works once, within this


class Role(enum.StrEnum):
    ADMIN = "admin"  # the whole account
    MEMBER = "member"  # the mailboxes they own
    AGENT = "agent"  # the representatives' console (no mailbox)


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    account_id: str
    email: str
    name: str
    role: Role
    user_id: str | None
    has_password: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class WebSession:
    """A signed-in browser. Only the SHA-256 of its cookie's token is stored."""

    token_hash: str
    account_id: str
    member_id: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SignInLink:
    token_hash: str
    account_id: str
    member_id: str
    next_path: str
    created_at: datetime
    expires_at: datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def normalise_email(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput("email", "must be a string")
    value = value.strip()
    if len(value) > EMAIL_MAX:
        raise InvalidInput("email", f"must be at most {EMAIL_MAX} characters")
    try:
        normal = validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidInput("email", f"is not an email address: {exc}") from exc
    # The domain part is case-insensitive and already lowered; the local part is lowered too,
    # so `Ann@x` and `ann@x` are one member (nobody runs two mailboxes on case alone).
    return normal.lower()


def check_name(value: object) -> str:
    name = value.strip() if isinstance(value, str) else ""
    if not 1 <= len(name) <= NAME_MAX:
        raise InvalidInput("name", f"must be 1 to {NAME_MAX} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise InvalidInput("name", "must not contain control characters")
    return name


def check_role(value: object) -> Role:
    try:
        return Role(str(value))
    except ValueError as exc:
        raise InvalidInput("role", "must be one of admin, member, agent") from exc


def check_user_id(value: object) -> str | None:
    """A user id's form (`usr_...`) or None; that the user is the account's is the service's
    to check."""
    if value is None:
        return None
    if not isinstance(value, str) or not is_id(value, "usr"):
        raise InvalidInput("user_id", "must be a user id (usr_...) or null")
    return value


def check_password(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput("password", "must be a string")
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise InvalidInput("password", f"must be {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    return value


def sees_mailbox(member: Member, mailbox: Mailbox, linked_voicemail_id: str | None = None) -> bool:
    """Admins see every mailbox of their account; members those they own and, when linked to
    a user, that user's mailbox (`linked_voicemail_id`, the user's `voicemail_id`); agents
    none."""
    if mailbox.account_id != member.account_id:
        return False
    if member.role is Role.ADMIN:
        return True
    if member.role is not Role.MEMBER:
        return False
    return mailbox.owner_member_id == member.id or (
        linked_voicemail_id is not None
        and member.user_id is not None
        and mailbox.id == linked_voicemail_id
    )


def safe_next(path: object) -> str:
    """Where to go after signing in: a path on this site, or the inbox (never another host)."""
    if (
        isinstance(path, str)
        and path.startswith("/")
        and not path.startswith("//")
        and "\\" not in path
        and len(path) <= 500
        and path.isprintable()
    ):
        return path
    return "/inbox"


class AttemptWindow:
    """At most `limit` attempts per key within `window` seconds (a sliding window). No I/O:
    the caller passes the time. At most `max_keys` keys are remembered, the least recently
    used dropped first, so an attacker cycling keys cannot grow it without bound."""

    def __init__(self, limit: int, window: float, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._seen: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )

    def _recent(self, key: str, now: float) -> collections.deque[float]:
        times = self._seen.get(key)
        if times is None:
            return collections.deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def retry_after(self, key: str, now: float) -> int:
        """0 when another attempt is allowed now, else the seconds until one is."""
        times = self._recent(key, now)
        if len(times) < self.limit:
            return 0
        return max(1, int(times[0] + self.window - now + 0.999))

    def record(self, key: str, now: float) -> None:
        times = self._recent(key, now)
        times.append(now)
        self._seen[key] = times
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_keys:
            self._seen.popitem(last=False)

    def forget(self, key: str) -> None:
        self._seen.pop(key, None)
