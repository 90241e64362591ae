"""SQL repositories for mailboxes and messages."""

from __future__ import annotations

import builtins
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from afterbeep.db import tables as t
from afterbeep.db.repos._paging import page_query, split_page
from afterbeep.domain.mailboxes import Mailbox, Usage
from afterbeep.domain.messages import Folder, Message
from afterbeep.domain.transcripts import TranscriptionStatus, transcript_from_json
from afterbeep.services.ports import Page

_b = t.mailboxes.c
_GET = select(t.mailboxes).where(  # built once: every call and every deposit
    _b.id == bindparam("mailbox_id"), _b.account_id == bindparam("account_id")
)
_m = t.messages.c
_n = t.numbers.c
# Messages deleted from the inbox stay restorable a while (`MessageService.trash`); every
# read but the purge's leaves them out.
_LIVE = _m.deleted_at.is_(None)

# Read at every call to a mailbox (is it full?): built once, as building the statement cost
# more CPU than running it; a statement object also keeps its cache key.
_USAGE = (
    select(
        _m.mailbox_id,
        func.count(),
        func.coalesce(func.sum(_m.size_bytes), 0),
        func.coalesce(func.sum(case((_m.read.is_(False), 1), else_=0)), 0),
    )
    .where(
        _m.account_id == bindparam("account_id"),
        _m.mailbox_id.in_(bindparam("mailbox_ids", expanding=True)),
        _LIVE,
    )
    .group_by(_m.mailbox_id)
)

_SETTINGS = (
    "name",
    "greeting_media_id",
    "skip_instructions",
    "quota_mb",
    "notify_email",
    "pin_secret_ref",
    "language",
    "timezone",
    "max_message_seconds",
    "min_message_seconds",
    "silence_seconds",
    "max_messages",
    "attach_audio",
    "owner_member_id",
    "busy_greeting_media_id",
    "temp_greeting_media_id",
    "name_media_id",
    "skip_pin_from_own_device",
    "queue_id",
    "call_center_id",
    "connector_id",
)


def _mailbox(row: Any) -> Mailbox:
    return Mailbox(
        id=row.id,
        account_id=row.account_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        **{name: getattr(row, name) for name in _SETTINGS},
    )


def _message(row: Any) -> Message:
    return Message(
        id=row.id,
        account_id=row.account_id,
        mailbox_id=row.mailbox_id,
        call_id=row.call_id,
        caller=row.caller,
        caller_name=row.caller_name,
        callee=row.callee,
        duration_ms=row.duration_ms,
        folder=Folder(row.folder),
        read=bool(row.read),
        size_bytes=int(row.size_bytes),
        audio_key=row.audio_key,
        recovered=bool(row.recovered),
        created_at=row.created_at,
        updated_at=row.updated_at,
        transcript=transcript_from_json(row.transcript),
        transcription_status=TranscriptionStatus(row.transcription_status),
        transcription_reason=row.transcription_reason,
    )


class SqlMailboxRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, mailbox: Mailbox) -> None:
        await self._conn.execute(
            insert(t.mailboxes).values(
                id=mailbox.id,
                account_id=mailbox.account_id,
                created_at=mailbox.created_at,
                updated_at=mailbox.updated_at,
                **{name: getattr(mailbox, name) for name in _SETTINGS},
            )
        )

    async def get(self, account_id: str, mailbox_id: str) -> Mailbox | None:
        params = {"mailbox_id": mailbox_id, "account_id": account_id}
        row = (await self._conn.execute(_GET, params)).first()
        return _mailbox(row) if row else None

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[Mailbox]:
        query = page_query(
            select(t.mailboxes).where(_b.account_id == account_id), _b.id, cursor, limit
        )
        rows, next_cursor = split_page((await self._conn.execute(query)).all(), limit)
        return Page([_mailbox(row) for row in rows], next_cursor)

    async def update(self, mailbox: Mailbox) -> None:
        await self._conn.execute(
            update(t.mailboxes)
            .where(_b.id == mailbox.id, _b.account_id == mailbox.account_id)
            .values(
                updated_at=mailbox.updated_at,
                **{name: getattr(mailbox, name) for name in _SETTINGS},
            )
        )

    async def delete(self, account_id: str, mailbox_id: str) -> bool:
        result = await self._conn.execute(
            delete(t.mailboxes).where(_b.id == mailbox_id, _b.account_id == account_id)
        )
        return bool(result.rowcount)

    async def numbers_routed_to(self, account_id: str, mailbox_id: str) -> int:
        query = select(func.count()).where(
            _n.account_id == account_id,
            or_(
                (_n.dest_kind == "voicemail") & (_n.dest_id == mailbox_id),
                (_n.closed_dest_kind == "voicemail") & (_n.closed_dest_id == mailbox_id),
                (_n.holiday_dest_kind == "voicemail") & (_n.holiday_dest_id == mailbox_id),
            ),
        )
        return int((await self._conn.execute(query)).scalar_one())

    async def in_queue(self, account_id: str, queue_id: str) -> builtins.list[str]:
        query = select(_b.id).where(_b.account_id == account_id, _b.queue_id == queue_id)
        return [row.id for row in (await self._conn.execute(query)).all()]


class SqlMessageRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add_if_absent(self, message: Message) -> bool:
        values = {
            "id": message.id,
            "account_id": message.account_id,
            "mailbox_id": message.mailbox_id,
            "call_id": message.call_id,
            "caller": message.caller,
            "caller_name": message.caller_name,
            "callee": message.callee,
            "duration_ms": message.duration_ms,
            "folder": message.folder.value,
            "read": message.read,
            "size_bytes": message.size_bytes,
            "audio_key": message.audio_key,
            "recovered": message.recovered,
            "created_at": message.created_at,
            "updated_at": message.updated_at,
            "transcript": message.transcript.as_dict() if message.transcript else None,
            "transcription_status": message.transcription_status.value,
            "transcription_reason": message.transcription_reason,
        }
        # ON CONFLICT keeps a concurrent duplicate from aborting the whole transaction.
        key = [_m.account_id, _m.call_id]
        if self._conn.dialect.name == "postgresql":
            statement: Any = (
                postgresql.insert(t.messages)
                .values(values)
                .on_conflict_do_nothing(index_elements=key)
            )
        else:
            statement = (
                sqlite.insert(t.messages).values(values).on_conflict_do_nothing(index_elements=key)
            )
        result = await self._conn.execute(statement)
        return bool(result.rowcount)

    async def get(self, account_id: str, message_id: str) -> Message | None:
        query = select(t.messages).where(_m.id == message_id, _m.account_id == account_id, _LIVE)
        row = (await self._conn.execute(query)).first()
        return _message(row) if row else None

    async def get_by_id(self, message_id: str) -> Message | None:
        query = select(t.messages).where(_m.id == message_id, _LIVE)
        row = (await self._conn.execute(query)).first()
        return _message(row) if row else None

    async def trash(self, account_id: str, message_id: str, now: datetime) -> bool:
        result = await self._conn.execute(
            update(t.messages)
            .where(_m.id == message_id, _m.account_id == account_id, _LIVE)
            .values(deleted_at=now)
        )
        return bool(result.rowcount)

    async def restore(
        self, account_id: str, message_id: str, mailbox_ids: Collection[str] | None = None
    ) -> Message | None:
        where = [_m.id == message_id, _m.account_id == account_id, _m.deleted_at.is_not(None)]
        if mailbox_ids is not None:
            where.append(_m.mailbox_id.in_(list(mailbox_ids)))
        result = await self._conn.execute(update(t.messages).where(*where).values(deleted_at=None))
        return await self.get(account_id, message_id) if result.rowcount else None

    async def trashed_before(self, cutoff: datetime, limit: int) -> builtins.list[Message]:
        query = (
            select(t.messages)
            .where(_m.deleted_at.is_not(None), _m.deleted_at < cutoff)
            .order_by(_m.deleted_at)
            .limit(limit)
        )
        return [_message(row) for row in (await self._conn.execute(query)).all()]

    async def get_by_call_id(self, account_id: str, call_id: str) -> Message | None:
        query = select(t.messages).where(_m.account_id == account_id, _m.call_id == call_id)
        row = (await self._conn.execute(query)).first()
        return _message(row) if row else None

    async def list(
        self,
        account_id: str,
        mailbox_id: str | None,
        *,
        folder: Folder | None,
        created_after: datetime | None,
        created_before: datetime | None,
        cursor: str | None,
        limit: int,
    ) -> Page[Message]:
        query = select(t.messages).where(_m.account_id == account_id, _LIVE)
        if mailbox_id is not None:
            query = query.where(_m.mailbox_id == mailbox_id)
        if folder is not None:
            query = query.where(_m.folder == folder.value)
        if created_after is not None:
            query = query.where(_m.created_at >= created_after)
        if created_before is not None:
            query = query.where(_m.created_at < created_before)
        rows, next_cursor = split_page(
            (await self._conn.execute(page_query(query, _m.id, cursor, limit))).all(), limit
        )
        return Page([_message(row) for row in rows], next_cursor)

    async def update(self, message: Message) -> None:
        await self._conn.execute(
            update(t.messages)
            .where(_m.id == message.id, _m.account_id == message.account_id)
            .values(folder=message.folder.value, read=message.read, updated_at=message.updated_at)
        )

    async def delete(self, account_id: str, message_id: str) -> bool:
        result = await self._conn.execute(
            delete(t.messages).where(_m.id == message_id, _m.account_id == account_id)
        )
        return bool(result.rowcount)

    async def delete_in_mailbox(self, account_id: str, mailbox_id: str) -> builtins.list[Message]:
        where = (_m.account_id == account_id) & (_m.mailbox_id == mailbox_id)
        rows = (await self._conn.execute(select(t.messages).where(where).order_by(_m.id))).all()
        await self._conn.execute(delete(t.messages).where(where))
        return [_message(row) for row in rows]

    async def usage(self, account_id: str, mailbox_ids: Sequence[str]) -> dict[str, Usage]:
        found: dict[str, Usage] = {mailbox_id: Usage(0, 0) for mailbox_id in mailbox_ids}
        if not found:
            return found
        rows = await self._conn.execute(
            _USAGE, {"account_id": account_id, "mailbox_ids": list(found)}
        )
        for mailbox_id, count, size, unread in rows.all():
            found[mailbox_id] = Usage(messages=int(count), bytes=int(size), unread=int(unread))
        return found
        query = (
            select(
                _m.mailbox_id,
                func.count(),
                func.coalesce(func.sum(_m.size_bytes), 0),
                func.coalesce(func.sum(case((_m.read.is_(False), 1), else_=0)), 0),
            )
            .where(_m.account_id == account_id, _m.mailbox_id.in_(list(found)), _LIVE)
            .group_by(_m.mailbox_id)
        )
        for mailbox_id, count, size, unread in (await self._conn.execute(query)).all():
            found[mailbox_id] = Usage(messages=int(count), bytes=int(size), unread=int(unread))
        return found
