"""SQL repository for transcripts: the job outbox (`transcription_jobs`, claimed as the email
outbox is, `db.repos._leases`), the transcripts on messages and media, and full-text search.

Search takes terms already split into words (`services.transcripts.search_terms`), all of which
must occur. SQLite: an FTS5 `MATCH` of the quoted terms, ranked by `bm25`; PostgreSQL:
`plainto_tsquery('simple', ...)` against the GIN-indexed `to_tsvector('simple', ...)` of the
transcript text, ranked by `ts_rank`. Both index words as written (no stemming), whatever the
message's language. Results are ranked, so pages are cut by position: the cursor holds the
offset of the next page.
"""

from __future__ import annotations

import base64
import binascii
import builtins
from datetime import datetime
from typing import Any

from sqlalchemy import Float, String, func, literal_column, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from afterbeep.db import tables as t
from afterbeep.db.repos import _leases as leases
from afterbeep.db.repos.mailboxes import _message
from afterbeep.db.repos.media import _media
from afterbeep.domain.errors import InvalidInput
from afterbeep.domain.media import Media
from afterbeep.domain.messages import Message
from afterbeep.domain.transcripts import Transcript, TranscriptionStatus
from afterbeep.services.ports import Page
from afterbeep.services.ports.transcripts import (
    ClaimedJob,
    JobOutcome,
    JobStatus,
    MessageFilter,
    SubjectKind,
    TranscriptionJob,
)

_J = t.transcription_jobs
_M = t.messages
_D = t.media
MAX_OFFSET = 10_000
_CURSOR_PREFIX = "rank:"


