"""The database handle: an async engine for SQLite (default) or PostgreSQL, and migrations.

On a SQLite file there is also a plain (synchronous) engine for `begin_direct`: units of work on
the hot request path (the API-key look-up, accepting a send) whose statements run on a
`sqlite3` connection directly instead of through aiosqlite. aiosqlite takes three or four
thread hops per statement and SQLAlchemy's async layer a greenlet switch on top (about 1 ms of
CPU per statement, against 0.05 ms for the same statement on the plain engine).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from afterbeep.db.tables import tolerant_json_loads

log = logging.getLogger("afterbeep.db")
BUSY_TIMEOUT_MS = 30_000
CHECKPOINT_EVERY = 100  # direct commits between passive checkpoints (each adds a few pages)

MIGRATIONS = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """Pick the async driver for plain `sqlite://` and `postgresql://` URLs."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def describe_url(url: str) -> str:
    """The database for the operator: a SQLite file's path, another URL without its password."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        return parsed.database or ":memory:"
    return parsed.render_as_string(hide_password=True)


async def database_exists(url: str) -> bool:
    """Whether `url` names a database afterbeep already set up (so opening it creates none)."""
    parsed = make_url(normalise_url(url))
    if parsed.drivername.startswith("sqlite"):
        database = parsed.database
        if database in (None, "", ":memory:"):
            return False
        return await asyncio.to_thread(os.path.exists, str(database))
    engine = create_async_engine(parsed)
    try:
        async with engine.connect() as conn:
            return bool(await conn.run_sync(lambda c: inspect(c).has_table("alembic_version")))
    finally:
        await engine.dispose()


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            database = make_url(self.url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
            # asyncpg decodes JSON columns itself: a row it cannot decode must not fail a query.
            kwargs["json_deserializer"] = tolerant_json_loads
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin_immediate)
        # SQLite allows one writer; queue writers here rather than failing with "database is locked".
        self._sqlite_writer = asyncio.Lock() if self.is_sqlite else None
        self.direct_engine: Engine | None = None
        self._direct_writer: ThreadPoolExecutor | None = None
        self._direct_commits = 0
        self._checkpoint: Future[None] | None = None
        if self.is_sqlite and make_url(self.url).database not in (None, "", ":memory:"):
            # Overflow unbounded: a read-only direct unit runs on the event loop, which must
            # never block waiting for a pooled connection.
            self.direct_engine = create_engine(
                make_url(self.url).set(drivername="sqlite+pysqlite"),
                connect_args={"timeout": 30},
                pool_size=5,
                max_overflow=-1,
            )
            event.listen(self.direct_engine, "connect", _sqlite_pragmas)
            event.listen(self.direct_engine, "connect", _no_autocheckpoint)
            event.listen(self.direct_engine, "begin", _sqlite_begin_raw)

    @asynccontextmanager
    async def begin(self, *, readonly: bool = False) -> AsyncIterator[AsyncConnection]:
        """A transaction: committed when the block ends, rolled back on error.

        `readonly` transactions on SQLite skip the writer queue and start deferred, so look-ups
        on the call path (routing an INVITE) never wait behind message commits (WAL lets readers
        run beside the one writer).
        """
        if readonly and self._sqlite_writer is not None:
            async with self.engine.connect() as conn:
                conn = await conn.execution_options(afterbeep_readonly=True)
                async with conn.begin():
                    yield conn
        elif self._sqlite_writer is not None:
            async with self._sqlite_writer, self.engine.begin() as conn:
                yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn

    @asynccontextmanager
    async def begin_direct(
        self, *, readonly: bool = False
    ) -> AsyncIterator[AsyncConnection | DirectConnection]:
        """A transaction for the hot request path: `begin` everywhere but on a SQLite file.

        There, a unit runs its statements on the event loop itself, each in tens of
        microseconds, and never waits there: a `readonly` unit because WAL readers take no lock;
        a writing one because it takes its place in the writer queue like any other writer,
        then tries `BEGIN IMMEDIATE` without waiting (when another process holds the write lock,
        it waits for it on the writer thread instead), and then holds the write lock: its
        statements and its COMMIT write to the WAL in the page cache (`synchronous=NORMAL`: no
        fsync at commit, as for every writer here). These connections never checkpoint at
        commit (that fsyncs the database file); every `CHECKPOINT_EVERY` commits a passive
        checkpoint runs on the writer thread. Both commit before the block is left, as `begin`
        does.
        """
        engine = self.direct_engine
        if engine is None:
            async with self.begin(readonly=readonly) as conn:
                yield conn
        elif readonly:
            with engine.connect() as sync:
                sync = sync.execution_options(afterbeep_readonly=True)
                with sync.begin():
                    yield DirectConnection(sync, self.engine)
        else:
            assert self._sqlite_writer is not None
            async with self._sqlite_writer:
                writing = _begin_now(engine) or await self._begin_on_writer(engine)
                try:
                    yield DirectConnection(writing, self.engine)
                except BaseException:
                    _rollback_and_close(writing)
                    raise
                _commit_and_close(writing)
            self._direct_commits += 1
            if self._direct_commits % CHECKPOINT_EVERY == 0:
                self._checkpoint_soon(engine)

    def _writer(self) -> ThreadPoolExecutor:
        if self._direct_writer is None:
            self._direct_writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        return self._direct_writer

    async def _begin_on_writer(self, engine: Engine) -> Connection:
        begun = asyncio.get_running_loop().run_in_executor(
            self._writer(), _connect_and_begin, engine
        )
        try:
            return await asyncio.shield(begun)
        except asyncio.CancelledError:
            # The thread still gets the write lock: give it back as soon as it has it.
            begun.add_done_callback(_release_begun)
            raise

    def _checkpoint_soon(self, engine: Engine) -> None:
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        self._checkpoint = self._writer().submit(_checkpoint, engine)
        self._checkpoint.add_done_callback(_log_checkpoint_failure)

    async def migrate(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade)

    async def close(self) -> None:
        await self.engine.dispose()
        if self.direct_engine is not None:
            self.direct_engine.dispose()
        if self._direct_writer is not None:
            self._direct_writer.shutdown(wait=True)
            self._direct_writer = None


class DirectConnection:
    """A plain SQLAlchemy connection behind the awaitable `execute` the repositories use; each
    statement runs on the event loop when awaited.

    `engine` is the async engine, so pool watchers (`watch_published`) register where every
    other unit of work checks its connections in; the unit of work fires them after a direct
    commit that published (`db.repos.webhooks.take_published`).
    """

    def __init__(self, sync: Connection, engine: AsyncEngine) -> None:
        self.sync = sync
        self.engine = engine

    @property
    def dialect(self) -> Any:
        return self.sync.dialect

    @property
    def info(self) -> dict[Any, Any]:
        return self.sync.info

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self.sync.execute(statement, parameters)


def _begin_now(engine: Engine) -> Connection | None:
    """A connection in a write transaction, or None when that would mean waiting for another
    process's write lock (busy timeout 0 for this one `BEGIN IMMEDIATE`)."""
    conn = engine.connect()
    try:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute("PRAGMA busy_timeout=0")
        try:
            conn.begin()
        finally:
            raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    except (OperationalError, sqlite3.OperationalError):
        # Busy (or failing: then the writer thread's attempt raises it with its full wait).
        conn.close()
        return None
    except BaseException:
        conn.close()
        raise
    return conn


