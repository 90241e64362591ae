"""work items: routed voice calls offered to agents, their offers, agents' tokens; queues'
work-item settings and agents' capacity (issue 18)

Revision ID: 0020_work_items
Revises: 0018_device_outbound
Create Date: 2026-12-07 06:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import afterbeep.db.tables

revision = "0020_work_items"
down_revision: str | None = "0019_telephony_api"
branch_labels = None
depends_on = None

_Utc = afterbeep.db.tables.UtcDateTime


def upgrade() -> None:
    with op.batch_alter_table("queues", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("work_offer_timeout_sec", sa.Integer(), nullable=False, server_default="120")
        )
        batch_op.add_column(
            sa.Column("work_overflow_sec", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("work_fallback_queue_id", sa.String(length=40), nullable=True))
        batch_op.add_column(
            sa.Column("work_ttl_sec", sa.Integer(), nullable=False, server_default="86400")
        )
    with op.batch_alter_table("agent_states", schema=None) as batch_op:
        batch_op.add_column(sa.Column("capacity", sa.Integer(), nullable=True))

    op.create_table(
        "work_items",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("voice_call_id", sa.String(length=40), nullable=False),
        sa.Column("queue_id", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("agent_id", sa.String(length=40), nullable=True),
        sa.Column("offer_id", sa.String(length=40), nullable=True),
        sa.Column("offer_expires_at", _Utc(timezone=True), nullable=True),
        sa.Column("declined_by", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("queued_at", _Utc(timezone=True), nullable=False),
        sa.Column("expires_at", _Utc(timezone=True), nullable=False),
        sa.Column("ended_at", _Utc(timezone=True), nullable=True),
        sa.Column("created_at", _Utc(timezone=True), nullable=False),
        sa.Column("updated_at", _Utc(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_work_items_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_items")),
    )
    with op.batch_alter_table("work_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_work_items_account_id"), ["account_id"], unique=False)
        batch_op.create_index("ix_work_items_state", ["state"], unique=False)
        batch_op.create_index(
            "ix_work_items_account_id_voice_call_id", ["account_id", "voice_call_id"], unique=False
        )

    op.create_table(
        "work_item_offers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("work_item_id", sa.String(length=40), nullable=False),
        sa.Column("agent_id", sa.String(length=40), nullable=False),
        sa.Column("queue_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("offered_at", _Utc(timezone=True), nullable=False),
        sa.Column("expires_at", _Utc(timezone=True), nullable=False),
        sa.Column("ended_at", _Utc(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_work_item_offers_account_id_accounts")),
        sa.ForeignKeyConstraint(["work_item_id"], ["work_items.id"], name=op.f("fk_work_item_offers_work_item_id_work_items")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_item_offers")),
    )
    with op.batch_alter_table("work_item_offers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_work_item_offers_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_work_item_offers_work_item_id"), ["work_item_id"], unique=False)

    op.create_table(
        "agent_tokens",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", _Utc(timezone=True), nullable=True),
        sa.Column("created_at", _Utc(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_agent_tokens_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_tokens")),
    )
    with op.batch_alter_table("agent_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agent_tokens_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_agent_tokens_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_table("agent_tokens")
    op.drop_table("work_item_offers")
    op.drop_table("work_items")
    with op.batch_alter_table("agent_states", schema=None) as batch_op:
        batch_op.drop_column("capacity")
    with op.batch_alter_table("queues", schema=None) as batch_op:
        batch_op.drop_column("work_ttl_sec")
        batch_op.drop_column("work_fallback_queue_id")
        batch_op.drop_column("work_overflow_sec")
        batch_op.drop_column("work_offer_timeout_sec")