def _job(row: Any) -> TranscriptionJob:
    return TranscriptionJob(
        id=row.id,
        account_id=row.account_id,
        subject_kind=SubjectKind(row.subject_kind),
        subject_id=row.subject_id,
        language=row.language,
        status=JobStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def encode_offset(offset: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{offset}".encode()).decode().rstrip("=")


def decode_offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        value = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("cursor", "is not a cursor of this search") from exc
    number = value.removeprefix(_CURSOR_PREFIX)
    if not value.startswith(_CURSOR_PREFIX) or not number.isdigit() or int(number) > MAX_OFFSET:
        raise InvalidInput("cursor", "is not a cursor of this search")
    return int(number)


def _fts5_query(terms: tuple[str, ...]) -> str:
    # Each term quoted: a phrase of one word, so nothing in it is FTS5 syntax.
    return " ".join('"' + term.replace('"', '""') + '"' for term in terms)


class SqlTranscriptRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    @property
    def _postgres(self) -> bool:
        return bool(self._conn.dialect.name == "postgresql")

    # -- the job outbox ----------------------------------------------------------------------

    async def enqueue(self, job: TranscriptionJob) -> bool:
        values = {
            "id": job.id,
            "account_id": job.account_id,
            "subject_kind": job.subject_kind.value,
            "subject_id": job.subject_id,
            "language": job.language,
            "status": job.status.value,
            "attempts": job.attempts,
            "next_attempt_at": job.next_attempt_at,
            "claimed_until": None,
            "last_error": job.last_error,
            "created_at": job.created_at,
            "updated_at": job.updated_at,
        }
        statement: Any = (postgresql.insert(_J) if self._postgres else sqlite.insert(_J)).values(
            values
        )
        statement = statement.on_conflict_do_nothing(
            index_elements=[_J.c.subject_kind, _J.c.subject_id]
        )
        return bool((await self._conn.execute(statement)).rowcount)

    async def requeue(
        self, kind: SubjectKind, subject_id: str, language: str, now: datetime
    ) -> bool:
        result = await self._conn.execute(
            update(_J)
            .where(
                _J.c.subject_kind == kind.value,
                _J.c.subject_id == subject_id,
                _J.c.status != JobStatus.PENDING.value,
            )
            .values(
                status=JobStatus.PENDING.value,
                language=language,
                attempts=0,
                next_attempt_at=now,
                claimed_until=None,
                last_error=None,
                updated_at=now,
            )
        )
        return bool(result.rowcount)

    async def message_status(
        self, account_id: str, message_id: str, *, lock: bool
    ) -> TranscriptionStatus | None:
        query = select(_M.c.transcription_status).where(
            _M.c.id == message_id, _M.c.account_id == account_id
        )
        if lock and self._postgres:
            query = query.with_for_update()
        value = (await self._conn.execute(query)).scalar_one_or_none()
        return TranscriptionStatus(value) if value is not None else None

    async def pending_count(self) -> int:
        query = select(func.count()).where(_J.c.status == JobStatus.PENDING.value)
        return int((await self._conn.execute(query)).scalar_one())

    async def claim_due(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> builtins.list[ClaimedJob]:
        ids = await leases.claim_due_ids(self._conn, _J, now, lease_until, limit)
        if not ids:
            return []
        rows = (
            await self._conn.execute(
                select(_J).where(_J.c.id.in_(ids)).order_by(_J.c.next_attempt_at, _J.c.id)
            )
        ).all()
        return [ClaimedJob(_job(row), lease_until) for row in rows]

    async def extend(self, claim: ClaimedJob, lease_until: datetime) -> bool:
        result = await self._conn.execute(
            update(_J)
            .where(
                _J.c.id == claim.job.id,
                _J.c.status == JobStatus.PENDING.value,
                _J.c.claimed_until == claim.lease_until,
            )
            .values(claimed_until=lease_until)
        )
        return bool(result.rowcount)

    async def record_attempt(self, claim: ClaimedJob, outcome: JobOutcome, now: datetime) -> bool:
        return await leases.record_attempt(
            self._conn,
            _J,
            claim.job.id,
            claim.lease_until,
            {
                "status": outcome.status.value,
                "attempts": outcome.attempts,
                "next_attempt_at": outcome.next_attempt_at,
                "last_error": outcome.last_error,
                "updated_at": now,
            },
        )

    async def release(self, claims: builtins.list[ClaimedJob]) -> None:
        await leases.release(self._conn, _J, ((c.job.id, c.lease_until) for c in claims))

    async def release_all(self) -> int:
        result = await self._conn.execute(
            update(_J)
            .where(_J.c.status == JobStatus.PENDING.value, _J.c.claimed_until.is_not(None))
            .values(claimed_until=None)
        )
        return int(result.rowcount)

    async def next_wakeup(self) -> datetime | None:
        return await leases.next_claimable_at(self._conn, _J)

    # -- transcripts -------------------------------------------------------------------------

    async def set_message(
        self,
        account_id: str,
        message_id: str,
        status: TranscriptionStatus,
        transcript: Transcript | None,
        reason: str | None,
        now: datetime,
    ) -> Message | None:
        where = (_M.c.id == message_id) & (_M.c.account_id == account_id)
        result = await self._conn.execute(
            update(_M)
            .where(where)
            .values(
                transcript=transcript.as_dict() if transcript is not None else None,
                transcription_status=status.value,
                transcription_reason=reason,
                updated_at=now,
            )
        )
        if not result.rowcount:
            return None
        row = (await self._conn.execute(select(_M).where(where))).first()
        return _message(row) if row else None

    async def set_media(
        self,
        account_id: str,
        media_id: str,
        status: TranscriptionStatus,
        transcript: Transcript | None,
        reason: str | None,
    ) -> Media | None:
        where = (_D.c.id == media_id) & (_D.c.account_id == account_id)
        result = await self._conn.execute(
            update(_D)
            .where(where)
            .values(
                transcript=transcript.as_dict() if transcript is not None else None,
                transcription_status=status.value,
                transcription_reason=reason,
            )
        )
        if not result.rowcount:
            return None
        row = (await self._conn.execute(select(_D).where(where))).first()
        return _media(row) if row else None

    # -- search ------------------------------------------------------------------------------

    async def search_messages(
        self,
        account_id: str,
        terms: tuple[str, ...],
        where: MessageFilter,
        cursor: str | None,
        limit: int,
    ) -> Page[Message]:
        offset = decode_offset(cursor)
        # a message deleted in the inbox (restorable for a moment) is not found
        filters: list[ColumnElement[bool]] = [
            _M.c.account_id == account_id,
            _M.c.deleted_at.is_(None),
        ]
        if where.mailbox_id is not None:
            filters.append(_M.c.mailbox_id == where.mailbox_id)
        if where.folder is not None:
            filters.append(_M.c.folder == where.folder.value)
        if where.created_after is not None:
            filters.append(_M.c.created_at >= where.created_after)
        if where.created_before is not None:
            filters.append(_M.c.created_at < where.created_before)
        rows = await self._ranked(_M, "messages", account_id, terms, filters, offset, limit)
        return self._page([_message(row) for row in rows], offset, limit)

    async def search_media(
        self, account_id: str, terms: tuple[str, ...], cursor: str | None, limit: int
    ) -> Page[Media]:
        offset = decode_offset(cursor)
        filters = [_D.c.account_id == account_id]
        rows = await self._ranked(_D, "media", account_id, terms, filters, offset, limit)
        return self._page([_media(row) for row in rows], offset, limit)

    async def _ranked(
        self,
        table: Any,
        name: str,
        account_id: str,
        terms: tuple[str, ...],
        filters: list[ColumnElement[bool]],
        offset: int,
        limit: int,
    ) -> list[Any]:
        if self._postgres:
            # The very expression of the migration's GIN index, so that the index serves it.
            vector: ColumnElement[Any] = literal_column(
                f"to_tsvector('simple', coalesce({name}.transcript ->> 'text', ''))"
            )
            query_ts = func.plainto_tsquery(literal_column("'simple'"), " ".join(terms))
            rank = func.ts_rank(vector, query_ts)
            statement = (
                select(table)
                .where(vector.op("@@")(query_ts), *filters)
                .order_by(rank.desc(), table.c.id.desc())
            )
        else:
            hits = (
                text(
                    "SELECT x.owner_id AS owner_id, bm25(transcripts_fts) AS rank "
                    "FROM transcripts_fts JOIN transcript_texts AS x "
                    "ON x.id = transcripts_fts.rowid "
                    "WHERE transcripts_fts MATCH :match AND x.account_id = :account_id"
                )
                .bindparams(match=_fts5_query(terms), account_id=account_id)
                .columns(owner_id=String, rank=Float)
                .subquery("hits")
            )
            # bm25: the lower, the better the match.
            statement = (
                select(table)
                .join(hits, hits.c.owner_id == table.c.id)
                .where(*filters)
                .order_by(hits.c.rank, table.c.id.desc())
            )
        statement = statement.offset(offset).limit(limit + 1)
        return list((await self._conn.execute(statement)).all())

    @staticmethod
    def _page(items: list[Any], offset: int, limit: int) -> Page[Any]:
        more = len(items) > limit
        next_offset = offset + limit
        cursor = encode_offset(next_offset) if more and next_offset <= MAX_OFFSET else None
        return Page(items[:limit], cursor)
