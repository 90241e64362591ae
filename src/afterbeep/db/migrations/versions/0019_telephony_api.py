"""telephony api: call centers, voice calls, their transcript entries, seen JWT ids (issue 18)

Revision ID: 0019_telephony_api
Revises: 0018_device_outbound
Create Date: 2026-12-07 06:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import afterbeep.db.tables

revision = "0019_telephony_api"
down_revision: str | None = "0018_device_outbound"
branch_labels = None
depends_on = None

_Utc = afterbeep.db.tables.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "call_centers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("api_name", sa.String(length=80), nullable=False),
        sa.Column("org_id", sa.String(length=100), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("routes", sa.JSON(), nullable=False),
        sa.Column("flows", sa.JSON(), nullable=False),
        sa.Column("created_at", _Utc(timezone=True), nullable=False),
        sa.Column("updated_at", _Utc(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_call_centers_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_centers")),
        sa.UniqueConstraint(
            "account_id", "api_name", name=op.f("uq_call_centers_account_id_api_name")
        ),
    )
    with op.batch_alter_table("call_centers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_call_centers_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index("ix_call_centers_issuer", ["org_id", "api_name"], unique=False)

    op.create_table(
        "voice_calls",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("call_center_id", sa.String(length=40), nullable=False),
        sa.Column("vendor_call_key", sa.String(length=200), nullable=False),
        sa.Column("to_number", sa.String(length=64), nullable=False),
        sa.Column("from_number", sa.String(length=64), nullable=False),
        sa.Column("initiation_method", sa.String(length=16), nullable=False),
        sa.Column("call_origin", sa.String(length=16), nullable=True),
        sa.Column("parent_voice_call_id", sa.String(length=40), nullable=True),
        sa.Column("queue", sa.String(length=200), nullable=True),
        sa.Column("agent", sa.String(length=200), nullable=True),
        sa.Column("call_attributes", sa.Text(), nullable=True),
        sa.Column("participants", sa.JSON(), nullable=False),
        sa.Column("start_time", _Utc(timezone=True), nullable=False),
        sa.Column("end_time", _Utc(timezone=True), nullable=True),
        sa.Column("is_active_call", sa.Boolean(), nullable=False),
        sa.Column("recording_location", sa.String(length=2000), nullable=True),
        sa.Column("total_recording_duration", sa.Float(), nullable=True),
        sa.Column("disconnect_reason", sa.String(length=200), nullable=True),
        sa.Column("disconnect_is_error", sa.Boolean(), nullable=True),
        sa.Column("enqueue_time", _Utc(timezone=True), nullable=True),
        sa.Column("accept_time", _Utc(timezone=True), nullable=True),
        sa.Column("total_hold_duration", sa.Float(), nullable=True),
        sa.Column("longest_hold_duration", sa.Float(), nullable=True),
        sa.Column("number_of_holds", sa.Integer(), nullable=True),
        sa.Column("agent_interaction_duration", sa.Float(), nullable=True),
        sa.Column("callback_number", sa.String(length=64), nullable=True),
        sa.Column("callback_voice_call_id", sa.String(length=40), nullable=True),
        sa.Column("routed_queue_id", sa.String(length=40), nullable=True),
        sa.Column("work_item_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", _Utc(timezone=True), nullable=False),
        sa.Column("updated_at", _Utc(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_voice_calls_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["call_center_id"],
            ["call_centers.id"],
            name=op.f("fk_voice_calls_call_center_id_call_centers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voice_calls")),
        sa.UniqueConstraint(
            "call_center_id",
            "vendor_call_key",
            name=op.f("uq_voice_calls_call_center_id_vendor_call_key"),
        ),
    )
    with op.batch_alter_table("voice_calls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_voice_calls_account_id"), ["account_id"], unique=False)
        batch_op.create_index(
            "ix_voice_calls_account_key", ["account_id", "vendor_call_key"], unique=False
        )

    op.create_table(
        "voice_call_messages",
        sa.Column("voice_call_id", sa.String(length=40), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("participant_id", sa.String(length=200), nullable=False),
        sa.Column("sender_type", sa.String(length=20), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", _Utc(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["voice_call_id"],
            ["voice_calls.id"],
            name=op.f("fk_voice_call_messages_voice_call_id_voice_calls"),
        ),
        sa.PrimaryKeyConstraint("voice_call_id", "message_id", name=op.f("pk_voice_call_messages")),
    )

    op.create_table(
        "telephony_jtis",
        sa.Column("call_center_id", sa.String(length=40), nullable=False),
        sa.Column("jti", sa.String(length=200), nullable=False),
        sa.Column("expires_at", _Utc(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("call_center_id", "jti", name=op.f("pk_telephony_jtis")),
    )
    with op.batch_alter_table("telephony_jtis", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_telephony_jtis_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    op.drop_table("telephony_jtis")
    op.drop_table("voice_call_messages")
    op.drop_table("voice_calls")
    op.drop_table("call_centers")
