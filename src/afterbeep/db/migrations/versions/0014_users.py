"""users: users (extensions), devices, registrations, SIP auth failures; accounts' device outbound

Revision ID: 0014_users
Revises: 0013_members
Create Date: 2026-12-07 03:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import afterbeep.db.tables

revision = "0014_users"
down_revision = "0013_members"
branch_labels = None
depends_on = None

_Utc = afterbeep.db.tables.UtcDateTime


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("allow_device_outbound", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("username", sa.String(length=20), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("voicemail_id", sa.String(length=40), nullable=True),
        sa.Column("ring_timeout_sec", sa.Integer(), nullable=False),
        sa.Column("ring_strategy", sa.String(length=16), nullable=False),
        sa.Column("dnd", sa.Boolean(), nullable=False),
        sa.Column("fwd_always_kind", sa.String(length=16), nullable=True),
        sa.Column("fwd_always_id", sa.String(length=40), nullable=True),
        sa.Column("fwd_busy_kind", sa.String(length=16), nullable=True),
        sa.Column("fwd_busy_id", sa.String(length=40), nullable=True),
        sa.Column("fwd_noanswer_kind", sa.String(length=16), nullable=True),
        sa.Column("fwd_noanswer_id", sa.String(length=40), nullable=True),
        sa.Column("max_simultaneous", sa.Integer(), nullable=True),
        sa.Column("is_agent", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", _Utc(timezone=True), nullable=False),
        sa.Column("updated_at", _Utc(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_users_account_id_accounts")),
        sa.ForeignKeyConstraint(["voicemail_id"], ["mailboxes.id"], name=op.f("fk_users_voicemail_id_mailboxes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("account_id", "username", name=op.f("uq_users_account_id")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_users_account_id"), ["account_id"], unique=False)

    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("auth_username", sa.String(length=64), nullable=False),
        sa.Column("realm", sa.String(length=200), nullable=False),
        sa.Column("ha1_md5", sa.String(length=32), nullable=False),
        sa.Column("ha1_sha256", sa.String(length=64), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("ring_order", sa.Integer(), nullable=False),
        sa.Column("created_at", _Utc(timezone=True), nullable=False),
        sa.Column("updated_at", _Utc(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_devices_account_id_accounts")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_devices_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("auth_username", name=op.f("uq_devices_auth_username")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_devices_user_id"), ["user_id"], unique=False)

    op.create_table(
        "registrations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("device_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("contact", sa.String(length=500), nullable=False),
        sa.Column("expires_at", _Utc(timezone=True), nullable=False),
        sa.Column("source_host", sa.String(length=64), nullable=False),
        sa.Column("source_port", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("path", sa.JSON(), nullable=False),
        sa.Column("call_id", sa.String(length=200), nullable=False),
        sa.Column("cseq", sa.Integer(), nullable=False),
        sa.Column("user_agent", sa.String(length=200), nullable=True),
        sa.Column("created_at", _Utc(timezone=True), nullable=False),
        sa.Column("updated_at", _Utc(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_registrations_account_id_accounts")),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], name=op.f("fk_registrations_device_id_devices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registrations")),
        sa.UniqueConstraint("device_id", "contact", name=op.f("uq_registrations_device_id")),
    )
    with op.batch_alter_table("registrations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_registrations_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_registrations_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_registrations_user_id"), ["user_id"], unique=False)

    op.create_table(
        "sip_auth_failures",
        sa.Column("subject", sa.String(length=120), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", _Utc(timezone=True), nullable=False),
        sa.Column("locked_until", _Utc(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("subject", name=op.f("pk_sip_auth_failures")),
    )


def downgrade() -> None:
    op.drop_table("sip_auth_failures")
    op.drop_table("registrations")
    op.drop_table("devices")
    op.drop_table("users")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("allow_device_outbound")
