"""Migration 0018_device_outbound: accounts get the setup their devices dial out through and
users their caller id, both empty on existing rows; it goes back down."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect, text

from afterbeep.db.engine import alembic_config

_AT = "'2026-12-01 10:00:00.000000'"


def test_device_outbound_columns_come_and_go(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0017_greeting_kinds")
        conn.execute(
            text(f"INSERT INTO accounts (id, name, created_at) VALUES ('acc_a', 'x', {_AT})")
        )
        command.upgrade(alembic_config(conn), "0018_device_outbound")
        assert (
            conn.execute(text("SELECT device_outbound_setup_id FROM accounts")).scalar_one() is None
        )
        assert "out_cid_number" in {c["name"] for c in inspect(conn).get_columns("users")}
        command.downgrade(alembic_config(conn), "0017_greeting_kinds")
        assert "device_outbound_setup_id" not in {
            c["name"] for c in inspect(conn).get_columns("accounts")
        }
        assert "out_cid_number" not in {c["name"] for c in inspect(conn).get_columns("users")}
        assert conn.execute(text("SELECT count(*) FROM accounts")).scalar_one() == 1
    engine.dispose()
