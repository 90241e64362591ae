"""Migration 0014_users: the users, devices, registrations and failure tables, accounts keep
their rows (devices may not dial out by default); it goes back down."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect, text

from afterbeep.db.engine import alembic_config

_AT = "'2026-12-01 10:00:00.000000'"


def test_users_tables_come_and_go(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0013_members")
        conn.execute(text(f"INSERT INTO accounts (id, name, created_at) VALUES ('acc_a', 'x', {_AT})"))
        command.upgrade(alembic_config(conn), "0014_users")
        tables = set(inspect(conn).get_table_names())
        assert {"users", "devices", "registrations", "sip_auth_failures"} <= tables
        allowed = conn.execute(text("SELECT allow_device_outbound FROM accounts")).scalar_one()
        assert not allowed
        command.downgrade(alembic_config(conn), "0013_members")
        tables = set(inspect(conn).get_table_names())
        assert not {"users", "devices", "registrations", "sip_auth_failures"} & tables
        assert "allow_device_outbound" not in {c["name"] for c in inspect(conn).get_columns("accounts")}
        assert conn.execute(text("SELECT count(*) FROM accounts")).scalar_one() == 1
    engine.dispose()
