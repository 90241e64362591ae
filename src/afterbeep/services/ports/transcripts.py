"""The transcription job outbox (`transcription_jobs`), the transcripts of messages and media,
and searching them."""

from __future__ import annotations

import builtins
import enum
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from afterbeep.domain.media import Media
from afterbeep.domain.messages import Folder, Message
from afterbeep.domain.transcripts import Transcript, TranscriptionStatus

if TYPE_CHECKING:
    from afterbeep.services.ports import Page


class SubjectKind(enum.StrEnum):
    MESSAGE = "message"
    MEDIA = "media"


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    # Nothing left to transcribe: the message or media was deleted first.
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class TranscriptionJob:
    id: str
    account_id: str
    subject_kind: SubjectKind
    subject_id: str
    language: str
    status: JobStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(slots=True)
class ClaimedJob:
    """A due job leased to one worker until `lease_until` (moved on while the work goes on)."""

    job: TranscriptionJob
    lease_until: datetime


@dataclass(frozen=True, slots=True)
class JobOutcome:
    status: JobStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None


@dataclass(frozen=True, slots=True)
class MessageFilter:
    mailbox_id: str | None = None
    folder: Folder | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


class TranscriptRepo(Protocol):
    # The job outbox.
    async def enqueue(self, job: TranscriptionJob) -> bool:
        """Insert unless the subject already has a job; True if inserted."""
        ...

    async def requeue(
        self, kind: SubjectKind, subject_id: str, language: str, now: datetime
    ) -> bool:
        """Start the subject's finished job over (due now, no attempt made); False when it has
        none or it is still pending."""
        ...

    async def pending_count(self) -> int: ...

    async def message_status(
        self, account_id: str, message_id: str, *, lock: bool
    ) -> TranscriptionStatus | None:
        """The message's transcription status (None: no such message); `lock` holds the row
        until the transaction ends (PostgreSQL), so that a transcript written meanwhile waits."""
        ...

    async def claim_due(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> builtins.list[ClaimedJob]: ...

    async def extend(self, claim: ClaimedJob, lease_until: datetime) -> bool:
        """Move the lease on while it still holds; False when it was lost."""
        ...

    async def record_attempt(self, claim: ClaimedJob, outcome: JobOutcome, now: datetime) -> bool:
        """Store an attempt and drop the lease; False when the lease was lost meanwhile."""
        ...

    async def release(self, claims: builtins.list[ClaimedJob]) -> None: ...

    async def release_all(self) -> int:
        """Drop every lease (a single-node start-up: no other worker can hold one)."""
        ...

    async def next_wakeup(self) -> datetime | None: ...

    # The subjects.
    async def set_message(
        self,
        account_id: str,
        message_id: str,
        status: TranscriptionStatus,
        transcript: Transcript | None,
        reason: str | None,
        now: datetime,
    ) -> Message | None:
        """Write the message's transcription; the message as it is now, None when it is gone."""
        ...

    async def set_media(
        self,
        account_id: str,
        media_id: str,
        status: TranscriptionStatus,
        transcript: Transcript | None,
        reason: str | None,
    ) -> Media | None: ...

    async def search_messages(
        self,
        account_id: str,
        terms: tuple[str, ...],
        where: MessageFilter,
        cursor: str | None,
        limit: int,
    ) -> Page[Message]:
        """The account's messages whose transcript holds every term, best match first."""
        ...

    async def search_media(
        self, account_id: str, terms: tuple[str, ...], cursor: str | None, limit: int
    ) -> Page[Media]: ...
