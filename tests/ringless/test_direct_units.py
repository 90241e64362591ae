"""The send path's fast units of work (`unit_of_work_factory(..., direct=True)`) and its
in-memory uploads: same results as the ordinary units, on the same SQLite file."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from afterbeep.db import engine as engine_module
from afterbeep.db import tables as t
from afterbeep.db.engine import Database, DirectConnection
from afterbeep.db.repos.webhooks import SqlWebhookRepo
from afterbeep.db.uow import unit_of_work_factory
from afterbeep.domain.accounts import Account
from afterbeep.domain.errors import PayloadTooLarge
from afterbeep.domain.webhooks import Webhook
from afterbeep.services.media import StagedUpload

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def account(n: int) -> Account:
    return Account(id=f"acc_01jf18ah3jeb5w6dfp27sgjs{n:02d}", name=f"A{n}", created_at=NOW)


async def accounts_in(db: Database) -> int:
    async with db.begin(readonly=True) as conn:
        return int((await conn.execute(select(func.count()).select_from(t.accounts))).scalar_one())


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'a.db'}")
    await database.migrate()
    yield database
    await database.close()


async def test_direct_units_read_and_write_the_same_database(db: Database) -> None:
    assert db.direct_engine is not None
    writes = unit_of_work_factory(db, direct=True)
    reads = unit_of_work_factory(db, readonly=True, direct=True)
    async with writes() as uow:
        await uow.accounts.add(account(1))
    # Committed when the block is left: the ordinary (aiosqlite) connections see it.
    assert await accounts_in(db) == 1
    async with db.begin() as conn:
        await conn.execute(
            insert(t.accounts).values(id=account(2).id, name="A2", created_at=NOW)
        )
    async with reads() as uow:
        assert await uow.accounts.get(account(2).id) == account(2)
        assert await uow.accounts.get(account(1).id) == account(1)


async def test_a_failing_direct_unit_leaves_nothing(db: Database) -> None:
    writes = unit_of_work_factory(db, direct=True)
    with pytest.raises(RuntimeError):
        async with writes() as uow:
            await uow.accounts.add(account(1))
            raise RuntimeError("refused after the insert")
    assert await accounts_in(db) == 0
    async with writes() as uow:  # the writer queue and the connection were given back
        await uow.accounts.add(account(1))
    assert await accounts_in(db) == 1


async def test_direct_write_waits_for_another_process_lock_off_the_loop(
    db: Database, tmp_path: Path
) -> None:
    """Another connection (as another process would) holds the write lock: the unit must wait
    for it on the writer thread, the event loop staying free, and then commit."""
    other = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    writes = unit_of_work_factory(db, direct=True)

    async def write() -> None:
        async with writes() as uow:
            await uow.accounts.add(account(1))

    task = asyncio.create_task(write())
    try:
        for _ in range(20):  # the loop keeps running while the unit waits
            await asyncio.sleep(0.01)
        assert not task.done()
        other.execute("COMMIT")
        await asyncio.wait_for(task, timeout=20)
    finally:
        other.close()
        task.cancel()
    assert await accounts_in(db) == 1


async def test_cancelled_while_waiting_for_the_lock_gives_it_back(
    db: Database, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    writes = unit_of_work_factory(db, direct=True)

    async def write(n: int) -> None:
        async with writes() as uow:
            await uow.accounts.add(account(n))

    task = asyncio.create_task(write(1))
    try:
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        other.execute("COMMIT")
        # The writer thread got the lock after the cancel; it must have been let go again.
        await asyncio.wait_for(write(2), timeout=20)
    finally:
        other.close()
    assert await accounts_in(db) == 1


async def test_direct_writers_queue_with_ordinary_writers(db: Database) -> None:
    writes = unit_of_work_factory(db, direct=True)
    plain = unit_of_work_factory(db)

    async def one(n: int) -> None:
        async with (writes if n % 2 else plain)() as uow:
            await uow.accounts.add(account(n))
            await asyncio.sleep(0)

    await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(20))), timeout=60)
    assert await accounts_in(db) == 20


async def test_direct_publish_wakes_the_webhook_watchers(db: Database) -> None:
    plain = unit_of_work_factory(db)
    writes = unit_of_work_factory(db, direct=True)
    async with plain() as uow:
        await uow.accounts.add(account(1))
        await uow.webhooks.add(
            Webhook(
                id="wh_01jf18ah3jeb5w6dfp27sgjsbt",
                account_id=account(1).id,
                url="http://127.0.0.1:9/hook",
                events=("voicemail.status",),
                secret="s",
                created_at=NOW,
            )
        )
    woken: list[int] = []
    async with db.begin() as conn:
        unwatch = SqlWebhookRepo(conn).watch_published(lambda: woken.append(1))
    try:
        async with writes() as uow:
            await uow.events.publish(account(1).id, "voicemail.status", {"status": "accepted"})
        assert woken == [1]
        async with writes() as uow:  # nothing published: no wake-up
            await uow.accounts.get(account(1).id)
        assert woken == [1]
    finally:
        unwatch()


async def test_direct_commits_are_checkpointed(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Direct connections do not checkpoint at commit; every CHECKPOINT_EVERY commits a passive
    checkpoint does, so the WAL is copied into the database file as it grows."""
    monkeypatch.setattr(engine_module, "CHECKPOINT_EVERY", 5)
    writes = unit_of_work_factory(db, direct=True)
    for n in range(5):
        async with writes() as uow:
            await uow.accounts.add(account(n))
    checkpoint = db._checkpoint
    assert checkpoint is not None
    await asyncio.wait_for(asyncio.wrap_future(checkpoint), timeout=20)
    # The database file alone (immutable: the WAL is not read) holds the five accounts.
    probe = sqlite3.connect(f"file:{tmp_path / 'a.db'}?immutable=1", uri=True)
    try:
        assert probe.execute("SELECT count(*) FROM accounts").fetchone() == (5,)
    finally:
        probe.close()


async def test_in_memory_database_falls_back_to_ordinary_units() -> None:
    db = Database("sqlite://")
    assert db.direct_engine is None
    async with db.begin_direct() as conn:
        assert not isinstance(conn, DirectConnection)
    await db.close()


# -- uploads --------------------------------------------------------------------------------


async def test_small_upload_stays_in_memory(tmp_path: Path) -> None:
    upload = StagedUpload(tmp_path, max_bytes=1000, memory_bytes=100)
    with upload:
        await upload.write(b"a" * 60)
        await upload.write(b"b" * 40)
        assert upload.data == b"a" * 60 + b"b" * 40
        assert os.listdir(tmp_path) == []
        assert upload.sha256 == hashlib.sha256(upload.data).hexdigest()
        upload.close()  # materialised for callers that read a file
        assert upload.path.read_bytes() == b"a" * 60 + b"b" * 40
        assert upload.data is None
    assert os.listdir(tmp_path) == []


async def test_large_upload_spills_to_a_hashed_temp_file(tmp_path: Path) -> None:
    upload = StagedUpload(tmp_path, max_bytes=1000, memory_bytes=100)
    with upload:
        await upload.write(b"a" * 80)
        await upload.write(b"b" * 80)
        assert upload.data is None
        await upload.write(b"c" * 10)
        with pytest.raises(PayloadTooLarge):
            await upload.write(b"d" * 900)
        upload.close()
        body = b"a" * 80 + b"b" * 80 + b"c" * 10
        assert upload.size == len(body)
        assert upload.path.read_bytes() == body
        assert upload.sha256 == hashlib.sha256(body).hexdigest()
    assert os.listdir(tmp_path) == []
