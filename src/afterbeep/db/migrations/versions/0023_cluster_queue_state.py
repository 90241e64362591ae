"""queue strategy state every node sees: agents' missed streaks and call counts, each queue's
round-robin position, offer count and statistics (issue 23)

Revision ID: 0023_cluster_queue_state
Revises: 0022_cluster_queues
Create Date: 2026-12-07 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023_cluster_queue_state"
down_revision: str | None = "0022_cluster_queues"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agent_states", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("missed_in_row", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("calls", sa.Integer(), server_default="0", nullable=False))

    op.create_table(
        "queue_tallies",
        sa.Column("queue_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("offers", sa.Integer(), nullable=False),
        sa.Column("last_offered", sa.String(length=40), nullable=True),
        sa.Column("answered", sa.Integer(), nullable=False),
        sa.Column("abandoned", sa.Integer(), nullable=False),
        sa.Column("timed_out", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("queue_id", name=op.f("pk_queue_tallies")),
    )


def downgrade() -> None:
    op.drop_table("queue_tallies")
    with op.batch_alter_table("agent_states", schema=None) as batch_op:
        batch_op.drop_column("calls")
        batch_op.drop_column("missed_in_row")
