"""queue and agent state every node sees: waiting callers as rows, agents' holds (issue 23)

Revision ID: 0022_cluster_queues
Revises: 0021_cc_connector
Create Date: 2026-12-07 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import afterbeep.db.tables

revision = "0022_cluster_queues"
down_revision: str | None = "0021_cc_connector"
branch_labels = None
depends_on = None

_Utc = afterbeep.db.tables.UtcDateTime


def upgrade() -> None:
    with op.batch_alter_table("agent_states", schema=None) as batch_op:
        batch_op.add_column(sa.Column("held_state", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("held_ticket", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("held_node", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("held_until", _Utc(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("idle_since", _Utc(timezone=True), nullable=True))

    op.create_table(
        "queue_callers",
        sa.Column("ticket", sa.String(length=255), nullable=False),
        sa.Column("queue_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("joined_at", _Utc(timezone=True), nullable=False),
        sa.Column("offered", sa.Boolean(), nullable=False),
        sa.Column("expires_at", _Utc(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ticket", name=op.f("pk_queue_callers")),
    )
    with op.batch_alter_table("queue_callers", schema=None) as batch_op:
        batch_op.create_index("ix_queue_callers_queue_joined", ["queue_id", "joined_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("queue_callers", schema=None) as batch_op:
        batch_op.drop_index("ix_queue_callers_queue_joined")
    op.drop_table("queue_callers")
    with op.batch_alter_table("agent_states", schema=None) as batch_op:
        batch_op.drop_column("idle_since")
        batch_op.drop_column("held_until")
        batch_op.drop_column("held_node")
        batch_op.drop_column("held_ticket")
        batch_op.drop_column("held_state")
