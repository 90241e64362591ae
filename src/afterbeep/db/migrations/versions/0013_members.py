"""members: web sign-in (members, sessions, one-time links), mailbox owners, messages' undo window

Revision ID: 0013_members
Revises: 0009
Create Date: 2026-12-07 00:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import afterbeep.db.tables

revision = "0013_members"
down_revision = "0012_transcripts"
branch_labels = None
depends_on = None

_Utc = afterbeep.db.tables.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "members",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=True),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("created_at", _Utc(timezone=True), nullable=False),
        sa.Column("updated_at", _Utc(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_members_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_members")),
        sa.UniqueConstraint("email", name=op.f("uq_members_email")),
    )
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_members_account_id"), ["account_id"], unique=False)

    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("member_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", _Utc(timezone=True), nullable=False),
        sa.Column("expires_at", _Utc(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_web_sessions_account_id_accounts")),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_web_sessions_member_id_members")),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_web_sessions")),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_sessions_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_web_sessions_member_id"), ["member_id"], unique=False)

    op.create_table(
        "sign_in_links",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("member_id", sa.String(length=40), nullable=False),
        sa.Column("next_path", sa.String(length=500), nullable=False),
        sa.Column("created_at", _Utc(timezone=True), nullable=False),
        sa.Column("expires_at", _Utc(timezone=True), nullable=False),
        sa.Column("used_at", _Utc(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_sign_in_links_account_id_accounts")),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_sign_in_links_member_id_members")),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_sign_in_links")),
    )
    with op.batch_alter_table("sign_in_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sign_in_links_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sign_in_links_member_id"), ["member_id"], unique=False)

    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_member_id", sa.String(length=40), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_mailboxes_owner_member_id_members"), "members", ["owner_member_id"], ["id"]
        )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at", _Utc(timezone=True), nullable=True))


def downgrade() -> None:
    # In place (SQLite 3.35+): rebuilding `messages` in batch mode would drop the transcript
    # search triggers of 0012_transcripts.
    op.execute("ALTER TABLE messages DROP COLUMN deleted_at")
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_mailboxes_owner_member_id_members"), type_="foreignkey")
        batch_op.drop_column("owner_member_id")
    op.drop_table("sign_in_links")
    op.drop_table("web_sessions")
    op.drop_table("members")
