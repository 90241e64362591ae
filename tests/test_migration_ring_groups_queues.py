"""Migration 0015: ring groups, queues and agents' statuses, as the metadata says; it goes back."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect

from afterbeep.db import tables as t
from afterbeep.db.engine import alembic_config

TABLES = (t.ring_groups, t.queues, t.agent_states)
# Columns later migrations add (0020_work_items, 0022_cluster_queues, 0023_cluster_queue_state).
LATER = {
    "queues": {
        "work_offer_timeout_sec",
        "work_overflow_sec",
        "work_fallback_queue_id",
        "work_ttl_sec",
    },
    "agent_states": {
        "capacity",
        "held_state",
        "held_ticket",
        "held_node",
        "held_until",
        "idle_since",
        "missed_in_row",
        "calls",
    },
}


def test_tables_match_the_metadata_and_downgrade_works(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'pbx.db'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0015_ring_groups_queues")
        found = inspect(conn)
        for table in TABLES:
            columns = {c["name"]: c["nullable"] for c in found.get_columns(table.name)}
            later = LATER.get(table.name, set())
            expected = {c.name: c.nullable for c in table.columns if c.name not in later}
            assert columns == expected, table.name
            primary = found.get_pk_constraint(table.name)["constrained_columns"]
            assert primary == [c.name for c in table.primary_key.columns], table.name
        command.downgrade(alembic_config(conn), "0013_members")
        names = inspect(conn).get_table_names()
        assert not {table.name for table in TABLES} & set(names)
        assert "members" in names
        command.upgrade(alembic_config(conn), "0015_ring_groups_queues")
    engine.dispose()
