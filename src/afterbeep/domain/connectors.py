"""Connectors (`ccx_...`): an outside contact center's Telephony API (seed 002) that receives the
voicemails left for a team, instead of afterbeep's own.

A connector names the API's base URL (the `/telephony/v1` root), the call center's API name
(the JWT `sub` and `callCenterApiName`), the org id (the JWT `iss`), an optional audience and
`Telephony-Provider-Name` header. Its RS256 private key is kept in the secret store under
`kv:ccx:<id>:key`; the connector row holds only that reference, and the API never returns it.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from afterbeep.domain.errors import InvalidInput

NAME_MAX = 200
URL_MAX = 500
ORG_ID_MAX = 64
AUDIENCE_MAX = 300
HEADER_MAX = 80
QUEUE_MAX = 80
TOKEN_TTL_SECONDS = 300  # a request's JWT is good for five minutes

_API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+( [!#$%&'*+.^_`|~0-9A-Za-z-]+)*")


@dataclass(frozen=True, slots=True)
class Connector:
    id: str
    account_id: str
    name: str
    base_url: str
    call_center_api_name: str
    org_id: str
    created_at: datetime
    updated_at: datetime
    key_ref: str | None = None  # the private key's place in the secret store
    audience: str | None = None  # the JWT `aud`, when the far end wants one
    provider_name: str | None = None  # the Telephony-Provider-Name header
    fallback_queue: str | None = None  # the omniFlow `fallbackQueue` (default: the mailbox's queue)


EDITABLE = frozenset(
    {"name", "base_url", "call_center_api_name", "org_id", "audience", "provider_name", "fallback_queue"}
)
NULLABLE = frozenset({"audience", "provider_name", "fallback_queue"})


def key_ref(connector_id: str) -> str:
    return f"kv:ccx:{connector_id}:key"


def _printable(field: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    value = value.strip()
    if not 1 <= len(value) <= limit:
        raise InvalidInput(field, f"must be 1 to {limit} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        raise InvalidInput(field, "must not contain control characters")
    return value


def check_base_url(url: object) -> str:
    if not isinstance(url, str):
        raise InvalidInput("base_url", "must be a string")
    url = url.strip().rstrip("/")
    if len(url) > URL_MAX:
        raise InvalidInput("base_url", f"must be at most {URL_MAX} characters")
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        raise InvalidInput("base_url", "is not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("base_url", "must be an absolute http:// or https:// URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidInput("base_url", "must not carry a query, a fragment or credentials")
    if not url.isprintable() or any(ch.isspace() for ch in url):
        raise InvalidInput("base_url", "must not contain whitespace or control characters")
    return url


def host_of(url: str) -> str:
    return urlsplit(url).hostname or ""


def check_connector(connector: Connector) -> Connector:
    """The connector with its fields normalised; `InvalidInput` names the first bad one."""
    name = _printable("name", connector.name, NAME_MAX)
    base_url = check_base_url(connector.base_url)
    api_name = connector.call_center_api_name
    if not isinstance(api_name, str) or not _API_NAME.fullmatch(api_name):
        raise InvalidInput(
            "call_center_api_name", "must be a letter then up to 79 letters, digits or _"
        )
    org_id = _printable("org_id", connector.org_id, ORG_ID_MAX)
    audience = connector.audience
    if audience is not None:
        audience = _printable("audience", audience, AUDIENCE_MAX)
    provider = connector.provider_name
    if provider is not None:
        provider = _printable("provider_name", provider, HEADER_MAX)
        if not _TOKEN.fullmatch(provider):
            raise InvalidInput("provider_name", "must be printable ASCII fit for an HTTP header")
    fallback = connector.fallback_queue
    if fallback is not None:
        fallback = _printable("fallback_queue", fallback, QUEUE_MAX)
    return dataclasses.replace(
        connector,
        name=name,
        base_url=base_url,
        org_id=org_id,
        audience=audience,
        provider_name=provider,
        fallback_queue=fallback,
    )


def jwt_claims(
    connector: Connector, now: datetime, jti: str, ttl_seconds: int = TOKEN_TTL_SECONDS
) -> dict[str, Any]:
    """The claims of one request's token: `iss` the org id, `sub` the call center's API name."""
    issued = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": connector.org_id,
        "sub": connector.call_center_api_name,
        "iat": issued,
        "exp": issued + ttl_seconds,
        "jti": jti,
    }
    if connector.audience:
        claims["aud"] = connector.audience
    return claims
