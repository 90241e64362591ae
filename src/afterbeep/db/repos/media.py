"""SQL repository for the media library."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, exists, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from afterbeep.db import tables as t
from afterbeep.db.repos._paging import page_query, split_page
from afterbeep.domain.errors import Conflict
from afterbeep.domain.media import Media
from afterbeep.domain.transcripts import TranscriptionStatus, transcript_from_json
from afterbeep.services.ports import Page

_m = t.media.c
# Statements on the send path are built once (parameters given at execute): building one per
# call, with its column coercions and cache key, costs more than running it on SQLite. ON
# CONFLICT keeps a concurrent upload of the same audio from aborting the whole transaction.
_INSERT = {
    "postgresql": postgresql.insert(t.media).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(t.media).on_conflict_do_nothing(),
}


def _media(row: Any) -> Media:
    return Media(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        format=row.format,
        content_type=row.content_type,
        duration_ms=row.duration_ms,
        sample_rate=row.sample_rate,
        channels=row.channels,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        original_key=row.original_key,
        telephony_key=row.telephony_key,
        created_at=row.created_at,
        stored_bytes=int(row.stored_bytes),
        transcript=transcript_from_json(row.transcript),
        transcription_status=(
            TranscriptionStatus(row.transcription_status) if row.transcription_status else None
        ),
        transcription_reason=row.transcription_reason,
    )


class SqlMediaRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, media: Media) -> Media:
        result = await self._conn.execute(
            _INSERT[self._conn.dialect.name],
            {
                "id": media.id,
                "account_id": media.account_id,
                "name": media.name,
                "format": media.format,
                "content_type": media.content_type,
                "duration_ms": media.duration_ms,
                "sample_rate": media.sample_rate,
                "channels": media.channels,
                "size_bytes": media.size_bytes,
                "sha256": media.sha256,
                "original_key": media.original_key,
                "telephony_key": media.telephony_key,
                "created_at": media.created_at,
                "stored_bytes": media.stored_bytes,
            },
        )
        if result.rowcount:
            return media
        stored = await self.find(media.account_id, media.sha256)
        if stored is None:  # the conflict was on the id
            raise Conflict(f"media {media.id!r} exists", "media-exists")
        return stored

    async def find(self, account_id: str, sha256: str) -> Media | None:
        query = select(t.media).where(_m.account_id == account_id, _m.sha256 == sha256)
        row = (await self._conn.execute(query)).first()
        return _media(row) if row else None

    async def stored_bytes(self, account_id: str) -> int:
        query = select(func.coalesce(func.sum(_m.stored_bytes), 0)).where(
            _m.account_id == account_id
        )
        return int((await self._conn.execute(query)).scalar_one())

    async def get(self, account_id: str, media_id: str) -> Media | None:
        query = select(t.media).where(_m.id == media_id, _m.account_id == account_id)
        row = (await self._conn.execute(query)).first()
        return _media(row) if row else None

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[Media]:
        query = page_query(select(t.media).where(_m.account_id == account_id), _m.id, cursor, limit)
        rows = (await self._conn.execute(query)).all()
        items, next_cursor = split_page(rows, limit)
        return Page([_media(row) for row in items], next_cursor)

    async def delete(self, account_id: str, media_id: str) -> bool:
        statement = delete(t.media).where(_m.id == media_id, _m.account_id == account_id)
        try:
            result = await self._conn.execute(statement)
        except IntegrityError as exc:
            raise Conflict("the media is still referred to", "media-in-use") from exc
        return bool(result.rowcount)

    async def is_used_as_greeting(self, account_id: str, media_id: str) -> bool:
        mb = t.mailboxes.c
        query = select(
            exists().where(
                mb.account_id == account_id,
                or_(
                    mb.greeting_media_id == media_id,
                    mb.busy_greeting_media_id == media_id,
                    mb.temp_greeting_media_id == media_id,
                ),
            )
        )
        return bool((await self._conn.execute(query)).scalar())
