"""Accounts (tenants) and their API keys."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from afterbeep.domain.errors import InvalidInput

KEY_PREFIX = "abk"
MAX_ACTIVE_KEYS = 100  # per account: the key list stays one short page


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    created_at: datetime
    timezone: str = "UTC"  # IANA; schedules and mailboxes without their own use it
    language: str = "en"  # a short BCP 47 tag
    allow_device_outbound: bool = False  # its devices may dial numbers outside afterbeep
    device_outbound_setup_id: str | None = None  # the telephony setup they dial out through


# A language, an optional script and an optional region or UN M.49 area: en, es, en-US, zh-Hant-TW.
_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[A-Z][a-z]{3})?(-([A-Z]{2}|[0-9]{3}))?$")


def parse_language(raw: object, field: str = "language") -> str:
    """A short BCP 47 tag in its canonical case (`en`, `es`, `en-US`, `zh-Hant-TW`)."""
    if isinstance(raw, str) and len(raw) <= 35:
        parts = raw.split("-")
        canonical = "-".join(
            [parts[0].lower()]
            + [p.title() if len(p) == 4 else p.upper() for p in parts[1:]]
        )
        if _LANGUAGE_RE.match(canonical):
            return canonical
    raise InvalidInput(field, "must be a short BCP 47 language tag such as 'en', 'es' or 'en-US'")


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    account_id: str
    key_hash: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


def make_secret(key_id: str) -> str:
    """A bearer token `abk_<key id>_<random>`; only its hash is stored."""
    return f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def secret_prefix(key_id: str) -> str:
    """The part of a key's secret that is not secret: how it begins."""
    return f"{KEY_PREFIX}_{key_id}_"


def hash_secret(secret: str) -> str:
    # The token has 256 bits of entropy, so a fast hash is enough and keeps each request cheap.
    return hashlib.sha256(secret.encode()).hexdigest()


def key_id_of(secret: str) -> str | None:
    parts = secret.split("_")
    if len(parts) < 4 or parts[0] != KEY_PREFIX or parts[1] != "key":
        return None
    return f"{parts[1]}_{parts[2]}"
