"""Migration 0022_cluster_queues on SQLite and PostgreSQL: agents keep their status and are held
by nothing, the waiting callers get their table; it goes back down."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy
from alembic import command
from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from afterbeep.db.engine import alembic_config
from tests.conftest import fresh_pg_database

NOW = "2026-12-01 10:00:00"
HOLD = {"held_state", "held_ticket", "held_node", "held_until", "idle_since"}


def _walk(conn: Connection) -> None:
    command.upgrade(alembic_config(conn), "0021_cc_connector")
    conn.execute(
        text(f"INSERT INTO accounts (id, name, created_at) VALUES ('acc_a', 'x', '{NOW}')")
    )
    conn.execute(
        text(
            "INSERT INTO agent_states (account_id, user_id, status, updated_at)"
            f" VALUES ('acc_a', 'usr_a', 'available', '{NOW}')"
        )
    )
    command.upgrade(alembic_config(conn), "0022_cluster_queues")
    row = conn.execute(
        text("SELECT status, held_state, held_ticket, held_node, held_until FROM agent_states")
    ).one()
    assert tuple(row) == ("available", None, None, None, None)
    conn.execute(
        text(
            "INSERT INTO queue_callers (ticket, queue_id, account_id, node_id, joined_at, offered,"
            f" expires_at) VALUES ('call-1', 'q_a', 'acc_a', 'n1', '{NOW}', false, '{NOW}')"
        )
    )
    indexes = {i["name"] for i in inspect(conn).get_indexes("queue_callers")}
    assert "ix_queue_callers_queue_joined" in indexes

    command.downgrade(alembic_config(conn), "0021_cc_connector")
    assert "queue_callers" not in inspect(conn).get_table_names()
    columns = {c["name"] for c in inspect(conn).get_columns("agent_states")}
    assert not columns & HOLD
    assert conn.execute(text("SELECT status FROM agent_states")).scalar_one() == "available"


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
