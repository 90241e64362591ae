"""Migration 0012_transcripts on SQLite: messages left before it read `skipped`; the FTS5 index
follows the `transcript` column through its triggers (insert, update, delete, on messages and
media alike); it goes back down."""

from __future__ import annotations

import json
from pathlib import Path

from alembic import command
from sqlalchemy import Connection, create_engine, inspect, text

from afterbeep.db.engine import alembic_config

NOW = "2026-12-01 10:00:00.000000"


def matches(conn: Connection, word: str) -> list[str]:
    query = text(
        "SELECT x.owner_id FROM transcripts_fts JOIN transcript_texts x "
        "ON x.id = transcripts_fts.rowid WHERE transcripts_fts MATCH :q ORDER BY x.owner_id"
    )
    return [row[0] for row in conn.execute(query, {"q": word})]


def transcript(words: str) -> str:
    return json.dumps({"text": words, "language": "en", "segments": [], "confidence": None})


def test_old_messages_are_skipped_the_index_follows_and_downgrade_works(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0009")
        conn.execute(text(f"INSERT INTO accounts (id, name, created_at) VALUES ('acc_a', 'x', '{NOW}')"))
        conn.execute(
            text(
                "INSERT INTO mailboxes (id, account_id, name, skip_instructions, quota_mb, language,"
                " timezone, max_message_seconds, min_message_seconds, silence_seconds, max_messages,"
                f" attach_audio, created_at, updated_at) VALUES ('vm_a', 'acc_a', 'b', 0, 10, 'en',"
                f" 'UTC', 60, 1, 5, 10, 1, '{NOW}', '{NOW}')"
            )
        )
        insert_message = (
            "INSERT INTO messages (id, account_id, mailbox_id, call_id, duration_ms, folder, read,"
            " size_bytes, audio_key, recovered, created_at, updated_at) VALUES"
            f" (:id, 'acc_a', 'vm_a', :id, 1000, 'new', 0, 10, 'k', 0, '{NOW}', '{NOW}')"
        )
        conn.execute(text(insert_message), {"id": "msg_old"})

        command.upgrade(alembic_config(conn), "0012_transcripts")
        row = conn.execute(
            text("SELECT transcription_status, transcription_reason, transcript FROM messages")
        ).one()
        assert tuple(row) == ("skipped", "left before transcription was installed", None)

        conn.execute(text(insert_message), {"id": "msg_new"})
        conn.execute(
            text("UPDATE messages SET transcript = :t WHERE id = 'msg_new'"),
            {"t": transcript("call me back tomorrow")},
        )
        assert matches(conn, "tomorrow") == ["msg_new"]
        conn.execute(
            text("UPDATE messages SET transcript = :t WHERE id = 'msg_new'"),
            {"t": transcript("see you on monday")},
        )
        assert matches(conn, "tomorrow") == [] and matches(conn, "monday") == ["msg_new"]
        conn.execute(
            text(
                "INSERT INTO media (id, account_id, name, format, content_type, duration_ms,"
                " sample_rate, channels, size_bytes, sha256, original_key, telephony_key,"
                f" created_at, stored_bytes, transcript) VALUES ('media_a', 'acc_a', 'n', 'WAV',"
                f" 'audio/wav', 1, 8000, 1, 1, 'h', 'o', 't', '{NOW}', 1, :t)"
            ),
            {"t": transcript("monday reminder")},
        )
        assert matches(conn, "monday") == ["media_a", "msg_new"]
        conn.execute(text("DELETE FROM messages WHERE id = 'msg_new'"))
        conn.execute(text("DELETE FROM media"))
        assert matches(conn, "monday") == []
        assert conn.execute(text("SELECT count(*) FROM transcript_texts")).scalar_one() == 0

        command.downgrade(alembic_config(conn), "0009")
        tables = inspect(conn).get_table_names()
        assert "transcription_jobs" not in tables and "transcript_texts" not in tables
        assert "transcript" not in {c["name"] for c in inspect(conn).get_columns("messages")}
        assert conn.execute(text("SELECT id FROM messages")).scalars().all() == ["msg_old"]
    engine.dispose()
