"""Signed links: short-lived URLs a browser may fetch without an API key (message audio).

A link carries `exp` (Unix seconds) and `sig`, an HMAC-SHA256 over the URL path, the expiry and
an optional subject (whatever else the link must be bound to, such as an account id), keyed
with `AFTERBEEP_SECRET_KEY`. A link lives at most `MAX_TTL_SECONDS`; `verify_link` also
refuses any link whose expiry lies further ahead than that, so no link, however it was made,
works for longer. Pure functions: the caller passes the time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import urlencode

MAX_TTL_SECONDS = 15 * 60
_VERSION = "afterbeep-link-v1"
_MAX_EXP_DIGITS = 12


def _key_bytes(secret_key: bytes | str) -> bytes:
    key = secret_key.encode() if isinstance(secret_key, str) else secret_key
    if not key:
        raise ValueError("signing needs a non-empty secret key")
    return key


def _signature(key: bytes, path: str, exp: int, subject: str) -> str:
    # JSON keeps the fields apart whatever characters they hold.
    message = json.dumps([_VERSION, path, exp, subject], separators=(",", ":"))
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign_link(
    secret_key: bytes | str, path: str, expires_at_epoch: int, subject: str = ""
) -> dict[str, str]:
    """Query parameters (`exp`, `sig`) that make `path` fetchable until `expires_at_epoch`."""
    if not path.startswith("/") or "?" in path or "#" in path:
        raise ValueError("sign the URL path alone, starting with '/'")
    if expires_at_epoch < 0:
        raise ValueError("expiry must be a Unix time")
    signature = _signature(_key_bytes(secret_key), path, expires_at_epoch, subject)
    return {"exp": str(expires_at_epoch), "sig": signature}


def verify_link(
    secret_key: bytes | str,
    path: str,
    exp: str | int,
    sig: str,
    now_epoch: float,
    subject: str = "",
) -> bool:
    """True when `sig` is valid for `path`, `exp` and `subject` and the link has not expired.

    Malformed input gives False, never an exception (only an empty key raises).
    """
    key = _key_bytes(secret_key)
    if isinstance(exp, str):
        if not exp.isascii() or not exp.isdigit() or len(exp) > _MAX_EXP_DIGITS:
            return False
        exp = int(exp)
    if not now_epoch < exp <= now_epoch + MAX_TTL_SECONDS:
        return False
    expected = _signature(key, path, exp, subject)
    return hmac.compare_digest(expected.encode(), sig.encode("utf-8", "surrogatepass"))


def make_signed_url(
    base_url: str,
    path: str,
    secret_key: bytes | str,
    ttl_seconds: int,
    now: float,
    subject: str = "",
) -> str:
    """`base_url` + `path` + `?exp=...&sig=...`, valid for `ttl_seconds` (at most 900)."""
    if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"signed links live between 1 and {MAX_TTL_SECONDS} seconds")
    params = sign_link(secret_key, path, int(now) + ttl_seconds, subject)
    return f"{base_url.rstrip('/')}{path}?{urlencode(params)}"
