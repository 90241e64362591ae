"""The ringless delivery workers: claim due sends, pace them per trunk, place the deposits.

`DeliveryWorker` is an `OutboxWorker` (claim under a lease, attempt, wake on `notify()`, a
graceful `stop()` that hands unfinished claims back) over `SqlDeliveryStore`, running
`DeliveryService.attempt` per claim. A stopping worker claims nothing more and lets the calls
in progress go on for its grace (AFTERBEEP_DRAIN_SECONDS), then cancels them: each hangs up
(BYE, or CANCEL while it rings), its attempt is recorded `interrupted` and its lease dropped at
once, so any node retries it. SIP deposits of one telephony setup are paced: at most
`max_calls_per_second` new INVITEs (a token bucket, `TokenBucket`, pure and driven by the
time passed in) and `max_concurrent_calls` at once. Local deposits place no call and are not
paced. `SipDepositor` is the `DepositDialer` over the `TelephonyServer`.

A claim must not wait behind the pacer longer than its lease allows (else another claimer takes
the send again while it is still queued here). So the worker keeps a pipeline rather than
batches: it claims only what can start at once, per setup at most `claimable_now()` sends
(no more than the setup's concurrent calls, no more than the INVITEs its rate allows within
`start_within`), hands any excess straight back, and claims more as attempts end. That also
keeps a trunk busy at its configured rate instead of waiting for a whole batch to end.

On SQLite one process owns the database, so at start-up the worker can take back at once the
leases its previous life held (`reclaim`); with several nodes they come back when they expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from afterbeep.db.repos.delivery import SqlDeliveryStore
from afterbeep.domain.clock import Clock
from afterbeep.notify.outbox import OutboxWorker, WorkerState
from afterbeep.services.delivery import (
    AttemptResult,
    Claim,
    DeliveryService,
    SipDeposit,
    retryable,
)
from afterbeep.telephony.call import MEDIA_NOT_ALLOWED, DialFailed, MediaNotAllowed
from afterbeep.telephony.interface import CallEnded
from afterbeep.telephony.server import TelephonyServer
from afterbeep.telephony.sip import Credentials

__all__ = [
    "DeliveryWorker",
    "Pacer",
    "SipDepositor",
    "TokenBucket",
    "TrunkLimits",
    "claimable_now",
]

log = logging.getLogger("afterbeep.delivery")


class TokenBucket:
    """`rate` tokens a second, at most `burst` kept. `reserve(now)` takes one token and says
    how long to wait before using it (0 when one was there)."""

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst)
        self._tokens = self.burst
        self._at: float | None = None

    def reserve(self, now: float) -> float:
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


@dataclass(frozen=True, slots=True)
class TrunkLimits:
    calls_per_second: float
    max_concurrent: int


def claimable_now(limits: TrunkLimits, start_within: float) -> int:
    """How many sends of one setup a worker may hold at once so that each starts its call
    within `start_within` seconds: no more than its concurrent calls (one more would wait for
    a whole call to end) and no more than the INVITEs its rate allows in that time."""
    by_rate = 1 + int(max(0.0, start_within) * limits.calls_per_second)
    return max(1, min(limits.max_concurrent, by_rate))


class Pacer:
    """Per-setup pacing: a token bucket for INVITEs per second and a semaphore for calls at once."""

    def __init__(self, monotonic: Callable[[], float] | None = None) -> None:
        self._monotonic = monotonic
        self._buckets: dict[str, TokenBucket] = {}
        self._slots: dict[str, tuple[int, asyncio.Semaphore]] = {}

    def _now(self) -> float:
        return self._monotonic() if self._monotonic else asyncio.get_running_loop().time()

    @contextlib.asynccontextmanager
    async def call_slot(self, setup_id: str, limits: TrunkLimits) -> AsyncIterator[None]:
        held = self._slots.get(setup_id)
        if held is None or held[0] != limits.max_concurrent:
            held = (limits.max_concurrent, asyncio.Semaphore(max(1, limits.max_concurrent)))
            self._slots[setup_id] = held
        async with held[1]:
            bucket = self._buckets.get(setup_id)
            if bucket is None or bucket.rate != limits.calls_per_second:
                bucket = TokenBucket(limits.calls_per_second)
                self._buckets[setup_id] = bucket
            delay = bucket.reserve(self._now())
            if delay > 0:
                await asyncio.sleep(delay)
            yield


class SipDepositor:
    """Places SIP deposits from a `TelephonyServer`, paced per setup by the `Pacer`."""

    def __init__(
        self,
        server: Callable[[], TelephonyServer | None],
        pacer: Pacer,
        *,
        ring_timeout: float = 45.0,
        tail_seconds: float = 0.3,
    ) -> None:
        self._server = server
        self._pacer = pacer
        self._ring_timeout = ring_timeout
        self._tail = tail_seconds
        self.invites = 0

    async def sip_deposit(self, deposit: SipDeposit) -> AttemptResult:
        limits = TrunkLimits(deposit.calls_per_second, deposit.max_concurrent_calls)
        async with self._pacer.call_slot(deposit.setup_id, limits):
            return await self._place(deposit)

    async def _place(self, deposit: SipDeposit) -> AttemptResult:
        server = self._server()
        if server is None:
            return AttemptResult(False, 503, "SIP is not running on this node", 0, retry=True)
        loop = asyncio.get_running_loop()
        started = loop.time()

        def elapsed() -> int:
            return int((loop.time() - started) * 1000)

        credentials = (
            Credentials(deposit.username, deposit.password)
            if deposit.username and deposit.password is not None
            else None
        )
        self.invites += 1
        try:
            outbound = await server.dial(
                deposit.to_uri,
                deposit.from_uri,
                credentials=credentials,
                outbound_proxy=deposit.outbound_proxy,
                timeout=self._ring_timeout,
                headers=deposit.headers,
            )
            try:
                call = await outbound.wait_answered()
            except asyncio.CancelledError:
                await outbound.aclose()  # CANCEL while it rings (a stopping worker gave up)
                raise
        except DialFailed as exc:
            return AttemptResult(
                False, exc.code, f"{exc.code} {exc.reason}", elapsed(), retry=retryable(exc.code)
            )
        answered = loop.time()
        try:
            await call.play(deposit.audio)
            await asyncio.sleep(self._tail)
            if call.ended.is_set():
                raise CallEnded()
        except CallEnded:
            if call.end_reason == MEDIA_NOT_ALLOWED:  # a re-INVITE aimed the audio elsewhere
                refused = MediaNotAllowed()
                return AttemptResult(
                    False, refused.code, f"{refused.code} {refused.reason}", elapsed(), retry=False
                )
            return AttemptResult(
                False, 200, "far end hung up before the end of the audio", elapsed(), retry=True
            )
        finally:
            await call.hangup()
        return AttemptResult(True, 200, None, int((loop.time() - answered) * 1000))


class DeliveryWorker(OutboxWorker[Claim]):
    """Claims due sends and runs `DeliveryService.attempt` on each; see the module docstring."""

    name = "delivery"

    def __init__(
        self,
        store: SqlDeliveryStore,
        service: DeliveryService,
        clock: Clock,
        *,
        lease: timedelta,
        batch_size: int = 20,
        idle_seconds: float = 30.0,
        stop_grace: float = 10.0,
        limits: Callable[[str], Awaitable[TrunkLimits | None]] | None = None,
        start_within: timedelta | None = None,
        reclaim: Callable[[datetime], Awaitable[int]] | None = None,
    ) -> None:
        """`batch_size` bounds the sends in flight; `limits` gives a setup's pacing (None:
        no bound per setup); `start_within` is how long a claim may wait for its call to
        start (the lease less one whole attempt); `reclaim(now)` hands back the leases left
        by a previous life of this sole claimer."""
        super().__init__(
            clock,
            lease=lease,
            batch_size=batch_size,
            idle_seconds=idle_seconds,
            stop_grace=stop_grace,
            log=log,
        )
        self._store = store
        self._service = service
        self._limits = limits
        self._start_within = (start_within or lease).total_seconds()
        self._reclaim = reclaim
        self._more = asyncio.Event()  # an attempt ended, or new sends were written

    def notify(self) -> None:
        super().notify()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._more.set)

    async def recover(self) -> int:
        """At start-up: take back our previous life's leases (sole claimer only), then mark
        the attempts a dead worker left open as interrupted."""
        now = self._clock.now()
        if self._reclaim is not None:
            released = await self._reclaim(now)
            if released:
                log.warning("took back %d sends left in flight by a stopped worker", released)
        return await self._store.mark_interrupted(now)

    async def run_once(self) -> int:
        """Attempt every send due now (by the injected clock) as a pipeline (see the module
        docstring); how many were attempted."""
        attempted = 0
        running: dict[str, str] = {}  # send id -> setup id, claimed by this round, not ended
        ended = self._more

        def done(key: str) -> Callable[[object], None]:
            def callback(_task: object) -> None:
                running.pop(key, None)
                ended.set()

            return callback

        caps: dict[str, int | None] = {}  # per setup, looked up once a round
        async with asyncio.TaskGroup() as group:
            while self._state in (WorkerState.IDLE, WorkerState.RUNNING):
                ended.clear()
                room = self._batch_size - len(running)
                if room > 0:
                    now = self._clock.now()
                    busy = _full_setups(running, caps)
                    claims = await self._claim_due(now, now + self._lease, room, busy)
                    admitted, refused = await self._admit(claims, running, caps)
                    if refused:
                        await self._release(refused)
                    for claim in admitted:
                        running[claim.send_id] = claim.setup_id
                        self._inflight[claim.send_id] = claim
                        task = group.create_task(
                            self._attempt_owned(claim), name=f"{self.name}-{claim.send_id}"
                        )
                        task.add_done_callback(done(claim.send_id))
                    attempted += len(admitted)
                    if refused or len(claims) == room:
                        continue  # more may be due (around the trunks that are full now)
                if not running:
                    break
                await ended.wait()
        return attempted

    async def _admit(
        self, claims: list[Claim], running: dict[str, str], caps: dict[str, int | None]
    ) -> tuple[list[Claim], list[Claim]]:
        """Split fresh claims into those that can start now and the excess to hand back."""
        if self._limits is None or not claims:
            return claims, []
        held: dict[str, int] = {}
        for setup_id in running.values():
            held[setup_id] = held.get(setup_id, 0) + 1
        admitted: list[Claim] = []
        refused: list[Claim] = []
        for claim in claims:
            if claim.setup_id not in caps:
                limits = await self._limits(claim.setup_id)
                caps[claim.setup_id] = (
                    None if limits is None else claimable_now(limits, self._start_within)
                )
            cap = caps[claim.setup_id]
            count = held.get(claim.setup_id, 0)
            if cap is not None and count >= cap:
                refused.append(claim)
                continue
            held[claim.setup_id] = count + 1
            admitted.append(claim)
        return admitted, refused

    async def _claim_due(
        self, now: datetime, lease_until: datetime, limit: int, busy: Collection[str] = ()
    ) -> list[Claim]:
        return await self._store.claim_due(now, lease_until, limit, busy)

    async def _attempt(self, claim: Claim) -> None:
        await self._service.attempt(claim)

    async def _release(self, claims: list[Claim]) -> None:
        await self._store.release(claims)

    async def _interrupted(self, claims: list[Claim]) -> None:
        count = await self._store.interrupt(claims, self._clock.now())
        if count:
            log.warning("shutdown: %d attempts interrupted and handed back for a retry", count)

    async def _next_wakeup(self) -> datetime | None:
        return await self._store.next_claimable_at()

    def _claim_key(self, claim: Claim) -> str:
        return claim.send_id


def _full_setups(running: dict[str, str], caps: dict[str, int | None]) -> set[str]:
    """The setups that have as many sends in flight as they may start (claim none for them)."""
    held: dict[str, int] = {}
    for setup_id in running.values():
        held[setup_id] = held.get(setup_id, 0) + 1
    return {
        setup_id for setup_id, cap in caps.items() if cap is not None and held.get(setup_id, 0) >= cap
    }
