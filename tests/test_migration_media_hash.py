"""Migration 0007 on a database written before it: copies of one file in an account (every CLI
send stored one) are merged into the oldest, what greeted with a later copy greets with the
oldest, and the unique index then holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.exc import IntegrityError

from afterbeep.db.engine import alembic_config

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def media_row(media_id: str, account_id: str, sha256: str, minutes: int) -> dict[str, object]:
    return {
        "id": media_id,
        "account_id": account_id,
        "name": media_id,
        "format": "mp3",
        "content_type": "audio/mpeg",
        "duration_ms": 12_000,
        "sample_rate": 16000,
        "channels": 1,
        "size_bytes": 1000,
        "sha256": sha256,
        "original_key": f"{account_id}/media/{media_id}/original.mp3",
        "telephony_key": f"{account_id}/media/{media_id}/telephony.wav",
        "created_at": T0 + timedelta(minutes=minutes),
    }


def test_copies_merge_into_the_oldest_and_stay_unique(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0004")
        meta = sa.MetaData()
        meta.reflect(conn)
        accounts, media, mailboxes = (meta.tables[n] for n in ("accounts", "media", "mailboxes"))
        for account_id in ("acc_a", "acc_b"):
            conn.execute(sa.insert(accounts).values(id=account_id, name=account_id, created_at=T0))
        conn.execute(
            sa.insert(media),
            [
                media_row("media_2", "acc_a", "f" * 64, 2),
                media_row("media_1", "acc_a", "f" * 64, 1),
                media_row("media_3", "acc_a", "f" * 64, 3),
                media_row("media_4", "acc_a", "e" * 64, 4),
                media_row("media_5", "acc_b", "f" * 64, 5),
            ],
        )
        conn.execute(
            sa.insert(mailboxes).values(
                id="mbx_1", account_id="acc_a", name="Desk", greeting_media_id="media_3",
                skip_instructions=False, quota_mb=200, language="en", timezone="UTC",
                max_message_seconds=120, min_message_seconds=1, silence_seconds=5,
                max_messages=100, attach_audio=False, created_at=T0, updated_at=T0,
            )
        )  # fmt: skip

    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
        rows = conn.execute(sa.text("SELECT id, stored_bytes FROM media ORDER BY id")).all()
        assert [(row.id, row.stored_bytes) for row in rows] == [
            ("media_1", 1000 + 44 + 12_000 * 16),
            ("media_4", 1000 + 44 + 12_000 * 16),
            ("media_5", 1000 + 44 + 12_000 * 16),
        ]
        greeting = conn.execute(sa.text("SELECT greeting_media_id FROM mailboxes")).scalar_one()
        assert greeting == "media_1"

    with pytest.raises(IntegrityError), engine.begin() as conn:
        media = sa.MetaData()
        media.reflect(conn, only=["media"])
        conn.execute(sa.insert(media.tables["media"]).values(media_row("media_6", "acc_a", "f" * 64, 6)))
