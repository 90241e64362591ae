"""Migration 0022_phone_menu on SQLite and PostgreSQL: existing mailboxes get no recorded name
and keep asking the PIN from their owner's phone; wrong PINs get their table (gone with their
mailbox); it goes back down."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy
from alembic import command
from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from afterbeep.db.engine import alembic_config
from tests.conftest import fresh_pg_database

NOW = "2026-12-01 10:00:00"


def _walk(conn: Connection) -> None:
    command.upgrade(alembic_config(conn), "0018_device_outbound")
    conn.execute(text(f"INSERT INTO accounts (id, name, created_at) VALUES ('acc_a', 'x', '{NOW}')"))
    conn.execute(
        text(
            "INSERT INTO mailboxes (id, account_id, name, skip_instructions,"
            " quota_mb, language, timezone, max_message_seconds, min_message_seconds,"
            " silence_seconds, max_messages, attach_audio, created_at, updated_at) VALUES"
            f" ('vm_a', 'acc_a', 'b', false, 10, 'en', 'UTC', 60, 1, 5, 10, true,"
            f" '{NOW}', '{NOW}')"
        )
    )
    command.upgrade(alembic_config(conn), "0022_phone_menu")
    row = conn.execute(text("SELECT name_media_id, skip_pin_from_own_device FROM mailboxes")).one()
    assert row[0] is None and not row[1]
    foreign = {
        tuple(fk["constrained_columns"]): fk["referred_table"]
        for fk in inspect(conn).get_foreign_keys("mailboxes")
    }
    assert foreign[("name_media_id",)] == "media"
    conn.execute(
        text(
            "INSERT INTO mailbox_pin_failures (mailbox_id, source, failures, window_start,"
            f" locked_until, lockouts) VALUES ('vm_a', 'tel:+1', 2, '{NOW}', NULL, 0)"
        )
    )
    [fk] = inspect(conn).get_foreign_keys("mailbox_pin_failures")
    assert fk["referred_table"] == "mailboxes" and fk["options"].get("ondelete") == "CASCADE"

    command.downgrade(alembic_config(conn), "0018_device_outbound")
    columns = {c["name"] for c in inspect(conn).get_columns("mailboxes")}
    assert not columns & {"name_media_id", "skip_pin_from_own_device"}
    assert "mailbox_pin_failures" not in inspect(conn).get_table_names()


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
