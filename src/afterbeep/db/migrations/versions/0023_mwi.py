"""mwi: RFC 3842 message-summary subscriptions

Revision ID: 0023_mwi
Revises: 0018_device_outbound
Create Date: 2026-12-07 06:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import afterbeep.db.tables

revision = "0023_mwi"
down_revision = "0020_work_items"
branch_labels = None
depends_on = None

UtcDateTime = afterbeep.db.tables.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "mwi_subscriptions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("device_id", sa.String(length=40), nullable=False),
        sa.Column("mailbox_id", sa.String(length=40), nullable=False),
        sa.Column("message_account", sa.String(length=300), nullable=False),
        sa.Column("call_id", sa.String(length=200), nullable=False),
        sa.Column("local_tag", sa.String(length=64), nullable=False),
        sa.Column("remote_tag", sa.String(length=128), nullable=False),
        sa.Column("local_uri", sa.String(length=500), nullable=False),
        sa.Column("remote_uri", sa.String(length=500), nullable=False),
        sa.Column("remote_target", sa.String(length=500), nullable=False),
        sa.Column("route_set", sa.JSON(), nullable=False),
        sa.Column("local_seq", sa.Integer(), nullable=False),
        sa.Column("remote_seq", sa.Integer(), nullable=False),
        sa.Column("source_host", sa.String(length=64), nullable=False),
        sa.Column("source_port", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["mailbox_id"], ["mailboxes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("call_id", "local_tag"),
    )
    op.create_index("ix_mwi_subscriptions_account_id", "mwi_subscriptions", ["account_id"])
    op.create_index("ix_mwi_subscriptions_expires_at", "mwi_subscriptions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_mwi_subscriptions_expires_at", table_name="mwi_subscriptions")
    op.drop_index("ix_mwi_subscriptions_account_id", table_name="mwi_subscriptions")
    op.drop_table("mwi_subscriptions")
