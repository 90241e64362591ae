"""Migration 0023_mwi: the message-summary subscriptions table comes, and goes back down."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect, text

from afterbeep.db.engine import alembic_config

_AT = "'2026-12-01 10:00:00.000000'"


def test_the_subscriptions_table_comes_and_goes(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0018_device_outbound")
        conn.execute(
            text(f"INSERT INTO accounts (id, name, created_at) VALUES ('acc_a', 'x', {_AT})")
        )
        command.upgrade(alembic_config(conn), "0023_mwi")
        columns = {c["name"] for c in inspect(conn).get_columns("mwi_subscriptions")}
        assert {"call_id", "local_tag", "remote_tag", "local_seq", "expires_at"} <= columns
        assert conn.execute(text("SELECT count(*) FROM mwi_subscriptions")).scalar_one() == 0
        command.downgrade(alembic_config(conn), "0018_device_outbound")
        assert "mwi_subscriptions" not in inspect(conn).get_table_names()
        assert conn.execute(text("SELECT count(*) FROM accounts")).scalar_one() == 1
    engine.dispose()
