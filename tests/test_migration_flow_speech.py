"""Migration 0011_flow_speech: saved flow versions speak nothing yet (`{}`); it goes back down."""

from __future__ import annotations

import json
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect, text

from afterbeep.db.engine import alembic_config

_AT = "'2026-12-01 10:00:00.000000'"


def test_saved_versions_get_an_empty_speech_map_and_downgrade_works(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0009")
        conn.execute(text(f"INSERT INTO accounts (id, name, created_at) VALUES ('acc_a', 'x', {_AT})"))
        conn.execute(
            text(
                "INSERT INTO flows (id, account_id, name, version, created_at, updated_at)"
                f" VALUES ('flow_a', 'acc_a', 'f', 1, {_AT}, {_AT})"
            )
        )
        conn.execute(
            text(
                "INSERT INTO flow_versions (flow_id, version, graph, created_at)"
                f""" VALUES ('flow_a', 1, '{{"nodes": [], "edges": []}}', {_AT})"""
            )
        )
        command.upgrade(alembic_config(conn), "0011_flow_speech")
        speech = conn.execute(text("SELECT speech FROM flow_versions")).scalar_one()
        assert json.loads(speech) == {}
        command.downgrade(alembic_config(conn), "0009")
        assert "speech" not in {c["name"] for c in inspect(conn).get_columns("flow_versions")}
        assert conn.execute(text("SELECT count(*) FROM flow_versions")).scalar_one() == 1
    engine.dispose()
