"""number routing: holiday destination, status, anonymous callers; hangup has no dest_id

Revision ID: 0010_number_routing
Revises: 0011_flow_speech
Create Date: 2026-12-07 00:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010_number_routing'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('numbers') as batch:
        batch.alter_column('dest_id', existing_type=sa.String(40), nullable=True)
        batch.add_column(sa.Column('holiday_dest_kind', sa.String(16), nullable=True))
        batch.add_column(sa.Column('holiday_dest_id', sa.String(40), nullable=True))
        batch.add_column(
            sa.Column('status', sa.String(16), server_default='active', nullable=False)
        )
        batch.add_column(
            sa.Column('allow_anonymous', sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch.create_index('ix_numbers_account_schedule', ['account_id', 'schedule_id'])


def downgrade() -> None:
    op.execute("DELETE FROM numbers WHERE dest_id IS NULL")
    with op.batch_alter_table('numbers') as batch:
        batch.drop_index('ix_numbers_account_schedule')
        batch.drop_column('allow_anonymous')
        batch.drop_column('status')
        batch.drop_column('holiday_dest_id')
        batch.drop_column('holiday_dest_kind')
        batch.alter_column('dest_id', existing_type=sa.String(40), nullable=False)
