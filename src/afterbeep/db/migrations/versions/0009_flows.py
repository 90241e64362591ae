"""flows: call flows and every saved version of their graph

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import afterbeep.db.tables

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('flows',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', afterbeep.db.tables.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', afterbeep.db.tables.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_flows_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_flows'))
    )
    with op.batch_alter_table('flows', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_flows_account_id'), ['account_id'], unique=False)

    op.create_table('flow_versions',
    sa.Column('flow_id', sa.String(length=40), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('graph', sa.JSON(), nullable=False),
    sa.Column('created_at', afterbeep.db.tables.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['flow_id'], ['flows.id'], name=op.f('fk_flow_versions_flow_id_flows')),
    sa.PrimaryKeyConstraint('flow_id', 'version', name=op.f('pk_flow_versions'))
    )


def downgrade() -> None:
    op.drop_table('flow_versions')
    with op.batch_alter_table('flows', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_flows_account_id'))
    op.drop_table('flows')
