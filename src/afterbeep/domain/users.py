"""Users (extensions), their devices (SIP phones) and the devices' registrations.

A device's password is never stored: only its two digest hashes (RFC 7616 §3.4.2),
H(auth_username:realm:password) with MD5 and with SHA-256, which is all a registrar needs.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from afterbeep.domain.errors import InvalidInput
from afterbeep.domain.ids import is_id


class RingStrategy(enum.StrEnum):
    SIMULTANEOUS = "simultaneous"
    SEQUENTIAL = "sequential"


class UserStatus(enum.StrEnum):
    """What the agent says of itself (queues); any user has one."""

    OFFLINE = "offline"
    AVAILABLE = "available"
    ON_BREAK = "on_break"


class FwdKind(enum.StrEnum):
    VOICEMAIL = "voicemail"
    FLOW = "flow"
    QUEUE = "queue"
    USER = "user"
    RING_GROUP = "ring_group"
    HANGUP = "hangup"


# The id prefix of what each kind names (`hangup` names nothing).
FWD_ID_PREFIX = {
    FwdKind.VOICEMAIL: "vm",
    FwdKind.FLOW: "flow",
    FwdKind.QUEUE: "q",
    FwdKind.USER: "usr",
    FwdKind.RING_GROUP: "rg",
}

FORWARDS = ("fwd_always", "fwd_busy", "fwd_noanswer")


class Transport(enum.StrEnum):
    UDP = "udp"
    TCP = "tcp"


@dataclass(frozen=True, slots=True)
class Forward:
    kind: FwdKind
    id: str | None  # None for `hangup`


@dataclass(frozen=True, slots=True)
class User:
    id: str
    account_id: str
    username: str
    display_name: str
    created_at: datetime
    updated_at: datetime
    voicemail_id: str | None = None
    ring_timeout_sec: int = 25
    ring_strategy: RingStrategy = RingStrategy.SIMULTANEOUS
    dnd: bool = False
    fwd_always: Forward | None = None
    fwd_busy: Forward | None = None
    fwd_noanswer: Forward | None = None
    max_simultaneous: int | None = None
    is_agent: bool = False
    status: UserStatus = UserStatus.OFFLINE
    out_cid_number: str | None = None  # E.164 caller id of its calls out (None: the setup's)

    def forwards(self) -> list[tuple[str, Forward]]:
        """(field prefix, forward) for every forward set."""
        found = [("fwd_always", self.fwd_always), ("fwd_busy", self.fwd_busy)]
        found.append(("fwd_noanswer", self.fwd_noanswer))
        return [(name, fwd) for name, fwd in found if fwd is not None]


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    account_id: str
    user_id: str
    auth_username: str
    realm: str
    ha1_md5: str
    ha1_sha256: str
    created_at: datetime
    updated_at: datetime
    transport: Transport = Transport.UDP
    ring_order: int = 0

    def __repr__(self) -> str:  # the hashes are password equivalents
        return f"Device(id={self.id!r}, user_id={self.user_id!r}, auth_username={self.auth_username!r})"


@dataclass(frozen=True, slots=True)
class Registration:
    """One Contact of a device, as its last REGISTER left it."""

    id: str
    account_id: str
    device_id: str
    user_id: str
    contact: str  # the Contact URI
    expires_at: datetime
    source_host: str  # where the REGISTER came from
    source_port: int
    transport: str  # udp or tcp (as received)
    path: tuple[str, ...] = ()
    call_id: str = ""
    cseq: int = 0
    user_agent: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuthFailures:
    """Failed digest attempts of one subject (`user:<auth_username>` or `addr:<ip>`)."""

    subject: str
    failures: int
    window_start: datetime
    locked_until: datetime | None = None


USERNAME_RE = re.compile(r"^[0-9]{1,20}$")
AUTH_USERNAME_RE = re.compile(r"^[A-Za-z0-9._\-+]{1,64}$")
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 128
MIN_RING_TIMEOUT, MAX_RING_TIMEOUT = 5, 300


def parse_username(raw: object) -> str:
    if not isinstance(raw, str) or not USERNAME_RE.match(raw):
        raise InvalidInput("username", "must be 1 to 20 digits (the extension)")
    return raw


def parse_auth_username(raw: object) -> str:
    if not isinstance(raw, str) or not AUTH_USERNAME_RE.match(raw):
        raise InvalidInput(
            "auth_username", "must be 1 to 64 letters, digits or . _ - + (no spaces)"
        )
    return raw


def check_password(raw: object, auth_username: str) -> str:
    """A device password strong enough to face a brute force over SIP."""
    if not isinstance(raw, str) or not raw.isprintable():
        raise InvalidInput("password", "must be printable text", error_id="weak-password")
    if not MIN_PASSWORD_LENGTH <= len(raw) <= MAX_PASSWORD_LENGTH:
        raise InvalidInput(
            "password",
            f"must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters long",
            error_id="weak-password",
        )
    if len(set(raw)) < 5 or auth_username.lower() in raw.lower():
        raise InvalidInput(
            "password",
            "is too easy to guess (at least 5 different characters, not the auth_username)",
            error_id="weak-password",
        )
    return raw


def ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """H(username:realm:password) with MD5 or SHA-256 (RFC 7616 §3.4.2)."""
    data = f"{username}:{realm}:{password}".encode()
    if algorithm == "MD5":
        return hashlib.md5(data, usedforsecurity=False).hexdigest()
    if algorithm == "SHA-256":
        return hashlib.sha256(data).hexdigest()
    raise ValueError(f"unknown digest algorithm {algorithm!r}")


def parse_forward(kind: object, dest_id: object, field: str) -> Forward | None:
    """A forward from its two fields (both null: none); ids checked for their prefix."""
    if kind is None:
        if dest_id is not None:
            raise InvalidInput(f"{field}_kind", "is required when an id is given")
        return None
    try:
        fwd_kind = FwdKind(str(kind))
    except ValueError:
        kinds = ", ".join(k.value for k in FwdKind)
        raise InvalidInput(f"{field}_kind", f"must be one of {kinds}") from None
    if fwd_kind is FwdKind.HANGUP:
        if dest_id is not None:
            raise InvalidInput(f"{field}_id", "must be null for hangup")
        return Forward(fwd_kind, None)
    prefix = FWD_ID_PREFIX[fwd_kind]
    if not isinstance(dest_id, str) or not is_id(dest_id, prefix):
        raise InvalidInput(f"{field}_id", f"must be an id {prefix}_... for {fwd_kind.value}")
    return Forward(fwd_kind, dest_id)


def parse_ring_timeout(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise InvalidInput("ring_timeout_sec", "must be an integer")
    if not MIN_RING_TIMEOUT <= raw <= MAX_RING_TIMEOUT:
        raise InvalidInput(
            "ring_timeout_sec", f"must be between {MIN_RING_TIMEOUT} and {MAX_RING_TIMEOUT}"
        )
    return raw