def _checkpoint(engine: Engine) -> None:
    """A passive checkpoint (it waits for nobody), outside any transaction: on the raw
    connection, as SQLAlchemy would begin one first."""
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute("PRAGMA wal_checkpoint(PASSIVE)").close()


def _log_checkpoint_failure(done: Future[None]) -> None:
    if not done.cancelled() and (exc := done.exception()) is not None:
        log.warning("SQLite checkpoint failed: %s", exc)


def _connect_and_begin(engine: Engine) -> Connection:
    conn = engine.connect()
    try:
        conn.begin()
    except BaseException:
        conn.close()
        raise
    return conn


def _release_begun(done: asyncio.Future[Connection]) -> None:
    if not done.cancelled() and done.exception() is None:
        _rollback_and_close(done.result())


def _commit_and_close(conn: Connection) -> None:
    try:
        conn.commit()
    finally:
        conn.close()


def _rollback_and_close(conn: Connection) -> None:
    try:
        conn.rollback()
    finally:
        conn.close()


def alembic_config(connection: Any = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(sync_conn: Any) -> None:
    command.upgrade(alembic_config(sync_conn), "head")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin_raw(conn: Any) -> None:
    """`_sqlite_begin_immediate` straight on the DBAPI connection (no statement machinery)."""
    readonly = conn.get_execution_options().get("afterbeep_readonly", False)
    conn.connection.driver_connection.execute("BEGIN" if readonly else "BEGIN IMMEDIATE").close()


def _no_autocheckpoint(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


def _sqlite_begin_immediate(conn: Any) -> None:
    readonly = conn.get_execution_options().get("afterbeep_readonly", False)
    conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")
