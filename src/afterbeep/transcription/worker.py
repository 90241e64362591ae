"""TranscriptionWorker: the worker of the transcription job outbox (`transcription_jobs`).

An `afterbeep.notify.outbox.OutboxWorker`: it claims due jobs under a lease, at most
`concurrency` at a time (1 by default; the rest wait in the table, which is the queue, bounded
by `TranscriptionPolicy.queue_max`), reads the audio (a message's WAV, a media's telephony
rendition), and runs the engine's blocking `transcribe` on a thread of its own pool whose
threads run at idle CPU priority, so the event loop stays responsive and a call never waits for
the CPU behind a transcription. While the engine works the lease is moved on every third of its
length, so a long message keeps its claim and a crashed worker's job comes back within one
lease. Under `serve` it runs in the post-call process (`afterbeep.postcall`), which is at idle
priority as a whole.

What an outcome does is `afterbeep.services.transcripts`' rules; this module records it: the job
row, the message's or media's transcript and status, `message.transcribed`, and the
notification email that waited for the transcript made due at once (`on_message_final` then
wakes the email dispatcher). With no engine (AFTERBEEP_TRANSCRIBE=off), jobs still queued are
closed and their messages marked `skipped` ("transcription is off").

Logs name jobs, subjects, languages and times; never a transcript.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from afterbeep.audio.rendition import read_wav_pcm
from afterbeep.domain import messages as message_rules
from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import InvalidAudio
from afterbeep.domain.transcripts import Transcript, TranscriptionStatus
from afterbeep.notify.outbox import OutboxWorker
from afterbeep.postcall import lower_priority
from afterbeep.services import transcripts as rules
from afterbeep.services.media import Renditions
from afterbeep.services.notifications import new_message_key
from afterbeep.services.ports import UnitOfWork, UnitOfWorkFactory
from afterbeep.services.ports.storage import ObjectNotFound, ObjectStore, StorageUnavailable
from afterbeep.services.ports.transcription import TranscriptionEngine, TranscriptionUnavailable
from afterbeep.services.ports.transcripts import ClaimedJob, JobOutcome, JobStatus, SubjectKind

log = logging.getLogger("afterbeep.transcription")

Audio = npt.NDArray[np.int16]
DEFAULT_LEASE_SECONDS = 60.0


class _Gone:
    """The message or media was deleted before its transcription."""


GONE = _Gone()


class TranscriptionWorker(OutboxWorker[ClaimedJob]):
    name = "transcription"

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        store: ObjectStore,
        clock: Clock,
        engine: TranscriptionEngine | None,
        *,
        concurrency: int = 1,
        max_attempts: int = rules.DEFAULT_MAX_ATTEMPTS,
        retry_base_seconds: float = rules.RETRY_BASE_SECONDS,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        idle_seconds: float = 30.0,
        reclaim_on_start: bool = False,
        on_message_final: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(
            clock,
            lease=timedelta(seconds=lease_seconds),
            batch_size=max(1, concurrency),
            idle_seconds=idle_seconds,
            # A transcription cannot be cut short in its thread: stop() hands the job back.
            stop_grace=2.0,
            log=log,
        )
        self._uow = uow
        self._store = store
        self._renditions = Renditions(store)
        self._engine = engine
        self._max_attempts = max(1, max_attempts)
        self._retry_base = retry_base_seconds
        self._lease_seconds = lease_seconds
        self._reclaim = reclaim_on_start
        self._on_message_final = on_message_final
        self._threads = ThreadPoolExecutor(
            max(1, concurrency), thread_name_prefix="transcribe", initializer=lower_priority
        )
        self.finished = 0  # jobs ended (done, failed, skipped or cancelled) by this worker

    async def start(self) -> None:
        if self._reclaim:
            # One node (SQLite): no other worker can hold a lease, so a crashed process's
            # claims are handed back now rather than when they run out.
            async with self._uow() as uow:
                taken = await uow.transcripts.release_all()
            if taken:
                log.info("transcription: %d job(s) of a previous process handed back", taken)
        await super().start()

    # -- OutboxWorker ------------------------------------------------------------------------

    async def _claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[ClaimedJob]:
        async with self._uow() as uow:
            return await uow.transcripts.claim_due(now, lease_until, limit)

    async def _release(self, claims: list[ClaimedJob]) -> None:
        async with self._uow() as uow:
            await uow.transcripts.release(claims)

    async def _next_wakeup(self) -> datetime | None:
        async with self._uow() as uow:
            return await uow.transcripts.next_wakeup()

    def _claim_key(self, claim: ClaimedJob) -> str:
        return claim.job.id

    async def _close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _attempt(self, claim: ClaimedJob) -> None:
        job = claim.job
        extra = {
            "job_id": job.id,
            "subject": job.subject_kind.value,
            "subject_id": job.subject_id,
            "language": job.language,
            "attempt": job.attempts + 1,
        }
        transcript: Transcript | None = None
        skipped = False
        outcome: JobOutcome
        try:
            audio = await self._audio(claim)
        except StorageUnavailable as exc:
            outcome = self._after(job.attempts, f"storage unavailable: {exc}", permanent=False)
        except ObjectNotFound:
            outcome = self._after(job.attempts, "the audio is missing", permanent=True)
        except InvalidAudio as exc:
            outcome = self._after(job.attempts, f"the audio does not decode: {exc}", permanent=True)
        else:
            now = self._clock.now()
            if isinstance(audio, _Gone):
                outcome = rules.cancelled(job.attempts, f"the {job.subject_kind.value} was deleted", now)
            elif self._engine is None:
                outcome = rules.cancelled(job.attempts, rules.OFF_REASON, now)
                skipped = True
            else:
                started = time.monotonic()
                try:
                    transcript = await self._transcribe(claim, audio, job.language)
                except TranscriptionUnavailable as exc:
                    outcome = self._after(job.attempts, str(exc) or "no model", permanent=True)
                except Exception as exc:
                    log.warning("transcription attempt failed", exc_info=True, extra=extra)
                    reason = f"the engine failed: {type(exc).__name__}: {exc}"
                    outcome = self._after(job.attempts, reason, permanent=False)
                else:
                    outcome = self._after(job.attempts, None, permanent=False)
                extra["transcribe_ms"] = int((time.monotonic() - started) * 1000)
                extra["audio_ms"] = len(audio) // 8
        kept, final_message = await self._record(claim, outcome, transcript, skipped)
        extra["status"] = outcome.status.value
        if not kept:
            log.warning("transcription job lost its lease; attempt not recorded", extra=extra)
            return
        if outcome.status is JobStatus.PENDING:
            log.warning("transcription will be retried: %s", outcome.last_error, extra=extra)
        elif outcome.status is JobStatus.FAILED:
            log.error("transcription failed: %s", outcome.last_error, extra=extra)
        else:
            log.info("transcription %s", outcome.status.value, extra=extra)
        if outcome.status is not JobStatus.PENDING:
            self.finished += 1
        if final_message and self._on_message_final is not None:
            self._on_message_final()

    # -- steps -------------------------------------------------------------------------------

    async def _audio(self, claim: ClaimedJob) -> Audio | _Gone:
        job = claim.job
        async with self._uow() as uow:
            if job.subject_kind is SubjectKind.MESSAGE:
                message = await uow.messages.get(job.account_id, job.subject_id)
                key = message.audio_key if message is not None else None
                media = None
            else:
                media = await uow.media.get(job.account_id, job.subject_id)
                key = None
        if media is not None:
            wav = await self._renditions.telephony(
                media.original_key, media.telephony_key, media.duration_ms
            )
        elif key is not None:
            wav = await self._store.get_bytes(key)
        else:
            return GONE
        pcm, rate = await asyncio.to_thread(read_wav_pcm, wav)
        if rate != 8000:
            raise InvalidAudio(f"{rate} Hz where 8000 Hz was stored")
        return pcm

    async def _transcribe(self, claim: ClaimedJob, audio: Audio, language: str) -> Transcript:
        """The engine's result, computed on the worker's thread; the lease moves on meanwhile."""
        engine = self._engine
        assert engine is not None
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._threads, engine.transcribe, audio, language)
        beat = self._lease_seconds / 3
        while True:
            done, _ = await asyncio.wait({future}, timeout=beat)
            if done:
                return future.result()
            await self._extend(claim)

    async def _extend(self, claim: ClaimedJob) -> None:
        lease_until = self._clock.now() + timedelta(seconds=self._lease_seconds)
        try:
            async with self._uow() as uow:
                moved = await uow.transcripts.extend(claim, lease_until)
        except Exception:
            log.warning("transcription lease not moved on", exc_info=True)
            return
        if moved:
            claim.lease_until = lease_until

    async def _record(
        self,
        claim: ClaimedJob,
        outcome: JobOutcome,
        transcript: Transcript | None,
        skipped: bool,
    ) -> tuple[bool, bool]:
        """Write the attempt, and a final outcome on its subject; (kept, a message's final)."""
        job = claim.job
        now = self._clock.now()
        final_message = False
        async with self._uow() as uow:
            if not await uow.transcripts.record_attempt(claim, outcome, now):
                return False, False
            status = _subject_status(outcome, skipped)
            if status is None:
                return True, False
            reason = rules.OFF_REASON if skipped else outcome.last_error
            if status is TranscriptionStatus.DONE:
                reason = None
            if job.subject_kind is SubjectKind.MEDIA:
                await uow.transcripts.set_media(job.account_id, job.subject_id, status, transcript, reason)
            else:
                final_message = await self._finish_message(uow, claim, status, transcript, reason, now)
        return True, final_message

    async def _finish_message(
        self,
        uow: UnitOfWork,
        claim: ClaimedJob,
        status: TranscriptionStatus,
        transcript: Transcript | None,
        reason: str | None,
        now: datetime,
    ) -> bool:
        job = claim.job
        message = await uow.transcripts.set_message(
            job.account_id, job.subject_id, status, transcript, reason, now
        )
        if message is None:
            return False
        if status is not TranscriptionStatus.SKIPPED:
            await uow.events.publish(
                job.account_id, message_rules.TRANSCRIBED, message_rules.to_json(message)
            )
        await uow.notifications.hasten(new_message_key(message.id), now)
        await uow.cc_deliveries.hasten(job.account_id, message.id, now)  # a team's voicemail
        return True

    def _after(self, attempts: int, error: str | None, *, permanent: bool) -> JobOutcome:
        return rules.after_attempt(
            attempts,
            error,
            permanent=permanent,
            now=self._clock.now(),
            max_attempts=self._max_attempts,
            retry_base_seconds=self._retry_base,
        )


def _subject_status(outcome: JobOutcome, skipped: bool) -> TranscriptionStatus | None:
    """What a job's outcome makes of its message or media; None: nothing yet (a retry), or
    nothing left (deleted)."""
    if skipped:
        return TranscriptionStatus.SKIPPED
    if outcome.status is JobStatus.DONE:
        return TranscriptionStatus.DONE
    if outcome.status is JobStatus.FAILED:
        return TranscriptionStatus.FAILED
    return None
