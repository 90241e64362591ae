"""Migration 0019_telephony_api: the call centers, voice calls, transcript entries and seen JWT
ids tables come on top of 0018 with existing rows kept, and go back down."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect, text

from afterbeep.db.engine import alembic_config

_AT = "'2026-12-01 10:00:00.000000'"
_TABLES = {"call_centers", "voice_calls", "voice_call_messages", "telephony_jtis"}


def test_telephony_api_tables_come_and_go(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0018_device_outbound")
        conn.execute(
            text(f"INSERT INTO accounts (id, name, created_at) VALUES ('acc_a', 'x', {_AT})")
        )
        command.upgrade(alembic_config(conn), "0019_telephony_api")
        assert set(inspect(conn).get_table_names()) >= _TABLES
        conn.execute(
            text(
                "INSERT INTO call_centers (id, account_id, api_name, org_id, public_key_pem,"
                f" routes, flows, created_at, updated_at) VALUES ('cc_a', 'acc_a', 'C', 'o', 'k',"
                f" '[]', '[]', {_AT}, {_AT})"
            )
        )
        uniques = {
            tuple(u["column_names"]) for u in inspect(conn).get_unique_constraints("voice_calls")
        }
        assert ("call_center_id", "vendor_call_key") in uniques
        command.downgrade(alembic_config(conn), "0018_device_outbound")
        assert not _TABLES & set(inspect(conn).get_table_names())
        assert conn.execute(text("SELECT count(*) FROM accounts")).scalar_one() == 1
    engine.dispose()
