"""One pacing loop for every media session of a process.

A per-call sender task waking every 20 ms costs a timer and a task switch per call
per frame; at 600 calls that is 30 000 wake-ups a second. Here one task serves all
active jobs: it wakes at the earliest due frame, but at most once per
``granularity`` (10 ms by default), and sends every frame that is due. Each job
keeps its own absolute schedule, so coarse wake-ups add at most ``granularity`` of
jitter and no drift. With no job active the task waits on an event: no timer runs
while nothing is played (aiortp 0.8.0's paced sender wakes every 20 ms, idle or not).

Jobs wait in a heap by due time: a wake-up touches only the jobs that are due, and a loop
that woke late catches up in the order the jobs fell due (the job due first sends the frames
it has due first), whatever order the jobs were added in. A job added with a frame already
due is served at once, in :meth:`Pacer.add`, rather than at the next wake-up; one due before
the next wake-up brings that wake-up forward. :meth:`Pacer.serve` is the serving step alone, with the time
passed in, so tests drive it without an event loop. ``on_first_frame(job, now)`` (if set) is
called as each job's first frame is sent (``afterbeep_prompt_late_seconds``).

:class:`NativePacer` is the other way (``MediaConfig.pacer = "native"``, the default when the
C extension ``_pace`` imports): prompts are sent by one native thread on its own clock, not by
the event loop (see ``_pace.c``); the loop only hears, through an eventfd, when a prompt's first
frame left and when it ended. Keep-alive silence goes there too (one frame in ``every``); DTMF,
and everything when the extension is not built, stays on :class:`Pacer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol

from afterbeep.telephony.media.errors import MediaSessionStateError

_pace: ModuleType | None
try:
    _pace = importlib.import_module("afterbeep.telephony.media._pace")
except ImportError:  # not built: the Python pacer does everything
    _pace = None

__all__ = ["NativeEnd", "NativeJob", "NativePacer", "PacedJob", "Pacer"]

log = logging.getLogger(__name__)


class PacedJob(Protocol):
    @property
    def due(self) -> float: ...
    def tick(self, now: float) -> bool: ...
    def fail(self, exc: BaseException) -> None: ...


# (due, id of the job, job, first frame still to send); a job has one entry at a time, so the
# id breaks ties between jobs due at the same time
_Entry = tuple[float, int, PacedJob, bool]


class Pacer:
    """Owns the shared pacing task: started on the first job, cancelled by :meth:`close`."""

    def __init__(
        self,
        granularity: float = 0.01,
        on_first_frame: Callable[[PacedJob, float], None] | None = None,
    ) -> None:
        self.granularity = granularity
        self.on_first_frame = on_first_frame
        self._jobs: set[PacedJob] = set()
        self._heap: list[_Entry] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sleeper: asyncio.Future[None] | None = None  # the task's sleep until _wake_at
        self._timer: asyncio.TimerHandle | None = None
        self._wake_at = float("inf")
        self._last_wake = float("-inf")
        self._closed = False
        self.wakeups = 0
        self.max_lateness = 0.0  # seconds a job was served after its due time, worst seen

    @property
    def active(self) -> int:
        return len(self._jobs)

    def add(self, job: PacedJob) -> None:
        if self._closed:
            raise MediaSessionStateError("the pacer is closed")
        loop = asyncio.get_running_loop()
        self.push(job)
        now = loop.time()
        if job.due <= now:
            self.serve(now)
        self._wakeup.set()
        if self._task is None:
            self._task = loop.create_task(self._run(), name="media-pacer")
        elif self._sleeper is not None and job in self._jobs and job.due < self._wake_at:
            when = max(job.due, self._last_wake + self.granularity)
            if when < self._wake_at and self._timer is not None:
                self._timer.cancel()
                self._wake_at = when
                self._timer = loop.call_at(when, _release, self._sleeper)

    def push(self, job: PacedJob) -> None:
        """Schedule ``job`` without starting the task (`add` does both)."""
        self._jobs.add(job)
        heapq.heappush(self._heap, (job.due, id(job), job, True))

    def discard(self, job: PacedJob) -> None:
        self._jobs.discard(job)  # its heap entry is dropped when it comes up

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        jobs, self._jobs = self._jobs, set()
        self._heap.clear()
        for job in jobs:
            job.fail(MediaSessionStateError("media engine closed"))

    def serve(self, now: float) -> float | None:
        """Send every frame due by ``now``, earliest due first; the next due time (None: idle)."""
        heap = self._heap
        jobs = self._jobs
        observe = self.on_first_frame
        while heap:
            due, _, job, first = heap[0]
            if job not in jobs:
                heapq.heappop(heap)
                continue
            if due > now:
                return due
            late = now - due
            if late > self.max_lateness:
                self.max_lateness = late
            if first and observe is not None:
                observe(job, now)
            try:
                more = job.tick(now)
            except Exception as exc:  # a broken job must not stop everyone's audio
                log.exception("paced job failed")
                job.fail(exc)
                more = False
            if more:
                heapq.heapreplace(heap, (job.due, id(job), job, False))
            else:
                heapq.heappop(heap)
                jobs.discard(job)
        return None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._jobs:
                self._heap.clear()
                self._wakeup.clear()
                await self._wakeup.wait()
            now = loop.time()
            self.wakeups += 1
            earliest = self.serve(now)
            if earliest is None:
                continue
            self._last_wake = now
            self._wake_at = max(earliest, now + self.granularity)
            sleeper = self._sleeper = loop.create_future()
            self._timer = loop.call_at(self._wake_at, _release, sleeper)
            try:
                await sleeper
            finally:
                self._timer.cancel()
                self._sleeper = self._timer = None
                self._wake_at = float("inf")


def _release(sleeper: asyncio.Future[None]) -> None:
    if not sleeper.done():
        sleeper.set_result(None)


@dataclass(frozen=True, slots=True)
class NativeEnd:
    """How a native job ended; ``state`` is the stream's next frame (sequence, timestamp, due,
    marker), None for a job cancelled before its predecessor ended."""

    interrupted: bool
    frames: int
    samples: int
    packets: int
    octets: int
    withheld: int
    slips: int
    send_errors: int
    state: tuple[int, int, float, bool] | None


class NativeJob:
    """One prompt on the native thread: ``first(sent_at, due)`` as its first frame leaves,
    ``done(end)`` once it ended (both on the event loop). ``intended`` is when its first frame
    should leave (for the lateness of a chain's head: its due may have been moved)."""

    __slots__ = ("done", "ended", "first", "id", "intended")

    def __init__(self) -> None:
        self.first: Callable[[float, float], None] = _ignore_first
        self.done: Callable[[NativeEnd], None] = _ignore_done
        self.id = 0
        self.ended = False
        self.intended = 0.0


def _ignore_first(sent: float, due: float) -> None:
    pass


def _ignore_done(end: NativeEnd) -> None:
    pass


class _Dispatcher:
    """The process's one reader of the thread's eventfd: events go to their job, whatever
    engine started it (tests run several engines on one loop)."""

    def __init__(self, pace: ModuleType) -> None:
        self.pace = pace
        self.jobs: dict[int, NativeJob] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is self._loop:
            return
        old = self._loop
        if old is not None and not old.is_closed():
            old.remove_reader(self.pace.fileno())
        self.jobs.clear()  # a closed loop's jobs: their sessions are gone
        loop.add_reader(self.pace.fileno(), self.drain)
        self._loop = loop

    def unwatch(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self.pace.fileno())
        self._loop = None

    def drain(self) -> None:
        jobs = self.jobs
        for event in self.pace.drain():
            job = jobs.get(event[1])
            if job is None:
                continue
            try:
                if event[0] == 0:
                    job.first(event[2], event[3])
                else:
                    del jobs[event[1]]
                    job.ended = True
                    job.done(NativeEnd(*event[3:]))
            except Exception:  # one session's bookkeeping must not stop the others'
                log.exception("native pacer event failed")


_dispatcher: _Dispatcher | None = None


class NativePacer:
    """An engine's handle on the native thread (the thread and its clock are the process's)."""

    def __init__(self, pace: ModuleType | None = None) -> None:
        global _dispatcher
        module = pace if pace is not None else _pace
        if module is None:
            raise MediaSessionStateError("the native pacer is not built")
        if _dispatcher is None or _dispatcher.pace is not module:
            _dispatcher = _Dispatcher(module)
        self._dispatch = _dispatcher
        self._closed = False

    @staticmethod
    def available() -> bool:
        return _pace is not None

    @property
    def active(self) -> int:
        return len(self._dispatch.jobs)

    def start(self, job: NativeJob, after: NativeJob | None = None, **params: object) -> bool:
        """Hand ``job`` to the thread (``params`` as ``_pace.start`` takes them); with ``after``
        it begins where that one ends. False (nothing started) when ``after`` had already
        ended: its end has been processed, start again from the stream's state."""
        if self._closed:
            raise MediaSessionStateError("the pacer is closed")
        dispatch = self._dispatch
        dispatch.watch(asyncio.get_running_loop())
        if after is not None and after.ended:
            return False
        job_id: int = dispatch.pace.start(after=after.id if after is not None else 0, **params)
        if job_id == 0:  # ended meanwhile: its end is waiting behind the eventfd
            dispatch.drain()
            return False
        job.id = job_id
        dispatch.jobs[job_id] = job
        return True

    def cancel(self, *jobs: NativeJob) -> None:
        """End them now (interrupted): once this returns the thread sends none of their frames.
        Their ``done`` runs before this returns."""
        ids = [job.id for job in jobs if job.id and not job.ended]
        if ids:
            self._dispatch.pace.cancel(*ids)
            self._dispatch.drain()

    def retarget(
        self, job: NativeJob, destination: tuple[str, int], payload_type: int, sending: bool
    ) -> None:
        if job.id and not job.ended:
            self._dispatch.pace.retarget(
                job.id, destination[0], destination[1], payload_type, sending
            )

    def progress(self, job: NativeJob) -> tuple[int, int]:
        """Packets and octets ``job`` sent so far (0, 0 once ended: its end says it all)."""
        if not job.id or job.ended:
            return 0, 0
        sent: tuple[int, int] | None = self._dispatch.pace.progress(job.id)
        return sent if sent is not None else (0, 0)

    def drain(self) -> None:
        self._dispatch.drain()

    def close(self) -> None:
        self._closed = True
