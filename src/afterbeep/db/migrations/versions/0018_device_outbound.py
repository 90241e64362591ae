"""device outbound: the telephony setup an account's devices dial out through, users' caller ids

Revision ID: 0018_device_outbound
Revises: 0017_greeting_kinds
Create Date: 2026-12-07 04:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_device_outbound"
down_revision = "0017_greeting_kinds"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # no foreign key: a deleted setup leaves a dangling id, and dialling out is then refused
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("device_outbound_setup_id", sa.String(length=40), nullable=True)
        )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("out_cid_number", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("out_cid_number")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("device_outbound_setup_id")
