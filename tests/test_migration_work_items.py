"""Migration 0020_work_items: existing queues get the work-item defaults and agents no
capacity (the default); the work item, offer and token tables come and go."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect, text

from afterbeep.db.engine import alembic_config

_AT = "'2026-12-01 10:00:00.000000'"


def test_work_items_come_and_go(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0018_device_outbound")
        conn.execute(
            text(f"INSERT INTO accounts (id, name, created_at) VALUES ('acc_a', 'x', {_AT})")
        )
        conn.execute(
            text(
                "INSERT INTO queues (id, account_id, name, strategy, agent_ring_timeout_sec,"
                " max_wait_sec, wrap_up_sec, max_no_answer, announce_position, announce_first_sec,"
                " announce_interval_sec, max_queued, members, created_at, updated_at) VALUES"
                f" ('q_a', 'acc_a', 'Q', 'longest_idle', 15, 300, 10, 3, 1, 30, 60, 0, '[]', {_AT}, {_AT})"
            )
        )
        conn.execute(
            text(
                "INSERT INTO agent_states (account_id, user_id, status, updated_at)"
                f" VALUES ('acc_a', 'usr_a', 'available', {_AT})"
            )
        )
        command.upgrade(alembic_config(conn), "0020_work_items")
        row = conn.execute(
            text(
                "SELECT work_offer_timeout_sec, work_overflow_sec, work_fallback_queue_id, work_ttl_sec FROM queues"
            )
        ).one()
        assert tuple(row) == (120, 0, None, 86400)
        assert conn.execute(text("SELECT capacity FROM agent_states")).scalar_one() is None
        tables = set(inspect(conn).get_table_names())
        assert {"work_items", "work_item_offers", "agent_tokens"} <= tables
        command.downgrade(alembic_config(conn), "0018_device_outbound")
        tables = set(inspect(conn).get_table_names())
        assert not {"work_items", "work_item_offers", "agent_tokens"} & tables
        assert "work_ttl_sec" not in {c["name"] for c in inspect(conn).get_columns("queues")}
        assert "capacity" not in {c["name"] for c in inspect(conn).get_columns("agent_states")}
        assert conn.execute(text("SELECT count(*) FROM queues")).scalar_one() == 1
    engine.dispose()
