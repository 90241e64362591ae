"""One pacing loop for every media session of a process.

A per-call sender task waking every 20 ms costs a timer and a task switch per call
per frame; at 600 calls that is 30 000 wake-ups a second. Here one task serves all
active jobs: it wakes at the earliest due frame, but at most once per
``granularity`` (10 ms by default), and sends every frame that is due. Each job
keeps its own absolute schedule, so coarse wake-ups add at most ``granularity`` of
jitter and no drift. With no job active the task waits on an event: no timer runs
while nothing is played (aiortp 0.8.0's paced sender wakes every 20 ms, idle or not).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from afterbeep.telephony.media.errors import MediaSessionStateError

__all__ = ["PacedJob", "Pacer"]

log = logging.getLogger(__name__)


class PacedJob(Protocol):
    @property
    def due(self) -> float: ...
    def tick(self, now: float) -> bool: ...
    def fail(self, exc: BaseException) -> None: ...


class Pacer:
    """Owns the shared pacing task: started on the first job, cancelled by :meth:`close`."""

    def __init__(self, granularity: float = 0.01) -> None:
        self.granularity = granularity
        self._jobs: set[PacedJob] = set()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.wakeups = 0
        self.max_lateness = 0.0  # seconds a job was served after its due time, worst seen

    @property
    def active(self) -> int:
        return len(self._jobs)

    def add(self, job: PacedJob) -> None:
        if self._closed:
            raise MediaSessionStateError("the pacer is closed")
        self._jobs.add(job)
        self._wakeup.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="media-pacer")

    def discard(self, job: PacedJob) -> None:
        self._jobs.discard(job)

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        jobs, self._jobs = self._jobs, set()
        for job in jobs:
            job.fail(MediaSessionStateError("media engine closed"))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_wake = loop.time()
        while True:
            if not self._jobs:
                self._wakeup.clear()
                await self._wakeup.wait()
                last_wake = loop.time()
            now = loop.time()
            self.wakeups += 1
            earliest = float("inf")
            for job in list(self._jobs):
                due = job.due
                if due <= now:
                    if now - due > self.max_lateness:
                        self.max_lateness = now - due
                    try:
                        more = job.tick(now)
                    except Exception as exc:  # a broken job must not stop everyone's audio
                        log.exception("paced job failed")
                        job.fail(exc)
                        more = False
                    if not more:
                        self._jobs.discard(job)
                        continue
                    due = job.due
                if due < earliest:
                    earliest = due
            if not self._jobs:
                continue
            last_wake = now
            wake_at = max(earliest, last_wake + self.granularity)
            await asyncio.sleep(max(0.0, wake_at - loop.time()))
