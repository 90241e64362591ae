"""Migration 0008: existing accounts get the default timezone and language; it goes back down."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect, text

from afterbeep.db.engine import alembic_config


def test_existing_accounts_get_defaults_and_downgrade_works(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0007")
        conn.execute(
            text(
                "INSERT INTO accounts (id, name, created_at)"
                " VALUES ('acc_a', 'x', '2026-12-01 10:00:00.000000')"
            )
        )
        command.upgrade(alembic_config(conn), "0008")
        row = conn.execute(text("SELECT timezone, language FROM accounts")).one()
        assert tuple(row) == ("UTC", "en")
        assert "schedules" in inspect(conn).get_table_names()
        command.downgrade(alembic_config(conn), "0007")
        assert "schedules" not in inspect(conn).get_table_names()
        assert "timezone" not in {c["name"] for c in inspect(conn).get_columns("accounts")}
    engine.dispose()
