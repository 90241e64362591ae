"""Changes a node tells the other nodes at once (issue 23): PostgreSQL LISTEN/NOTIFY.

A node that commits a change of shared state sends `pg_notify(channel, payload)` in the same
transaction (PostgreSQL delivers it at commit, to every session listening). `PgListener`
holds one asyncpg connection of its own, listening on the channels; each notification calls
the channel's callbacks on the event loop (the payload names its sender, so a node skips its
own). A broken connection is opened again after a pause, and then every callback is called
with an empty payload (changes may have been missed meanwhile: read again); each node's poll
stays the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger("afterbeep.db.notify")

WORK_ITEMS_CHANNEL = "afterbeep_work_items"  # payload: the sender's origin
AGENT_STATE_CHANNEL = "afterbeep_agent_state"  # payload: "<node id> <account id> <user id>"
RECONNECT_SEC = 2.0


async def notify(conn: AsyncConnection, channel: str, payload: str) -> None:
    """Tell the listening nodes at commit (PostgreSQL only; on SQLite, one process, nothing)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_notify(channel, payload)))


def _setter(event: asyncio.Event) -> Callable[[Any], None]:
    return lambda _conn: event.set()


class PgListener:
    def __init__(self, url: str) -> None:
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(False)
        self._callbacks: dict[str, list[Callable[[str], None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # set while the connection listens
        self.backend_pid: int | None = None  # the listening session's, on the server
        self._retry = asyncio.Event()

    def on(self, channel: str, callback: Callable[[str], None]) -> None:
        self._callbacks.setdefault(channel, []).append(callback)

    async def start(self) -> None:
        """Listen (in the background, again after a break); returns once first listening or
        after the first failure (the poll covers a node that cannot listen)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pg-listener")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.listening.wait(), 10)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def retry_now(self) -> None:
        """Listen again now, not after the pause (a broken connection)."""
        self._retry.set()

    def _deliver(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        for callback in self._callbacks.get(channel, ()):
            try:
                callback(payload)
            except Exception:  # one listener's bug must not stop the others
                log.exception("a change notification on %s failed", channel)

    async def _run(self) -> None:
        first = True
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(_setter(lost))
                for channel in self._callbacks:
                    await conn.add_listener(channel, self._deliver)
                self.backend_pid = conn.get_server_pid()
                self.listening.set()
                if not first:  # what changed while nobody listened is read again
                    for channel in self._callbacks:
                        self._deliver(conn, 0, channel, "")
                first = False
                await lost.wait()
                log.warning("change notifications: connection lost; listening again")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("change notifications: cannot listen (%s); retrying", exc)
                self.listening.set()  # start() waits no longer
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            self.listening.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._retry.wait(), RECONNECT_SEC)
            self._retry.clear()
