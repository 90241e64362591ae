"""Transcripts: queueing a message or a media for transcription, what an attempt's outcome does,
and searching transcripts.

A new message is queued in the transaction that stores it (`TranscriptionQueue.admit`, called by
`MessageService.store_message`): its status is `pending` and a `transcription_jobs` row waits for
the worker (`afterbeep.transcription.worker`), so a crash loses no job. With transcription off
the message is `skipped` ("transcription is off"); when `queue_max` jobs already wait it is
`skipped` too, rather than the queue growing without bound under a flood of messages.

An attempt ends in one of: `done` (the transcript is written); retried later with a backoff
(storage unreachable, an engine error); `failed` with the reason, after `max_attempts` tries or at
once when the engine says it cannot transcribe at all (`TranscriptionUnavailable`: model files
missing or corrupt, a language without a model). A final outcome of a message publishes
`message.transcribed` and makes its waiting notification email due at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import InvalidInput, NotFound
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.media import Media
from afterbeep.domain.messages import Message
from afterbeep.domain.transcripts import TranscriptionStatus
from afterbeep.domain.webhooks import backoff
from afterbeep.services.mailboxes import find_mailbox
from afterbeep.services.ports import Page, UnitOfWork, UnitOfWorkFactory
from afterbeep.services.ports.transcripts import (
    JobOutcome,
    JobStatus,
    MessageFilter,
    SubjectKind,
    TranscriptionJob,
)

ID_PREFIX = "trj"
OFF_REASON = "transcription is off"
QUEUE_FULL_REASON = "too many messages were waiting for transcription"
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_QUEUE_MAX = 1000
# 30 s, 1 min, 2 min ... capped at an hour.
RETRY_BASE_SECONDS = 30.0
RETRY_CAP_SECONDS = 3600.0
ERROR_MAX = 500
QUERY_MAX = 200
TERMS_MAX = 16
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class TranscriptionPolicy:
    """AFTERBEEP_TRANSCRIBE and the queue's bound."""

    enabled: bool = True
    queue_max: int = DEFAULT_QUEUE_MAX


def search_terms(q: str) -> tuple[str, ...]:
    """The words of a search (letters and digits; everything else separates them), lower case.
    Every word must occur in a transcript for it to match."""
    if len(q) > QUERY_MAX:
        raise InvalidInput("q", f"must be at most {QUERY_MAX} characters")
    terms = tuple(dict.fromkeys(word.lower() for word in _WORD.findall(q)))
    if not terms:
        raise InvalidInput("q", "must contain a word")
    if len(terms) > TERMS_MAX:
        raise InvalidInput("q", f"must contain at most {TERMS_MAX} words")
    return terms


def new_job(
    account_id: str, kind: SubjectKind, subject_id: str, language: str, now: datetime
) -> TranscriptionJob:
    return TranscriptionJob(
        id=new_id(ID_PREFIX),
        account_id=account_id,
        subject_kind=kind,
        subject_id=subject_id,
        language=language,
        status=JobStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        last_error=None,
        created_at=now,
        updated_at=now,
    )


def after_attempt(
    attempts_before: int,
    error: str | None,
    *,
    permanent: bool,
    now: datetime,
    max_attempts: int,
    retry_base_seconds: float = RETRY_BASE_SECONDS,
) -> JobOutcome:
    """The job's next state after one try: done; failed (for good, or the last try); or pending
    again after the backoff."""
    attempts = attempts_before + 1
    if error is None:
        return JobOutcome(JobStatus.DONE, attempts, now, None)
    error = error[:ERROR_MAX]
    if permanent or attempts >= max_attempts:
        return JobOutcome(JobStatus.FAILED, attempts, now, error)
    delay = backoff(attempts, retry_base_seconds, RETRY_CAP_SECONDS)
    return JobOutcome(JobStatus.PENDING, attempts, now + delay, error)


def cancelled(attempts_before: int, reason: str, now: datetime) -> JobOutcome:
    return JobOutcome(JobStatus.CANCELLED, attempts_before, now, reason)


class TranscriptionQueue:
    """Admits new messages (and media on request) to the job outbox, inside the caller's unit of
    work; `on_queued` is called after the commit (it wakes the worker)."""

    def __init__(
        self,
        policy: TranscriptionPolicy,
        clock: Clock,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._on_queued = on_queued

    async def status_for_new(self, uow: UnitOfWork) -> tuple[TranscriptionStatus, str | None]:
        """What a message about to be stored starts as: `pending`, or `skipped` with why."""
        if not self.policy.enabled:
            return TranscriptionStatus.SKIPPED, OFF_REASON
        if await uow.transcripts.pending_count() >= self.policy.queue_max:
            return TranscriptionStatus.SKIPPED, QUEUE_FULL_REASON
        return TranscriptionStatus.PENDING, None

    async def enqueue(
        self, uow: UnitOfWork, account_id: str, kind: SubjectKind, subject_id: str, language: str
    ) -> bool:
        """Insert the subject's job, or start its finished one over (media asked for again)."""
        now = self._clock.now()
        job = new_job(account_id, kind, subject_id, language, now)
        if await uow.transcripts.enqueue(job):
            return True
        return await uow.transcripts.requeue(kind, subject_id, language, now)

    def queued(self) -> None:
        if self._on_queued is not None:
            self._on_queued()


class TranscriptService:
    """The API's side: searching transcripts, and transcribing media on request."""

    def __init__(self, uow: UnitOfWorkFactory, queue: TranscriptionQueue) -> None:
        self._uow = uow
        self._queue = queue

    async def search_messages(
        self,
        account_id: str,
        q: str,
        where: MessageFilter,
        *,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[Message]:
        """The account's messages whose transcript holds every word of `q`, best first."""
        terms = search_terms(q)
        async with self._uow() as uow:
            if (
                where.mailbox_id is not None
                and await find_mailbox(uow, account_id, where.mailbox_id) is None
            ):
                raise NotFound("mailbox", where.mailbox_id)
            return await uow.transcripts.search_messages(account_id, terms, where, cursor, limit)

    async def search_media(
        self, account_id: str, q: str, *, cursor: str | None = None, limit: int = 50
    ) -> Page[Media]:
        terms = search_terms(q)
        async with self._uow() as uow:
            return await uow.transcripts.search_media(account_id, terms, cursor, limit)

    async def request_media(self, account_id: str, media_id: str) -> Media:
        """Queue the media for transcription (in the account's language), unless it already has
        a transcript or a job; the media as it is now."""
        if not is_id(media_id, "media"):
            raise NotFound("media", media_id)
        queued = False
        async with self._uow() as uow:
            media = await uow.media.get(account_id, media_id)
            if media is None:
                raise NotFound("media", media_id)
            if media.transcription_status in (
                TranscriptionStatus.PENDING,
                TranscriptionStatus.DONE,
            ):
                return media
            status, reason = await self._queue.status_for_new(uow)
            if status is TranscriptionStatus.PENDING:
                account = await uow.accounts.get(account_id)
                language = account.language if account is not None else "en"
                queued = await self._queue.enqueue(
                    uow, account_id, SubjectKind.MEDIA, media_id, language
                )
            updated = await uow.transcripts.set_media(account_id, media_id, status, None, reason)
            assert updated is not None
        if queued:
            self._queue.queued()
        return updated
