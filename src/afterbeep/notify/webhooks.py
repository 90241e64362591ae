"""WebhookDispatcher: the background worker that sends queued webhook deliveries.

Deliveries sit in the durable outbox table `webhook_deliveries`, written by
`EventOutbox.publish` in the transaction of the change they report. The dispatcher claims due
rows under a lease (several dispatchers, on one node or many, never claim the same row; see
`afterbeep.db.repos.webhooks`), POSTs each one, and records the attempt: 2xx is `delivered`;
anything else (status, connection error, timeout) retries after `domain.webhooks.backoff`
until `max_attempts`, then `failed`. Delivery is at least once: a receiver should de-duplicate
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

The worker waits on an asyncio.Event: `notify()` (called after a transaction that published
commits in this process) wakes it at once; otherwise it sleeps until the next row falls due,
at most `idle_seconds`, which also picks up rows published by other processes.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from datetime import timedelta

import httpx

from afterbeep import __version__
from afterbeep.domain.clock import Clock
from afterbeep.domain.webhooks import DeliveryStatus, after_attempt, sign, verify_signature
from afterbeep.services.ports import UnitOfWorkFactory
from afterbeep.services.ports.events import ClaimedDelivery

__all__ = ["WebhookDispatcher", "sign", "verify_signature"]

log = logging.getLogger("afterbeep.webhooks")


class _State(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class WebhookDispatcher:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        *,
        timeout: float,
        max_attempts: int,
        batch_size: int = 20,
        idle_seconds: float = 5.0,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._timeout = timeout
        self._max_attempts = max(1, max_attempts)
        self._batch_size = batch_size
        self._idle_seconds = idle_seconds
        # Longer than any attempt can take, so a live dispatcher never loses its lease.
        self._lease = timedelta(seconds=2 * timeout + 30)
        self._state = _State.IDLE
        self._wake = asyncio.Event()
        self._sleeping = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._unwatch: Callable[[], None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._inflight: dict[str, ClaimedDelivery] = {}

    async def start(self) -> None:
        if self._state is not _State.IDLE:
            raise RuntimeError(f"dispatcher is {self._state.value}")
        self._state = _State.RUNNING
        self._loop = asyncio.get_running_loop()
        async with self._uow() as uow:
            self._unwatch = uow.webhooks.watch_published(self.notify)
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    def notify(self) -> None:
        """Something was published: look for due deliveries now. Safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._wake.set)

    async def idle(self) -> None:
        """Return once the started worker has nothing due and sleeps (tests, drains)."""
        await self._sleeping.wait()

    async def run_once(self) -> int:
        """Attempt every delivery due now (by the injected clock); how many were attempted."""
        attempted = 0
        while self._state in (_State.IDLE, _State.RUNNING):
            now = self._clock.now()
            async with self._uow() as uow:
                claims = await uow.webhooks.claim_due(now, now + self._lease, self._batch_size)
            if not claims:
                break
            for claim in claims:
                self._inflight[claim.delivery.id] = claim
            async with asyncio.TaskGroup() as group:
                for claim in claims:
                    group.create_task(self._deliver(claim), name=f"webhook-{claim.delivery.id}")
            attempted += len(claims)
        return attempted

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming; let in-flight attempts finish for `grace` seconds (default: the HTTP
        timeout and a little), then cancel them and give their claims back unattempted."""
        if self._state is _State.STOPPED:
            return
        self._state = _State.STOPPING
        self._wake.set()
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        task, self._task = self._task, None
        if task is not None:
            done, _ = await asyncio.wait(
                {task}, timeout=self._timeout + 5 if grace is None else grace
            )
            if not done:
                task.cancel()
                await asyncio.wait({task})
            if not task.cancelled() and task.exception() is not None:
                log.error("webhook dispatcher ended with an error", exc_info=task.exception())
        if self._inflight:
            async with self._uow() as uow:
                await uow.webhooks.release(list(self._inflight.values()))
            self._inflight.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._state = _State.STOPPED

    async def _run(self) -> None:
        while self._state is _State.RUNNING:
            self._wake.clear()
            try:
                attempted = await self.run_once()
                delay = await self._delay_until_due()
            except Exception:
                log.exception(
                    "webhook dispatch round failed; retrying in %.0f s", self._idle_seconds
                )
                attempted, delay = 0, self._idle_seconds
            if attempted == 0 and delay <= 0:
                # Due by the database but nothing claimable (rows mid-claim elsewhere): don't spin.
                delay = min(1.0, self._idle_seconds)
            if self._state is not _State.RUNNING:
                break
            self._sleeping.set()
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._sleeping.clear()

    async def _delay_until_due(self) -> float:
        async with self._uow() as uow:
            due = await uow.webhooks.next_wakeup()
        if due is None:
            return self._idle_seconds
        seconds = (due - self._clock.now()).total_seconds()
        return max(0.0, min(seconds, self._idle_seconds))

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._timeout,
                follow_redirects=False,
                trust_env=False,
                limits=httpx.Limits(max_connections=self._batch_size),
                headers={"User-Agent": f"afterbeep-webhooks/{__version__}"},
            )
        return self._client

    async def _deliver(self, claim: ClaimedDelivery) -> None:
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
        try:
            async with asyncio.timeout(self._timeout):
                async with self._http().stream(
                    "POST", claim.url, content=body, headers=headers
                ) as response:
                    status_code = response.status_code
        except TimeoutError:
            error = f"timed out after {self._timeout:g} s"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        now = self._clock.now()
        outcome = after_attempt(delivery.attempts, status_code, error, now, self._max_attempts)
        async with self._uow() as uow:
            kept = await uow.webhooks.record_attempt(claim, outcome, now)
        self._inflight.pop(delivery.id, None)
        if not kept:
            log.warning("webhook delivery %s: lease lost, attempt not recorded", delivery.id)
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
