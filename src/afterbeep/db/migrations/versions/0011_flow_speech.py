"""flow_versions.speech: the audio made for the texts a flow version speaks

Revision ID: 0011_flow_speech
Revises: 0009
Create Date: 2026-12-07 00:10:00

`{"<node id>/<field>": "<media id>"}`; versions saved before it speak nothing yet (`{}`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011_flow_speech'
down_revision = '0010_number_routing'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('flow_versions', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('speech', sa.JSON(), server_default=sa.text("'{}'"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table('flow_versions', schema=None) as batch_op:
        batch_op.drop_column('speech')
