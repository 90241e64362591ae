"""SpoolWorker: turns finished spool entries into stored messages, and removes the spool files
only once that is done.

Live calls hand their closed entry over with `submit`; at start-up `recover` hands over every
entry a previous process left behind (an entry whose recording never ended, `ended_by` None,
becomes a message flagged `recovered`). Each entry gets one owned task: read the PCM, call
`DepositService.finalize` (audio uploaded, row committed, email queued), then delete the spool
files. When storage or the database is unreachable (`StorageUnavailable`, SQLAlchemy
`DBAPIError` other than refusals of the data, pool timeouts, `OSError`), the entry stays on disk and is tried again after a
backoff (1 s, 2 s, 4 s ... at most a minute; `retry_now` cuts the wait short). `finalize` is
idempotent on the call id, so a retry, a second `recover` or a crash between the commit and the
removal never makes a duplicate.

Any other error is a bug or bad data: it is logged and the entry is left in the spool, to be
tried again by the next start's `recover`. `recover` must run before calls are taken: a live
call's entry (still being written) would otherwise be taken for a crashed one.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from afterbeep.domain.clock import Clock
from afterbeep.domain.messages import Message, RecordedCall
from afterbeep.services.ports.storage import StorageUnavailable
from afterbeep.telephony.interface import Audio
from afterbeep.telephony.spool import Spool, SpoolEntry

log = logging.getLogger("afterbeep.spool")


def is_transient(exc: BaseException) -> bool:
    """Whether trying again later can succeed: storage or the database unreachable or busy,
    not a refusal of the data itself."""
    if isinstance(exc, StorageUnavailable | PoolTimeout | OSError):
        return True
    return isinstance(exc, DBAPIError) and not isinstance(
        exc, IntegrityError | ProgrammingError | DataError
    )


class SpoolHandoff(Protocol):
    """Where a live call hands its closed spool entry: a `SpoolWorker` in this process, or the
    post-call worker process (`afterbeep.postcall.PostCallProcess`)."""

    def submit(self, entry: SpoolEntry) -> None: ...


class Finalizer(Protocol):
    async def finalize(self, meta: RecordedCall, pcm: Audio, recovered: bool) -> Message | None: ...


class _State(enum.Enum):
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Backlog:
    """An entry that could not be stored yet."""

    call_id: str
    mailbox_id: str
    attempts: int
    last_error: str
    next_attempt_at: datetime


class SpoolWorker:
    def __init__(
        self,
        spool: Spool,
        deposits: Finalizer,
        clock: Clock,
        *,
        concurrency: int = 8,
        retry_base_seconds: float = 1.0,
        retry_cap_seconds: float = 60.0,
    ) -> None:
        self._spool = spool
        self._deposits = deposits
        self._clock = clock
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._retry_base = retry_base_seconds
        self._retry_cap = retry_cap_seconds
        self._state = _State.RUNNING
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._backlog: dict[str, Backlog] = {}
        self._retry = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, entry: SpoolEntry) -> None:
        """Store the message of a closed entry (a live call just ended)."""
        self._spawn(entry, recovered=entry.meta.ended_by is None)

    async def recover(self, *, closed: bool | None = None) -> int:
        """Hand over every entry in the spool (start-up), or only the closed ones (`closed=True`:
        their call ended) or only those whose call never ended (`closed=False`: a crash); how
        many were not already in hand."""
        entries = await asyncio.to_thread(self._spool.entries)
        taken = 0
        for entry in entries:
            if closed is not None and (entry.meta.ended_by is not None) is not closed:
                continue
            if entry.meta.call_id not in self._tasks:
                self._spawn(entry, recovered=entry.meta.ended_by is None)
                taken += 1
        if taken:
            log.info("spool recovery: %d recording(s) to store", taken)
        return taken

    def retry_now(self) -> None:
        """End every backoff wait now (storage or the database is known to be back)."""
        waiting, self._retry = self._retry, asyncio.Event()
        waiting.set()

    def backlog(self) -> list[Backlog]:
        """Entries waiting for a retry, oldest first."""
        return sorted(self._backlog.values(), key=lambda b: b.next_attempt_at)

    @property
    def in_hand(self) -> int:
        return len(self._tasks)

    async def wait_idle(self) -> None:
        """Return once every entry handed over is stored, discarded or parked."""
        await self._idle.wait()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop retrying; give attempts in progress `grace` seconds, then cancel them. Whatever
        is not stored stays in the spool for the next start."""
        if self._state is not _State.RUNNING:
            return
        self._state = _State.STOPPING
        self.retry_now()
        tasks = set(self._tasks.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
                log.warning(
                    "spool worker stopped with %d recording(s) left in the spool", len(late)
                )
        self._state = _State.STOPPED

    def _spawn(self, entry: SpoolEntry, *, recovered: bool) -> None:
        call_id = entry.meta.call_id
        if self._state is not _State.RUNNING:
            log.info(
                "spool worker stopping: recording left for the next start",
                extra={"call_id": call_id},
            )
            return
        if call_id in self._tasks:
            return
        task = asyncio.create_task(self._handle(entry, recovered), name=f"spool-{call_id}")
        self._tasks[call_id] = task
        self._idle.clear()
        task.add_done_callback(lambda _: self._done(call_id))

    def _done(self, call_id: str) -> None:
        self._tasks.pop(call_id, None)
        self._backlog.pop(call_id, None)
        if not self._tasks:
            self._idle.set()

    async def _handle(self, entry: SpoolEntry, recovered: bool) -> None:
        meta = entry.meta
        extra = {"call_id": meta.call_id, "mailbox_id": meta.mailbox_id, "recovered": recovered}
        attempts = 0
        while self._state is _State.RUNNING:
            try:
                async with self._slots:
                    pcm = await asyncio.to_thread(Spool.read_pcm, entry)
                    message = await self._deposits.finalize(entry.meta, pcm, recovered)
                    await asyncio.to_thread(Spool.remove, entry)
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("recording left in the spool: storing it failed", extra=extra)
                    return
                attempts += 1
                delay = min(self._retry_cap, self._retry_base * 2 ** (attempts - 1))
                error = f"{type(exc).__name__}: {exc}"[:300]
                self._backlog[meta.call_id] = Backlog(
                    meta.call_id,
                    meta.mailbox_id,
                    attempts,
                    error,
                    self._clock.now() + timedelta(seconds=delay),
                )
                log.warning(
                    "recording not stored yet (%s); retrying in %.0f s",
                    error,
                    delay,
                    extra={**extra, "attempts": attempts},
                )
                await self._backoff(delay)
                continue
            if message is None:
                log.info("recording removed from the spool without a message", extra=extra)
            else:
                log.debug("recording stored", extra={**extra, "message_id": message.id})
            return

    async def _backoff(self, delay: float) -> None:
        if self._state is not _State.RUNNING:
            return  # stop() has already ended the waits
        try:
            async with asyncio.timeout(delay):
                await self._retry.wait()
        except TimeoutError:
            pass
