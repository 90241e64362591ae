"""idempotency records scoped by account, swept by age

Revision ID: 0005_idempotency_scope
Revises: 0004
Create Date: 2026-12-06 21:40:00
"""

from __future__ import annotations

from alembic import op

revision = '0005_idempotency_scope'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Records were scoped by a hash of the Authorization header; they are now scoped by account
    # id, so the old ones can never be replayed again.
    op.execute("DELETE FROM idempotency_keys")
    op.create_index('ix_idempotency_keys_created', 'idempotency_keys', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_idempotency_keys_created', table_name='idempotency_keys')
