"""phone menu: the owner's recorded name, `*97` without the PIN, wrong PINs per mailbox and source

Revision ID: 0022_phone_menu
Revises: 0023_mwi
Create Date: 2026-12-07 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import afterbeep.db.tables

revision = "0022_phone_menu"
down_revision = "0023_mwi"  # re-chained after merging main (brief: 0018_device_outbound)
branch_labels = None
depends_on = None

_Utc = afterbeep.db.tables.UtcDateTime


def upgrade() -> None:
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name_media_id", sa.String(length=40), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_mailboxes_name_media_id_media"), "media", ["name_media_id"], ["id"]
        )
        batch_op.add_column(
            sa.Column(
                "skip_pin_from_own_device", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
    op.create_table(
        "mailbox_pin_failures",
        sa.Column("mailbox_id", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=120), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", _Utc(timezone=True), nullable=False),
        sa.Column("locked_until", _Utc(timezone=True), nullable=True),
        sa.Column("lockouts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailboxes.id"],
            name=op.f("fk_mailbox_pin_failures_mailbox_id_mailboxes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("mailbox_id", "source", name=op.f("pk_mailbox_pin_failures")),
    )


def downgrade() -> None:
    op.drop_table("mailbox_pin_failures")
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.drop_column("skip_pin_from_own_device")
        batch_op.drop_constraint(
            batch_op.f("fk_mailboxes_name_media_id_media"), type_="foreignkey"
        )
        batch_op.drop_column("name_media_id")
