"""The worker loop shared by afterbeep's durable outboxes (webhook deliveries, emails).

An outbox is a table of pending rows, each due at `next_attempt_at`. A worker claims due rows
under a lease (so several workers, in one process or many, never attempt the same row at
once, and the rows of a crashed worker come back when its lease runs out), attempts each one,
and records the outcome, which drops the lease. What a claim is and how it is attempted
belongs to the subclass; this module holds the loop:

- `run_once()` claims and attempts batches until nothing due is left (by the injected clock);
- the started worker waits on an `asyncio.Event`: `notify()` (safe from any thread) wakes it
  at once, otherwise it sleeps until the next row falls due, at most `idle_seconds`, which
  also picks up rows written by other processes;
- `stop(grace)` stops claiming, gives in-flight attempts `grace` seconds, cancels the rest and
  hands their claims back (`_interrupted`: unattempted by default), so nothing waits for a
  lease to expire after a restart.

The state machine is explicit: IDLE → RUNNING → STOPPING → STOPPED (`run_once` also works in
IDLE, for tests and one-shot drains).
"""

from __future__ import annotations

import abc
import asyncio
import enum
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from afterbeep.domain.clock import Clock

C = TypeVar("C")


class WorkerState(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class OutboxWorker(abc.ABC, Generic[C]):
    """Claim due rows of type `C` in batches and attempt them; see the module docstring."""

    name = "outbox"

    def __init__(
        self,
        clock: Clock,
        *,
        lease: timedelta,
        batch_size: int,
        idle_seconds: float,
        stop_grace: float,
        log: logging.Logger,
        cancel_grace: float = 5.0,
    ) -> None:
        self._clock = clock
        self._lease = lease
        self._batch_size = max(1, batch_size)
        self._idle_seconds = idle_seconds
        self._stop_grace = stop_grace
        self._cancel_grace = cancel_grace
        self._log = log
        self._state = WorkerState.IDLE
        self._wake = asyncio.Event()
        self._sleeping = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._unwatch: Callable[[], None] | None = None
        self._inflight: dict[str, C] = {}

    # What a subclass provides.

    @abc.abstractmethod
    async def _claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[C]:
        """Lease up to `limit` rows due at `now` that no live lease holds."""

    @abc.abstractmethod
    async def _attempt(self, claim: C) -> None:
        """Attempt one claimed row and record the outcome (which drops its lease)."""

    @abc.abstractmethod
    async def _release(self, claims: list[C]) -> None:
        """Give leased rows back unattempted."""

    @abc.abstractmethod
    async def _next_wakeup(self) -> datetime | None:
        """When the earliest pending row becomes claimable; None when there is none."""

    @abc.abstractmethod
    def _claim_key(self, claim: C) -> str:
        """The row's id."""

    async def _watch(self) -> Callable[[], None] | None:
        """Arrange for `notify()` to be called when rows are written; returns the undo."""
        return None

    async def _close(self) -> None:
        """Release what attempts opened (HTTP clients...), once the loop has ended."""

    async def _interrupted(self, claims: list[C]) -> None:
        """Give back the claims whose attempts `stop()` cut short (by default as unattempted)."""
        await self._release(claims)

    # The loop.

    @property
    def state(self) -> WorkerState:
        return self._state

    async def start(self) -> None:
        if self._state is not WorkerState.IDLE:
            raise RuntimeError(f"{self.name} worker is {self._state.value}")
        self._state = WorkerState.RUNNING
        self._loop = asyncio.get_running_loop()
        self._unwatch = await self._watch()
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-worker")

    def notify(self) -> None:
        """Rows were written: look for due ones now. Safe from any thread; a no-op until start."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._wake.set)

    async def idle(self) -> None:
        """Return once the started worker has nothing due and sleeps (tests, drains)."""
        await self._sleeping.wait()

    async def run_once(self) -> int:
        """Attempt every row due now (by the injected clock); how many were attempted."""
        attempted = 0
        while self._state in (WorkerState.IDLE, WorkerState.RUNNING):
            now = self._clock.now()
            claims = await self._claim_due(now, now + self._lease, self._batch_size)
            if not claims:
                break
            for claim in claims:
                self._inflight[self._claim_key(claim)] = claim
            async with asyncio.TaskGroup() as group:
                for claim in claims:
                    group.create_task(
                        self._attempt_owned(claim), name=f"{self.name}-{self._claim_key(claim)}"
                    )
            attempted += len(claims)
        return attempted

    def stop_claiming(self) -> None:
        """The first step of `stop()` alone: claim nothing more; attempts in flight go on."""
        if self._state is WorkerState.RUNNING:
            self._state = WorkerState.STOPPING
            self._wake.set()

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming; let in-flight attempts finish for `grace` seconds (default: the
        worker's own), then cancel them (`cancel_grace` seconds more to clean up) and give
        their claims back through `_interrupted`."""
        if self._state is WorkerState.STOPPED:
            return
        self._state = WorkerState.STOPPING
        self._wake.set()
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        task, self._task = self._task, None
        if task is not None:
            done, _ = await asyncio.wait(
                {task}, timeout=self._stop_grace if grace is None else grace
            )
            if not done:
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=self._cancel_grace)
            if not done:
                # A cancelled attempt still hangs up in its `finally`; a dead peer gets no longer.
                task.cancel()
                await asyncio.wait({task})
            if not task.cancelled() and task.exception() is not None:
                self._log.error(
                    "%s worker ended with an error", self.name, exc_info=task.exception()
                )
        if self._inflight:
            try:
                await self._interrupted(list(self._inflight.values()))
            except Exception:
                self._log.exception("%s worker: could not release its claims", self.name)
            self._inflight.clear()
        await self._close()
        self._state = WorkerState.STOPPED

    async def _attempt_owned(self, claim: C) -> None:
        key = self._claim_key(claim)
        try:
            await self._attempt(claim)
        except Exception:
            # Not recorded: the row comes back when its lease runs out. The other attempts of
            # the batch go on.
            self._log.exception("%s %s: attempt failed unrecorded", self.name, key)
        # A cancelled attempt stays in flight, so stop() gives its claim back.
        self._inflight.pop(key, None)

    async def _run(self) -> None:
        while self._state is WorkerState.RUNNING:
            self._wake.clear()
            try:
                attempted = await self.run_once()
                delay = await self._delay_until_due()
            except Exception:
                self._log.exception(
                    "%s round failed; retrying in %.0f s", self.name, self._idle_seconds
                )
                attempted, delay = 0, self._idle_seconds
            if attempted == 0 and delay <= 0:
                # Due by the database but nothing claimable (rows mid-claim elsewhere): don't spin.
                delay = min(1.0, self._idle_seconds)
            if self._state is not WorkerState.RUNNING:
                break
            self._sleeping.set()
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._sleeping.clear()

    async def _delay_until_due(self) -> float:
        due = await self._next_wakeup()
        if due is None:
            return self._idle_seconds
        seconds = (due - self._clock.now()).total_seconds()
        return max(0.0, min(seconds, self._idle_seconds))
