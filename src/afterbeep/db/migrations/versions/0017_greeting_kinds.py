"""greeting kinds: a mailbox's busy and temporary greetings beside the unavailable one

Revision ID: 0017_greeting_kinds
Revises: 0013_members
Create Date: 2026-12-07 03:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_greeting_kinds"
down_revision = "0015_ring_groups_queues"
branch_labels = None
depends_on = None

_KINDS = ("busy", "temp")


def upgrade() -> None:
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        for kind in _KINDS:
            batch_op.add_column(sa.Column(f"{kind}_greeting_media_id", sa.String(length=40), nullable=True))
            batch_op.create_foreign_key(
                batch_op.f(f"fk_mailboxes_{kind}_greeting_media_id_media"),
                "media",
                [f"{kind}_greeting_media_id"],
                ["id"],
            )


def downgrade() -> None:
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        for kind in _KINDS:
            batch_op.drop_constraint(
                batch_op.f(f"fk_mailboxes_{kind}_greeting_media_id_media"), type_="foreignkey"
            )
            batch_op.drop_column(f"{kind}_greeting_media_id")
