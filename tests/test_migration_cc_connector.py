"""Migration 0021_cc_connector: mailboxes get their queue, call center and connector (empty on
existing rows), and the connector and delivery tables come; it goes back down. Revisions are
named relative to 0021 so that the chain may be re-ordered at a merge."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect, text

from afterbeep.db.engine import alembic_config

_AT = "'2026-12-01 10:00:00.000000'"
_BEFORE = "0021_cc_connector-1"


def test_cc_connector_tables_and_columns_come_and_go(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), _BEFORE)
        conn.execute(
            text(f"INSERT INTO accounts (id, name, created_at) VALUES ('acc_a', 'x', {_AT})")
        )
        conn.execute(
            text(
                "INSERT INTO mailboxes (id, account_id, name, skip_instructions, quota_mb, language,"
                " timezone, max_message_seconds, min_message_seconds, silence_seconds, max_messages,"
                f" attach_audio, created_at, updated_at) VALUES ('vm_a', 'acc_a', 'Front', 0, 200,"
                f" 'en', 'UTC', 180, 2, 8, 100, 1, {_AT}, {_AT})"
            )
        )
        command.upgrade(alembic_config(conn), "0021_cc_connector")
        row = conn.execute(
            text("SELECT queue_id, call_center_id, connector_id FROM mailboxes")
        ).one()
        assert tuple(row) == (None, None, None)
        tables = set(inspect(conn).get_table_names())
        assert {"cc_connectors", "cc_deliveries", "cc_exchanges"} <= tables
        command.downgrade(alembic_config(conn), _BEFORE)
        tables = set(inspect(conn).get_table_names())
        assert not {"cc_connectors", "cc_deliveries", "cc_exchanges"} & tables
        columns = {c["name"] for c in inspect(conn).get_columns("mailboxes")}
        assert not {"queue_id", "call_center_id", "connector_id"} & columns
        assert conn.execute(text("SELECT count(*) FROM mailboxes")).scalar_one() == 1
    engine.dispose()
