"""voicemails for a team: mailboxes' queue and receiver, outside contact centers (connectors),
the seed 002 sequence's deliveries and every request and answer of them (issue 18)

Revision ID: 0021_cc_connector
Revises: 0023_mwi
Create Date: 2026-12-07 06:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import afterbeep.db.tables

revision = "0021_cc_connector"
down_revision: str | None = "0022_phone_menu"
branch_labels = None
depends_on = None

_Utc = afterbeep.db.tables.UtcDateTime


def upgrade() -> None:
    # no foreign keys: a deleted queue, call center or connector leaves a dangling id, and the
    # sequence of a message left then fails with the reason
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queue_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("call_center_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("connector_id", sa.String(length=40), nullable=True))

    op.create_table(
        "cc_connectors",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("base_url", sa.String(length=500), nullable=False),
        sa.Column("call_center_api_name", sa.String(length=80), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("audience", sa.String(length=300), nullable=True),
        sa.Column("provider_name", sa.String(length=80), nullable=True),
        sa.Column("fallback_queue", sa.String(length=80), nullable=True),
        sa.Column("key_ref", sa.String(length=200), nullable=True),
        sa.Column("created_at", _Utc(timezone=True), nullable=False),
        sa.Column("updated_at", _Utc(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_cc_connectors_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cc_connectors")),
    )
    with op.batch_alter_table("cc_connectors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cc_connectors_account_id"), ["account_id"], unique=False)

    op.create_table(
        "cc_deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("message_id", sa.String(length=40), nullable=False),
        sa.Column("mailbox_id", sa.String(length=40), nullable=False),
        sa.Column("queue_id", sa.String(length=40), nullable=False),
        sa.Column("connector_id", sa.String(length=40), nullable=True),
        sa.Column("call_center_id", sa.String(length=40), nullable=True),
        sa.Column("vendor_call_key", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("steps_done", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _Utc(timezone=True), nullable=False),
        sa.Column("claimed_until", _Utc(timezone=True), nullable=True),
        sa.Column("transcript_wait_until", _Utc(timezone=True), nullable=False),
        sa.Column("voice_call_id", sa.String(length=80), nullable=True),
        sa.Column("routed", sa.JSON(), nullable=True),
        sa.Column("transcript_note", sa.String(length=500), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", _Utc(timezone=True), nullable=False),
        sa.Column("updated_at", _Utc(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_cc_deliveries_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cc_deliveries")),
        sa.UniqueConstraint("message_id", name=op.f("uq_cc_deliveries_message_id")),
    )
    with op.batch_alter_table("cc_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cc_deliveries_account_id"), ["account_id"], unique=False)
        batch_op.create_index("ix_cc_deliveries_due", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "cc_exchanges",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("delivery_id", sa.String(length=40), nullable=False),
        sa.Column("step", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.String(length=600), nullable=False),
        sa.Column("request", sa.JSON(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("answer", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("at", _Utc(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_cc_exchanges_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["cc_deliveries.id"], name=op.f("fk_cc_exchanges_delivery_id_cc_deliveries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cc_exchanges")),
    )
    with op.batch_alter_table("cc_exchanges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cc_exchanges_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_cc_exchanges_delivery_id"), ["delivery_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cc_exchanges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cc_exchanges_delivery_id"))
        batch_op.drop_index(batch_op.f("ix_cc_exchanges_account_id"))
    op.drop_table("cc_exchanges")
    with op.batch_alter_table("cc_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_cc_deliveries_due")
        batch_op.drop_index(batch_op.f("ix_cc_deliveries_account_id"))
    op.drop_table("cc_deliveries")
    with op.batch_alter_table("cc_connectors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cc_connectors_account_id"))
    op.drop_table("cc_connectors")
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.drop_column("connector_id")
        batch_op.drop_column("call_center_id")
        batch_op.drop_column("queue_id")
