"""Migration 0023_cluster_queue_state on SQLite and PostgreSQL: agents keep their status with no
missed offer and no call counted, queues get their tallies; it goes back down."""

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
    command.upgrade(alembic_config(conn), "0022_cluster_queues")
    conn.execute(
        text(f"INSERT INTO accounts (id, name, created_at) VALUES ('acc_a', 'x', '{NOW}')")
    )
    conn.execute(
        text(
            "INSERT INTO agent_states (account_id, user_id, status, updated_at)"
            f" VALUES ('acc_a', 'usr_a', 'on_break', '{NOW}')"
        )
    )
    command.upgrade(alembic_config(conn), "0023_cluster_queue_state")
    row = conn.execute(text("SELECT status, missed_in_row, calls FROM agent_states")).one()
    assert tuple(row) == ("on_break", 0, 0)
    conn.execute(
        text(
            "INSERT INTO queue_tallies (queue_id, account_id, offers, last_offered, answered,"
            " abandoned, timed_out) VALUES ('q_a', 'acc_a', 3, 'usr_a', 1, 1, 0)"
        )
    )
    assert conn.execute(text("SELECT offers FROM queue_tallies")).scalar_one() == 3

    command.downgrade(alembic_config(conn), "0022_cluster_queues")
    assert "queue_tallies" not in inspect(conn).get_table_names()
    columns = {c["name"] for c in inspect(conn).get_columns("agent_states")}
    assert not columns & {"missed_in_row", "calls"}
    assert conn.execute(text("SELECT status FROM agent_states")).scalar_one() == "on_break"


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
