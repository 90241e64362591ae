"""Migration 0017_greeting_kinds on SQLite and PostgreSQL: existing mailboxes keep their
greeting and get no busy or temporary one; the new columns refer to media; it goes back down."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy
from alembic import command
from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from afterbeep.db.engine import alembic_config
from tests.conftest import fresh_pg_database

NOW = "2026-12-01 10:00:00"
KINDS = {"busy_greeting_media_id", "temp_greeting_media_id"}


def _walk(conn: Connection) -> None:
    command.upgrade(alembic_config(conn), "0013_members")
    conn.execute(text(f"INSERT INTO accounts (id, name, created_at) VALUES ('acc_a', 'x', '{NOW}')"))
    conn.execute(
        text(
            "INSERT INTO media (id, account_id, name, format, content_type, duration_ms,"
            " sample_rate, channels, size_bytes, sha256, original_key, telephony_key,"
            f" created_at, stored_bytes) VALUES ('media_a', 'acc_a', 'n', 'WAV',"
            f" 'audio/wav', 1, 8000, 1, 1, 'h', 'o', 't', '{NOW}', 1)"
        )
    )
    conn.execute(
        text(
            "INSERT INTO mailboxes (id, account_id, name, greeting_media_id, skip_instructions,"
            " quota_mb, language, timezone, max_message_seconds, min_message_seconds,"
            " silence_seconds, max_messages, attach_audio, created_at, updated_at) VALUES"
            f" ('vm_a', 'acc_a', 'b', 'media_a', false, 10, 'en', 'UTC', 60, 1, 5, 10, true,"
            f" '{NOW}', '{NOW}')"
        )
    )
    command.upgrade(alembic_config(conn), "0017_greeting_kinds")
    row = conn.execute(
        text("SELECT greeting_media_id, busy_greeting_media_id, temp_greeting_media_id FROM mailboxes")
    ).one()
    assert tuple(row) == ("media_a", None, None)
    foreign = {
        tuple(fk["constrained_columns"]): fk["referred_table"]
        for fk in inspect(conn).get_foreign_keys("mailboxes")
    }
    assert foreign[("busy_greeting_media_id",)] == "media"
    assert foreign[("temp_greeting_media_id",)] == "media"
    conn.execute(text("UPDATE mailboxes SET temp_greeting_media_id = 'media_a'"))

    command.downgrade(alembic_config(conn), "0013_members")
    columns = {c["name"] for c in inspect(conn).get_columns("mailboxes")}
    assert not columns & KINDS and "greeting_media_id" in columns
    assert conn.execute(text("SELECT greeting_media_id FROM mailboxes")).scalar_one() == "media_a"


def test_on_sqlite(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        _walk(conn)
    engine.dispose()


async def test_on_postgres(pg_url: str) -> None:
    url = sqlalchemy.make_url(await fresh_pg_database(pg_url)).set(drivername="postgresql+asyncpg")
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_walk)
    finally:
        await engine.dispose()


