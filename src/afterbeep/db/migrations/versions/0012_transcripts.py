"""transcripts: message and media transcripts, the transcription job outbox, full-text search

Revision ID: 0012_transcripts
Revises: 0009
Create Date: 2026-12-07 00:00:00

Search: on PostgreSQL, GIN indexes on `to_tsvector('simple', transcript ->> 'text')` of messages
and media (the repository's query repeats that exact expression). On SQLite, an FTS5 index
(`transcripts_fts`) over `transcript_texts` (owner id, account, text; an INTEGER PRIMARY KEY, so
its rowids survive VACUUM), which triggers on `messages` and `media` keep in step with their
`transcript` column. A later migration that rebuilds either table in batch mode (copy and
rename) drops its triggers: it must run `create_sqlite_triggers` again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import afterbeep.db.tables

revision = '0012_transcripts'
down_revision = '0011_flow_speech'
branch_labels = None
depends_on = None

OWNERS = ("messages", "media")
PRE_EXISTING = "left before transcription was installed"


def _sqlite_triggers(table: str) -> list[str]:
    text = "json_extract(new.transcript, '$.text')"
    return [
        f"""CREATE TRIGGER {table}_transcript_ai AFTER INSERT ON {table}
        WHEN new.transcript IS NOT NULL BEGIN
            INSERT INTO transcript_texts (owner_id, account_id, body)
            VALUES (new.id, new.account_id, coalesce({text}, ''));
        END""",
        f"""CREATE TRIGGER {table}_transcript_au AFTER UPDATE OF transcript ON {table} BEGIN
            DELETE FROM transcript_texts WHERE owner_id = old.id;
            INSERT INTO transcript_texts (owner_id, account_id, body)
            SELECT new.id, new.account_id, coalesce({text}, '') WHERE new.transcript IS NOT NULL;
        END""",
        f"""CREATE TRIGGER {table}_transcript_ad AFTER DELETE ON {table}
        WHEN old.transcript IS NOT NULL BEGIN
            DELETE FROM transcript_texts WHERE owner_id = old.id;
        END""",
    ]


def create_sqlite_triggers() -> None:
    for table in OWNERS:
        for statement in _sqlite_triggers(table):
            op.execute(statement)


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('transcript', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('transcription_status', sa.String(length=16), server_default='skipped', nullable=False))
        batch_op.add_column(sa.Column('transcription_reason', sa.String(length=500), nullable=True))
    op.execute(
        sa.text("UPDATE messages SET transcription_reason = :reason").bindparams(reason=PRE_EXISTING)
    )
    with op.batch_alter_table('media', schema=None) as batch_op:
        batch_op.add_column(sa.Column('transcript', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('transcription_status', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('transcription_reason', sa.String(length=500), nullable=True))

    op.create_table('transcription_jobs',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('subject_kind', sa.String(length=16), nullable=False),
    sa.Column('subject_id', sa.String(length=40), nullable=False),
    sa.Column('language', sa.String(length=35), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', afterbeep.db.tables.UtcDateTime(timezone=True), nullable=False),
    sa.Column('claimed_until', afterbeep.db.tables.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.Column('created_at', afterbeep.db.tables.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', afterbeep.db.tables.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_transcription_jobs_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transcription_jobs')),
    sa.UniqueConstraint('subject_kind', 'subject_id', name=op.f('uq_transcription_jobs_subject_kind_subject_id'))
    )
    with op.batch_alter_table('transcription_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_transcription_jobs_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_transcription_jobs_due', ['status', 'next_attempt_at'], unique=False)

    if op.get_bind().dialect.name == 'postgresql':
        for table in OWNERS:
            op.execute(
                f"CREATE INDEX ix_{table}_transcript_search ON {table} USING gin "
                f"(to_tsvector('simple', coalesce(transcript ->> 'text', '')))"
            )
    else:
        op.execute(
            "CREATE TABLE transcript_texts (id INTEGER PRIMARY KEY, "
            "owner_id VARCHAR(40) NOT NULL UNIQUE, account_id VARCHAR(40) NOT NULL, "
            "body TEXT NOT NULL)"
        )
        op.execute(
            "CREATE VIRTUAL TABLE transcripts_fts USING fts5(body, content='transcript_texts', "
            "content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
        )
        op.execute(
            "CREATE TRIGGER transcript_texts_ai AFTER INSERT ON transcript_texts BEGIN "
            "INSERT INTO transcripts_fts (rowid, body) VALUES (new.id, new.body); END"
        )
        op.execute(
            "CREATE TRIGGER transcript_texts_ad AFTER DELETE ON transcript_texts BEGIN "
            "INSERT INTO transcripts_fts (transcripts_fts, rowid, body) "
            "VALUES ('delete', old.id, old.body); END"
        )
        create_sqlite_triggers()


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table in OWNERS:
            op.execute(f"DROP INDEX ix_{table}_transcript_search")
    else:
        for table in OWNERS:
            for suffix in ("ai", "au", "ad"):
                op.execute(f"DROP TRIGGER {table}_transcript_{suffix}")
        op.execute("DROP TABLE transcripts_fts")
        op.execute("DROP TABLE transcript_texts")
    with op.batch_alter_table('transcription_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_transcription_jobs_due')
        batch_op.drop_index(batch_op.f('ix_transcription_jobs_account_id'))
    op.drop_table('transcription_jobs')
    for table in ("media", "messages"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('transcription_reason')
            batch_op.drop_column('transcription_status')
            batch_op.drop_column('transcript')
