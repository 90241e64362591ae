"""The database handle: SQLite writers queue, read-only look-ups do not wait behind them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from afterbeep.db import tables as t
from afterbeep.db.engine import Database
from afterbeep.db.uow import unit_of_work_factory
from afterbeep.domain.accounts import Account


async def test_readonly_lookup_runs_while_a_write_is_open(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    await db.migrate()
    writer_inside = asyncio.Event()
    release_writer = asyncio.Event()

    async def slow_writer() -> None:
        async with db.begin() as conn:
            await conn.execute(
                insert(t.accounts).values(id="acc_01jf18ah3jeb5w6dfp27sgjsbt", name="A", created_at=datetime.now(UTC))
            )
            writer_inside.set()
            await release_writer.wait()

    async def lookup() -> list[str]:
        async with db.begin(readonly=True) as conn:
            return [row.id for row in (await conn.execute(select(t.accounts))).all()]

    writer = asyncio.create_task(slow_writer())
    try:
        await writer_inside.wait()
        # The writer holds SQLite's write lock and our writer queue; a look-up must still answer
        # (and see only committed rows). The bound only turns a deadlock into a failure.
        assert await asyncio.wait_for(lookup(), timeout=20) == []
    finally:
        release_writer.set()
        await writer
    assert await lookup() == ["acc_01jf18ah3jeb5w6dfp27sgjsbt"]
    await db.close()


@pytest.mark.parametrize("direct", [False, True])
async def test_a_unit_that_raises_after_writing_keeps_nothing(tmp_path: Path, direct: bool) -> None:
    """Every request writes through units of work: one that fails after its writes (as a
    request that answers 500 does) must leave no row behind, on both SQLite paths."""
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    await db.migrate()
    unit = unit_of_work_factory(db, direct=direct)
    now = datetime.now(UTC)
    with pytest.raises(RuntimeError):
        async with unit() as uow:
            await uow.accounts.add(Account("acc_01jf18ah3jeb5w6dfp27sgjsbt", "A", now))
            raise RuntimeError("failed after the write")
    async with db.begin(readonly=True) as conn:
        assert (await conn.execute(select(t.accounts))).all() == []
    await db.close()
