"""keys and numbers: caller ids verified by the operator, when a key was last used

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-06 21:40:00

A tenant could mark any number of its setups `verified`. The verified caller ids now live in
`verified_senders`, written by the operator only. A number that exactly one account had marked
verified is carried over (the deployment sent from it already); one that several accounts
claimed is verified for none of them until the operator says whose it is.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import afterbeep.db.tables

revision = '0006'
down_revision = '0005_idempotency_scope'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_used_at', afterbeep.db.tables.UtcDateTime(timezone=True), nullable=True))

    op.create_table('verified_senders',
    sa.Column('e164', sa.String(length=20), nullable=False),
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('verified_at', afterbeep.db.tables.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_verified_senders_account_id_accounts')),
    sa.PrimaryKeyConstraint('e164', name=op.f('pk_verified_senders'))
    )
    with op.batch_alter_table('verified_senders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_verified_senders_account_id'), ['account_id'], unique=False)

    op.execute(
        "INSERT INTO verified_senders (e164, account_id, verified_at) "
        "SELECT e164, MIN(account_id), CURRENT_TIMESTAMP FROM setup_numbers WHERE verified "
        "GROUP BY e164 HAVING COUNT(DISTINCT account_id) = 1"
    )
    op.execute(
        "UPDATE setup_numbers SET verified = false WHERE verified AND NOT EXISTS ("
        "SELECT 1 FROM verified_senders v "
        "WHERE v.e164 = setup_numbers.e164 AND v.account_id = setup_numbers.account_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table('verified_senders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_verified_senders_account_id'))
    op.drop_table('verified_senders')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('last_used_at')
