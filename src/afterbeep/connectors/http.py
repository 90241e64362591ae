"""HttpTelephonyApi: the `TelephonyApi` port over HTTP, to an outside contact center.

Every request carries a fresh RS256 JWT (`iss` the org id, `sub` the call center's API name,
`iat`, `exp` five minutes on, a unique `jti`, `aud` when the connector names one), signed with
the connector's private key, and the `Telephony-Provider-Name` header when one is set.

A 5xx, a 429 or a transport error is tried again, up to `max_tries` in all, after a backoff
(0.5 s, 1 s, 2 s ...) or the answer's `Retry-After` (seconds or an HTTP date) when it says
longer, at most `retry_after_max`; then `TelephonyApiError(retryable=True)` leaves the rest to
the sequence's own backoff. Any other error answer is `TelephonyApiError(retryable=False)`.
Every attempt, and its answer, is told to the observer. Connections go only to addresses the
network policy permits (`GuardedTransport`, checked on the address actually connected to).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import jwt

from afterbeep import __version__
from afterbeep.domain.clock import Clock
from afterbeep.domain.connectors import Connector, jwt_claims
from afterbeep.domain.netpolicy import AddressBlocked, NetworkPolicy
from afterbeep.notify.webhooks import GuardedTransport
from afterbeep.services.contact_center import Json, TelephonyApiError
from afterbeep.services.voicemail_sequence import ApiExchange, Observer

log = logging.getLogger("afterbeep.connectors")

ANSWER_MAX = 64 * 1024  # an answer kept (and parsed) up to this size
Sleep = Callable[[float], Awaitable[None]]


def http_client(policy: NetworkPolicy, *, timeout: float = 10.0, max_connections: int = 8) -> httpx.AsyncClient:
    """The client connectors share: no proxies from the environment, no redirects, the policy."""
    return httpx.AsyncClient(
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": f"afterbeep-connector/{__version__}"},
        transport=GuardedTransport(policy, max_connections=max_connections),
    )


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A Retry-After header's delay: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class HttpTelephonyApi:
    def __init__(
        self,
        connector: Connector,
        private_key_pem: str,
        client: httpx.AsyncClient,
        clock: Clock,
        *,
        observer: Observer | None = None,
        max_tries: int = 4,
        backoff_base: float = 0.5,
        retry_after_max: float = 30.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._connector = connector
        self._key = private_key_pem
        self._client = client
        self._clock = clock
        self._observer = observer
        self._max_tries = max(1, max_tries)
        self._backoff_base = backoff_base
        self._retry_after_max = retry_after_max
        self._sleep = sleep

    async def create_voice_call(self, body: Mapping[str, Any]) -> Json:
        return await self._request("POST", "/voiceCalls", body)

    async def update_voice_call(self, key: str, body: Mapping[str, Any]) -> Json:
        return await self._request("PATCH", f"/voiceCalls/{_seg(key)}", body)

    async def add_messages(self, vendor_call_key: str, body: Mapping[str, Any]) -> Json:
        return await self._request("POST", f"/voiceCalls/{_seg(vendor_call_key)}/messages", body)

    async def route(self, voice_call_id: str, body: Mapping[str, Any]) -> Json:
        return await self._request("PATCH", f"/voiceCalls/{_seg(voice_call_id)}/omniFlow", body)

    def token(self) -> str:
        claims = jwt_claims(self._connector, self._clock.now(), uuid.uuid4().hex)
        return jwt.encode(claims, self._key, algorithm="RS256")

    def _headers(self) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.token()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        if self._connector.provider_name:
            headers["Telephony-Provider-Name"] = self._connector.provider_name
        return headers

    async def _request(self, method: str, path: str, body: Mapping[str, Any]) -> Json:
        url = self._connector.base_url + path
        payload = dict(body)
        content = json.dumps(payload, separators=(",", ":")).encode()
        for attempt in range(1, self._max_tries + 1):
            last = attempt == self._max_tries
            try:
                response = await self._client.request(
                    method, url, content=content, headers=self._headers()
                )
            except AddressBlocked as exc:
                problem = {"title": "the destination address is not allowed"}
                self._observe(method, path, payload, None, None, problem["title"], attempt)
                raise TelephonyApiError(403, problem, retryable=False) from exc
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                failed = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                self._observe(method, path, payload, None, None, failed, attempt)
                if not last:
                    await self._sleep(self._backoff(attempt))
                    continue
                raise TelephonyApiError(503, {"title": failed}, retryable=True) from exc
            answer = _json_of(response)
            status = response.status_code
            refused = None if response.is_success else _title(answer, status)
            self._observe(method, path, payload, status, answer, refused, attempt)
            if response.is_success:
                return answer
            retryable = status >= 500 or status == 429
            if retryable and not last:
                await self._sleep(self._delay(attempt, response))
                continue
            raise TelephonyApiError(status, answer, retryable=retryable)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int) -> float:
        return float(self._backoff_base * 2 ** (attempt - 1))

    def _delay(self, attempt: int, response: httpx.Response) -> float:
        said = retry_after_seconds(response.headers.get("Retry-After"), self._clock.now())
        delay = self._backoff(attempt)
        if said is not None:
            delay = max(delay, min(said, self._retry_after_max))
        return delay

    def _observe(
        self,
        method: str,
        path: str,
        request: Json,
        status: int | None,
        answer: Json | None,
        error: str | None,
        attempt: int,
    ) -> None:
        if error is not None:
            log.warning(
                "connector %s: %s %s attempt %d: %s",
                self._connector.id,
                method,
                path.split("/", 2)[1] if "/" in path else path,
                attempt,
                error[:200],
            )
        if self._observer is not None:
            self._observer(ApiExchange(method, path, request, status, answer, error, attempt))


def _seg(value: str) -> str:
    return quote(value, safe="")


def _json_of(response: httpx.Response) -> Json:
    raw = response.content[:ANSWER_MAX]
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {"title": raw[:200].decode("utf-8", errors="replace")}
    return data if isinstance(data, dict) else {"value": data}


def _title(answer: Json, status: int) -> str:
    for name in ("detail", "title", "message", "errors"):
        value = answer.get(name)
        if value:
            return f"HTTP {status}: {value}"[:500]
    return f"HTTP {status}"
