"""schedules: business hours per account, and the account's default timezone and language

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 23:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from afterbeep.db.tables import UtcDateTime

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('accounts', sa.Column('timezone', sa.String(64), server_default='UTC', nullable=False))
    op.add_column('accounts', sa.Column('language', sa.String(35), server_default='en', nullable=False))
    op.create_table(
        'schedules',
        sa.Column('id', sa.String(40), primary_key=True),
        sa.Column('account_id', sa.String(40), sa.ForeignKey('accounts.id'), nullable=False),
        sa.Column('name', sa.String(200), nullable=False),
        sa.Column('timezone', sa.String(64), nullable=True),
        sa.Column('rules', sa.JSON(), nullable=False),
        sa.Column('created_at', UtcDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', UtcDateTime(timezone=True), nullable=False),
    )
    op.create_index('ix_schedules_account_id', 'schedules', ['account_id'])


def downgrade() -> None:
    op.drop_index('ix_schedules_account_id', table_name='schedules')
    op.drop_table('schedules')
    with op.batch_alter_table('accounts') as batch:
        batch.drop_column('language')
        batch.drop_column('timezone')
