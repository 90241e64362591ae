"""ring groups, queues and agents' statuses (issue 17; users and devices are named by id only)

Revision ID: 0015_ring_groups_queues
Revises: 0013_members
Create Date: 2026-12-07 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import afterbeep.db.tables

revision = "0015_ring_groups_queues"
down_revision: str | None = "0014_users"
branch_labels = None
depends_on = None

_Utc = afterbeep.db.tables.UtcDateTime


def _dest(prefix: str) -> list[sa.Column[str]]:
    return [
        sa.Column(f"{prefix}_kind", sa.String(length=16), nullable=True),
        sa.Column(f"{prefix}_id", sa.String(length=40), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "ring_groups",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("strategy", sa.String(length=16), nullable=False),
        sa.Column("ring_timeout_sec", sa.Integer(), nullable=False),
        sa.Column("moh_media_id", sa.String(length=40), nullable=True),
        sa.Column("members", sa.JSON(), nullable=False),
        *_dest("exit_dest"),
        sa.Column("schedule_id", sa.String(length=40), nullable=True),
        *_dest("closed_dest"),
        *_dest("holiday_dest"),
        sa.Column("created_at", _Utc(timezone=True), nullable=False),
        sa.Column("updated_at", _Utc(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_ring_groups_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ring_groups")),
    )
    with op.batch_alter_table("ring_groups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ring_groups_account_id"), ["account_id"], unique=False)

    op.create_table(
        "queues",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("strategy", sa.String(length=16), nullable=False),
        sa.Column("agent_ring_timeout_sec", sa.Integer(), nullable=False),
        sa.Column("max_wait_sec", sa.Integer(), nullable=False),
        sa.Column("wrap_up_sec", sa.Integer(), nullable=False),
        sa.Column("max_no_answer", sa.Integer(), nullable=False),
        sa.Column("announce_position", sa.Boolean(), nullable=False),
        sa.Column("announce_first_sec", sa.Integer(), nullable=False),
        sa.Column("announce_interval_sec", sa.Integer(), nullable=False),
        sa.Column("max_queued", sa.Integer(), nullable=False),
        sa.Column("moh_media_id", sa.String(length=40), nullable=True),
        sa.Column("language", sa.String(length=35), nullable=True),
        sa.Column("members", sa.JSON(), nullable=False),
        *_dest("timeout_dest"),
        *_dest("abandon_dest"),
        *_dest("no_agents_dest"),
        *_dest("queue_full_dest"),
        sa.Column("schedule_id", sa.String(length=40), nullable=True),
        *_dest("closed_dest"),
        *_dest("holiday_dest"),
        sa.Column("created_at", _Utc(timezone=True), nullable=False),
        sa.Column("updated_at", _Utc(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_queues_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queues")),
    )
    with op.batch_alter_table("queues", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_queues_account_id"), ["account_id"], unique=False)

    op.create_table(
        "agent_states",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("updated_at", _Utc(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_agent_states_account_id_accounts")),
        sa.PrimaryKeyConstraint("account_id", "user_id", name=op.f("pk_agent_states")),
    )


def downgrade() -> None:
    op.drop_table("agent_states")
    op.drop_table("queues")
    op.drop_table("ring_groups")
