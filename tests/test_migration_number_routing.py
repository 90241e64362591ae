"""Migration 0010: existing numbers stay active and open to anonymous callers; it goes back down
(numbers that point at `hangup`, which has no dest_id, are removed then)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from afterbeep.db.engine import alembic_config

REVISION = "0010_number_routing"


def _parent() -> str:
    parent = ScriptDirectory.from_config(alembic_config()).get_revision(REVISION).down_revision
    assert isinstance(parent, str)
    return parent


def test_0010_keeps_existing_numbers_routing_as_before(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), _parent())
        conn.execute(
            text(
                "INSERT INTO accounts (id, name, created_at)"
                " VALUES ('acc_a', 'x', '2026-12-01 10:00:00.000000')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO numbers (id, account_id, e164, dest_kind, dest_id, created_at,"
                " updated_at) VALUES ('num_a', 'acc_a', '+12025550123', 'voicemail', 'vm_a',"
                " '2026-12-01 10:00:00.000000', '2026-12-01 10:00:00.000000')"
            )
        )
        command.upgrade(alembic_config(conn), REVISION)
        row = conn.execute(
            text(
                "SELECT dest_kind, dest_id, status, allow_anonymous, holiday_dest_kind,"
                " holiday_dest_id FROM numbers"
            )
        ).one()
        assert tuple(row) == ("voicemail", "vm_a", "active", 1, None, None)
        conn.execute(
            text(
                "INSERT INTO numbers (id, account_id, e164, dest_kind, dest_id, created_at,"
                " updated_at) VALUES ('num_b', 'acc_a', '+12025550124', 'hangup', NULL,"
                " '2026-12-01 10:00:00.000000', '2026-12-01 10:00:00.000000')"
            )
        )
        command.downgrade(alembic_config(conn), _parent())
        columns = {c["name"] for c in inspect(conn).get_columns("numbers")}
        assert "status" not in columns and "holiday_dest_id" not in columns
        assert conn.execute(text("SELECT id FROM numbers")).scalars().all() == ["num_a"]
    engine.dispose()
