"""Migration 0006 on a database where tenants had marked numbers verified themselves: a number
only one account claimed stays verified for it; one several accounts claimed, for none."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, text

from afterbeep.db.engine import alembic_config

NOW = "2026-12-01 10:00:00.000000"


def test_only_numbers_one_account_claimed_stay_verified(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0004")
        for account in ("acc_a", "acc_b"):
            conn.execute(
                text("INSERT INTO accounts (id, name, created_at) VALUES (:id, 'x', :now)"),
                {"id": account, "now": NOW},
            )
            conn.execute(
                text(
                    "INSERT INTO telephony_setups (id, account_id, name, trunk_host, trunk_port,"
                    " transport, max_calls_per_second, max_concurrent_calls, deposit_uri,"
                    " deposit_headers, created_at, updated_at) VALUES (:id, :account, 't', 'h',"
                    " 5060, 'udp', 1, 1, '', '{}', :now, :now)"
                ),
                {"id": f"setup_{account}", "account": account, "now": NOW},
            )
        claims = [
            ("acc_a", "+12125550100", True),  # only A claimed it
            ("acc_a", "+12125550101", True),  # both claimed it
            ("acc_b", "+12125550101", True),
            ("acc_b", "+12125550102", False),
        ]
        for position, (account, e164, verified) in enumerate(claims):
            conn.execute(
                text(
                    "INSERT INTO setup_numbers (setup_id, e164, account_id, verified, position)"
                    " VALUES (:setup, :e164, :account, :verified, :position)"
                ),
                {"setup": f"setup_{account}", "e164": e164, "account": account,
                 "verified": verified, "position": position},
            )
        command.upgrade(alembic_config(conn), "head")
        senders = conn.execute(text("SELECT e164, account_id FROM verified_senders")).all()
        numbers = conn.execute(
            text("SELECT account_id, e164, verified FROM setup_numbers ORDER BY position")
        ).all()
    engine.dispose()
    assert [tuple(r) for r in senders] == [("+12125550100", "acc_a")]
    assert [tuple(r) for r in numbers] == [
        ("acc_a", "+12125550100", 1),
        ("acc_a", "+12125550101", 0),
        ("acc_b", "+12125550101", 0),
        ("acc_b", "+12125550102", 0),
    ]
