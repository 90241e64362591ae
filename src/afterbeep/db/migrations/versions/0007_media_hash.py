"""media: identical audio stored once per account, and the bytes each media takes

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-06 21:40:00

Rows of one account with the same sha256 are merged into the oldest before the unique index is
made: what referred to a later copy (greetings, sends, campaigns) refers to the oldest, and the
later rows go. Their objects stay in the store, unreferenced. `stored_bytes` of existing rows is
the original's size plus the rendition's (16 bytes a millisecond and a 44-byte header).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_REFERRERS = (('mailboxes', 'greeting_media_id'), ('voicemail_sends', 'media_id'), ('campaigns', 'media_id'))


def upgrade() -> None:
    op.add_column('media', sa.Column('stored_bytes', sa.BigInteger(), server_default=sa.text('0'), nullable=False))
    op.execute('UPDATE media SET stored_bytes = size_bytes + 44 + 16 * duration_ms')
    keep = (
        'SELECT k.id FROM media k WHERE k.account_id = media.account_id AND k.sha256 = media.sha256'
        ' ORDER BY k.created_at, k.id LIMIT 1'
    )
    duplicates = f'SELECT media.id FROM media WHERE media.id <> ({keep})'
    for table, column in _REFERRERS:
        op.execute(
            f'UPDATE {table} SET {column} = (SELECT ({keep}) FROM media WHERE media.id = {table}.{column})'
            f' WHERE {column} IN ({duplicates})'
        )
    op.execute(f'DELETE FROM media WHERE id IN ({duplicates})')
    op.create_index('uq_media_account_sha256', 'media', ['account_id', 'sha256'], unique=True)


def downgrade() -> None:
    op.drop_index('uq_media_account_sha256', table_name='media')
    op.drop_column('media', 'stored_bytes')
