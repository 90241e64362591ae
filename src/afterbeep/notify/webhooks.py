"""WebhookDispatcher: the background worker that sends queued webhook deliveries.

Deliveries sit in the durable outbox table `webhook_deliveries`, written by
`EventOutbox.publish` in the transaction of the change they report. The dispatcher claims due
rows under a lease (several dispatchers, on one node or many, never claim the same row; see
`afterbeep.db.repos.webhooks`), POSTs each one, and records the attempt: 2xx is `delivered`;
anything else (status, connection error, timeout) retries after `domain.webhooks.backoff`
until `max_attempts`, then `failed`. A URL whose host resolves, at connection time, to an
address the network policy refuses is `blocked` at once, with no detail of the target.
Redirects are never followed. Delivery is at least once: a receiver should de-duplicate
on `Afterbeep-Delivery`.

Each request is:

    POST <webhook url>
    Content-Type: application/json
    Afterbeep-Event: evt_...            the event id (one event fans out to several webhooks)
    Afterbeep-Event-Type: message.created
    Afterbeep-Delivery: whd_...         the delivery id (stable across retries)
    Afterbeep-Timestamp: 1767225600     unix seconds of this attempt
    Afterbeep-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>

    {"id": "evt_...", "type": "message.created", "created_at": "...Z", "data": {...}}

Receivers check it with `verify_signature(secret, timestamp, body, signature, now)`.

The claim/wake/sleep/stop loop is `afterbeep.notify.outbox.OutboxWorker`; `notify()` is called
after any transaction of this process that published commits (see `watch_published`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import httpcore
import httpx

from afterbeep import __version__
from afterbeep.domain.clock import Clock
from afterbeep.domain.netpolicy import AddressBlocked, NetworkPolicy, literal_address
from afterbeep.domain.webhooks import (
    DeliveryStatus,
    after_attempt,
    blocked_attempt,
    sign,
    verify_signature,
)
from afterbeep.notify.outbox import OutboxWorker
from afterbeep.services.ports import UnitOfWorkFactory
from afterbeep.services.ports.events import ClaimedDelivery

__all__ = ["WebhookDispatcher", "sign", "verify_signature"]

log = logging.getLogger("afterbeep.webhooks")


class WebhookDispatcher(OutboxWorker[ClaimedDelivery]):
    name = "webhook-dispatcher"

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        *,
        timeout: float,
        max_attempts: int,
        batch_size: int = 20,
        idle_seconds: float = 5.0,
        policy: NetworkPolicy | None = None,
    ) -> None:
        super().__init__(
            clock,
            # Longer than any attempt can take, so a live dispatcher never loses its lease.
            lease=timedelta(seconds=2 * timeout + 30),
            batch_size=batch_size,
            idle_seconds=idle_seconds,
            stop_grace=timeout + 5,
            log=log,
        )
        self._uow = uow
        self._timeout = timeout
        self._max_attempts = max(1, max_attempts)
        self._policy = policy if policy is not None else NetworkPolicy()
        self._client: httpx.AsyncClient | None = None

    async def _watch(self) -> Callable[[], None] | None:
        async with self._uow() as uow:
            return uow.webhooks.watch_published(self.notify)

    async def _claim_due(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedDelivery]:
        async with self._uow() as uow:
            return await uow.webhooks.claim_due(now, lease_until, limit)

    async def _release(self, claims: list[ClaimedDelivery]) -> None:
        async with self._uow() as uow:
            await uow.webhooks.release(claims)

    async def _next_wakeup(self) -> datetime | None:
        async with self._uow() as uow:
            return await uow.webhooks.next_wakeup()

    def _claim_key(self, claim: ClaimedDelivery) -> str:
        return claim.delivery.id

    async def _close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._timeout,
                follow_redirects=False,
                trust_env=False,
                headers={"User-Agent": f"afterbeep-webhooks/{__version__}"},
                transport=GuardedTransport(self._policy, max_connections=self._batch_size),
            )
        return self._client

    async def _attempt(self, claim: ClaimedDelivery) -> None:
        delivery = claim.delivery
        body = delivery.payload.encode()
        timestamp = int(self._clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            "Afterbeep-Event": delivery.event_id,
            "Afterbeep-Event-Type": delivery.event,
            "Afterbeep-Delivery": delivery.id,
            "Afterbeep-Timestamp": str(timestamp),
            "Afterbeep-Signature": sign(claim.secret, timestamp, body),
        }
        status_code: int | None = None
        error: str | None = None
        blocked = False
        try:
            async with asyncio.timeout(self._timeout):
                async with self._http().stream(
                    "POST", claim.url, content=body, headers=headers
                ) as response:
                    status_code = response.status_code
        except AddressBlocked:
            blocked = True
        except TimeoutError:
            error = f"timed out after {self._timeout:g} s"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        now = self._clock.now()
        if blocked:
            outcome = blocked_attempt(delivery.attempts, now)
        else:
            outcome = after_attempt(delivery.attempts, status_code, error, now, self._max_attempts)
        async with self._uow() as uow:
            kept = await uow.webhooks.record_attempt(claim, outcome, now)
        if not kept:
            log.warning("webhook delivery %s: lease lost, attempt not recorded", delivery.id)
        elif outcome.status is DeliveryStatus.BLOCKED:
            log.warning("webhook delivery %s blocked by the network policy", delivery.id)
        elif outcome.status is DeliveryStatus.FAILED:
            log.warning(
                "webhook delivery %s failed after %d attempts", delivery.id, outcome.attempts
            )
        else:
            log.debug(
                "webhook delivery %s attempt %d: %s",
                delivery.id,
                outcome.attempts,
                outcome.status.value,
            )


class GuardedTransport(httpx.AsyncHTTPTransport):
    """An httpx transport whose connections go only to addresses the policy permits: the
    host is resolved once, the address checked, and the connection made to that address
    (TLS still verifies the certificate against the URL's host name)."""

    def __init__(self, policy: NetworkPolicy, *, max_connections: int) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=max_connections,
            network_backend=_GuardedBackend(policy),
        )


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, policy: NetworkPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        literal = literal_address(host)
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}") from exc
            addresses = [str(info[4][0]) for info in infos]
        chosen = self._policy.first_permitted(addresses)
        if chosen is None:
            raise AddressBlocked()
        return await self._inner.connect_tcp(
            chosen, port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressBlocked()

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
