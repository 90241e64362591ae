"""Work items routed across two nodes on one PostgreSQL: what the shared queues cost the database
(issue 23).

    .venv/bin/python -m benchmarks.queue_pg --items 500 --agents 20 [--rate 50]
        [--database-url postgresql://...] [--json FILE] [--poll-only]

Two in-process runtimes `n1` and `n2` (as `afterbeep cluster run`'s nodes: a node id each, one
database; no SIP, no HTTP) route `--items` work items (voicemails) to `--agents` agents of one
queue, placed alternately on `n1` and `n2` at `--rate` a second. Each agent answers on one node
(agents 0 and 1 on n1, 2 and 3 on n2...), so about half the offers are made on the node that
does not hold the agent's feed, which hears of them by the change notifications (LISTEN/NOTIFY): it accepts at
once, then completes (``--poll-only``: no notifications, it learns by its 5 s poll; the
A/B of what notifications cost). Without ``--database-url`` a PostgreSQL cluster is started here with
``pg_stat_statements`` loaded.

Reported per item: statements the nodes sent (counted on their connections: SQLAlchemy's
``before_cursor_execute``), transactions committed in the database (``pg_stat_database``), and
the PostgreSQL processes' CPU seconds (the postmaster's own and its reaped children's, plus its
live children's, from /proc: the server must run on this machine); with ``pg_stat_statements``
loaded, also the statements the server executed and the most frequent ones; and the time from
each offer (its `offered_at`) to its agent's feed, either node. Checked: every item
completed, no item ever accepted twice, no item offered to two agents at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import event

from afterbeep.app import Runtime
from afterbeep.config import Settings
from afterbeep.domain.errors import Conflict, NotFound
from afterbeep.domain.ids import new_id
from afterbeep.domain.queues import AgentStatus, QueueMember, QueueSettings
from afterbeep.domain.users import User
from afterbeep.domain.work_items import OfferStatus, WorkItemState
from afterbeep.services.contact_center import Channel, WorkRequest
from afterbeep.services.work_items import OFFERED, FeedEvent

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    items: int
    agents: int
    notify: bool = True  # False: the other node learns by its poll alone
    seconds: float = 0.0
    completed: int = 0
    double_accepts: int = 0
    overlapping_offers: int = 0
    lost_races: int = 0  # an offer withdrawn or timed out before its agent answered
    statements: dict[str, int] = field(default_factory=dict)  # by node
    statements_per_item: float = 0.0
    commits_per_item: float = 0.0
    pg_cpu_seconds: float = 0.0
    pg_cpu_ms_per_item: float = 0.0
    nodes_cpu_seconds: float = 0.0  # this process (both runtimes and the agents)
    notifications: dict[str, int] = field(default_factory=dict)  # taken, by node
    server_statements_per_item: float | None = None  # pg_stat_statements
    top_statements: list[tuple[int, str]] = field(default_factory=list)
    # From an offer (its `offered_at`) to its agent's feed: p50, p99, max; of items placed on
    # the node that does not hold the agent's feed (their first offer is made there)
    offer_to_feed_ms: dict[str, float] = field(default_factory=dict)
    placed_elsewhere_to_feed_ms: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            self.completed == self.items
            and self.double_accepts == 0
            and self.overlapping_offers == 0
        )


def spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    return {
        "n": len(ordered),
        "p50": round(ordered[len(ordered) // 2], 1),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        "max": round(ordered[-1], 1),
    }


def postgres_cpu_seconds(postmaster: int) -> float:
    """CPU of the postmaster, its reaped children and its live children (/proc)."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster:
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        elif ppid == postmaster:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


class Pg:
    """The benchmark's look at the server: its postmaster, counters, pg_stat_statements."""

    def __init__(self, conn: Any, postmaster: int, statements: bool) -> None:
        self.conn, self.postmaster, self.statements = conn, postmaster, statements

    @classmethod
    async def open(cls, url: str) -> Pg:
        conn = await asyncpg.connect(url)
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        stat = await asyncio.to_thread(Path(f"/proc/{backend}/stat").read_text)
        postmaster = int(stat.rsplit(")", 1)[1].split()[1])
        statements = False
        with contextlib.suppress(asyncpg.PostgresError):
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await conn.fetchval("SELECT count(*) FROM pg_stat_statements")
            statements = True
        return cls(conn, postmaster, statements)

    async def reset(self) -> None:
        if self.statements:
            await self.conn.execute("SELECT pg_stat_statements_reset()")

    async def commits(self) -> int:
        await self.conn.execute("SELECT pg_stat_force_next_flush()")
        await self.conn.execute("SELECT pg_stat_clear_snapshot()")
        found = await self.conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return int(found)

    async def executed(self) -> tuple[int, list[tuple[int, str]]]:
        rows = await self.conn.fetch(
            "SELECT s.calls, s.query FROM pg_stat_statements s"
            " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()"
            " ORDER BY s.calls DESC"
        )
        ours = [r for r in rows if "pg_stat" not in r["query"]]
        top = [(int(r["calls"]), " ".join(r["query"].split())[:160]) for r in ours[:12]]
        return sum(int(r["calls"]) for r in ours), top


@contextlib.contextmanager
def own_postgres() -> Iterator[str]:
    """A PostgreSQL cluster started here (the tests' fixture) with pg_stat_statements loaded."""
    from tests.fixtures.postgres import _binary, postgres_cluster

    with postgres_cluster() as url:

        async def preload() -> str:
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(
                    "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
                )
                return str(await conn.fetchval("SHOW data_directory"))
            finally:
                await conn.close()

        data = asyncio.run(preload())
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [*prefix, _binary("pg_ctl"), "-D", data, "-l", str(Path(data).parent / "log"),
             "-w", "-t", "60", "restart"],
            check=True, capture_output=True, env={**os.environ, "LC_ALL": "C.UTF-8"},
        )  # fmt: skip
        yield url


def count_statements(rt: Runtime) -> Counter[str]:
    counted: Counter[str] = Counter()

    def seen(*_: Any) -> None:
        counted["statements"] += 1

    event.listen(rt.db.engine.sync_engine, "before_cursor_execute", seen)
    return counted


@contextlib.asynccontextmanager
async def two_nodes(
    database_url: str, data_dir: Path, notify: bool = True
) -> AsyncIterator[list[Runtime]]:
    started: list[Runtime] = []
    try:
        for node_id in ("n1", "n2"):
            settings = Settings(
                database_url=database_url,
                data_dir=data_dir / node_id,
                node_id=node_id,
                sip_addr="127.0.0.1:0",
                smtp_url="smtp://127.0.0.1:9",
                secret_key="queue-pg-benchmark-" + "x" * 32,
                transcribe=False,
            )
            rt = Runtime(settings)
            started.append(rt)
            await rt.start(workers=False)
            if not notify and rt.changes is not None:  # the poll alone (A/B)
                await rt.changes.stop()
            await rt.work_items.start()
        yield started
    finally:
        for rt in reversed(started):
            await rt.stop()


class Agent:
    def __init__(self, rt: Runtime, account_id: str, user_id: str, result: Result) -> None:
        self.rt, self.account_id, self.user_id, self.result = rt, account_id, user_id, result
        self.feed = rt.work_items.subscribe(account_id, user_id)
        self.delays: list[tuple[str, float]] = []  # (item, ms)

    async def run(self, done: asyncio.Event) -> None:
        work = self.rt.work_items
        while not done.is_set():
            got: FeedEvent | None = await self.feed.get()
            if got is None:
                return
            if got.event != OFFERED or got.offer is None or got.offer.agent_id != self.user_id:
                continue
            delay = (datetime.now(UTC) - got.offer.offered_at).total_seconds() * 1000
            self.delays.append((got.item.id, delay))
            try:
                await work.accept(self.account_id, self.user_id, got.offer.id)
                await work.complete(self.account_id, self.user_id, got.item.id, None)
            except (Conflict, NotFound):
                self.result.lost_races += 1


async def check(rt: Runtime, account_id: str, ids: list[str], result: Result) -> None:
    """Every item completed, accepted once, never offered to two agents at once."""
    async with rt.uow() as uow:
        for item_id in ids:
            item = await uow.work_items.get(account_id, item_id)
            offers = await uow.work_items.offers(account_id, item_id)
            if item is not None and item.state is WorkItemState.COMPLETED:
                result.completed += 1
            if sum(o.status is OfferStatus.ACCEPTED for o in offers) > 1:
                result.double_accepts += 1
            spans = sorted((o.offered_at, o.ended_at or o.offered_at) for o in offers)
            if any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans)):
                result.overlapping_offers += 1


async def run(
    database_url: str, items: int, agents: int, rate: float, notify: bool = True
) -> Result:
    result = Result(items, agents, notify)
    pg = await Pg.open(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    with tempfile.TemporaryDirectory(prefix="afterbeep-queue-pg-") as tmp:
        async with two_nodes(database_url, Path(tmp), notify) as nodes:
            n1 = nodes[0]
            account_id = (await n1.accounts.create_account("Bench")).account_id
            users = [new_id("usr") for _ in range(agents)]
            now = datetime.now(UTC)
            async with n1.uow() as uow:
                for n, user_id in enumerate(users):
                    user = User(user_id, account_id, f"7{n:03d}", "", now, now, is_agent=True)
                    await uow.users.add(user)
            svc = n1.api_services()
            queue = await svc.queues.create(
                account_id, "Reps", QueueSettings(), [QueueMember(u) for u in users]
            )
            for user_id in users:
                await svc.queues.set_status(account_id, user_id, AgentStatus.AVAILABLE)
            counters = {rt.settings.node_id or "": count_statements(rt) for rt in nodes}
            # Agents 0 and 1 on n1, 2 and 3 on n2...: items placed in turn on n1 and n2 go to
            # agents in turn (longest idle) on the node that placed them and on the other.
            crowd = [
                Agent(nodes[(i // 2) % 2], account_id, user_id, result)
                for i, user_id in enumerate(users)
            ]
            done = asyncio.Event()
            tasks = [asyncio.create_task(a.run(done)) for a in crowd]
            await pg.reset()
            commits, pg_cpu = await pg.commits(), postgres_cpu_seconds(pg.postmaster)
            cpu, started = time.process_time(), time.monotonic()
            for counter in counters.values():
                counter.clear()
            ids = []
            placed_on: dict[str, Runtime] = {}
            for index in range(items):
                rt = nodes[index % 2]
                placed = await rt.work_items.place(
                    WorkRequest(account_id, new_id("vc"), queue.id, Channel.VOICEMAIL, 5)
                )
                ids.append(placed.work_item_id)
                placed_on[placed.work_item_id] = rt
                await asyncio.sleep(1 / rate)
            deadline = time.monotonic() + 60 + items / 5
            while time.monotonic() < deadline:
                async with n1.uow() as uow:
                    open_items = await uow.work_items.open_items()
                if not open_items:
                    break
                await asyncio.sleep(0.2)
            result.seconds = round(time.monotonic() - started, 2)
            result.nodes_cpu_seconds = round(time.process_time() - cpu, 2)
            result.pg_cpu_seconds = round(postgres_cpu_seconds(pg.postmaster) - pg_cpu, 2)
            result.statements = {node: c["statements"] for node, c in counters.items()}
            spent_commits = await pg.commits() - commits
            if pg.statements:
                executed, result.top_statements = await pg.executed()
                result.server_statements_per_item = round(executed / items, 1)
            done.set()
            for rt in nodes:
                rt.work_items.close_feeds()
            await asyncio.gather(*tasks, return_exceptions=True)
            result.notifications = {
                rt.settings.node_id or "": rt.work_items.notifications for rt in nodes
            }
            await check(n1, account_id, ids, result)
            result.offer_to_feed_ms = spread([d for a in crowd for _, d in a.delays])
            result.placed_elsewhere_to_feed_ms = spread(
                [d for a in crowd for item, d in a.delays if placed_on[item] is not a.rt]
            )
    await pg.conn.close()
    result.statements_per_item = round(sum(result.statements.values()) / items, 1)
    result.commits_per_item = round(spent_commits / items, 1)
    result.pg_cpu_ms_per_item = round(result.pg_cpu_seconds * 1000 / items, 2)
    return result


async def fresh_database(url: str) -> str:
    """A new database on the server of `url`, migrated by the first node that starts."""
    name = "queue_pg_" + secrets.token_hex(6)
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.rsplit("/", 1)[0] + "/" + name


def report(result: Result) -> str:
    lines = [
        f"items {result.items}, agents {result.agents}, 2 nodes"
        f"{'' if result.notify else ' (poll only)'}: {result.seconds} s,"
        f" completed {result.completed}, accepted twice {result.double_accepts},"
        f" offered to two at once {result.overlapping_offers}, lost races {result.lost_races}",
        f"statements sent per item {result.statements_per_item} (by node {result.statements}),"
        f" commits per item {result.commits_per_item}",
        f"PostgreSQL CPU {result.pg_cpu_seconds} s ({result.pg_cpu_ms_per_item} ms per item);"
        f" the nodes' process {result.nodes_cpu_seconds} s;"
        f" notifications taken {result.notifications}",
        f"offer to its agent's feed (ms): {result.offer_to_feed_ms};"
        f" of items placed on the other node: {result.placed_elsewhere_to_feed_ms}",
    ]
    if result.server_statements_per_item is not None:
        lines.append(f"pg_stat_statements: {result.server_statements_per_item} per item; top:")
        lines += [f"  {calls:7d}  {query}" for calls, query in result.top_statements]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50.0, help="items placed per second")
    parser.add_argument("--database-url", help="a PostgreSQL server (a new database is made)")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--poll-only", action="store_true", help="no change notifications (A/B): the 5 s poll"
    )
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        server = args.database_url or stack.enter_context(own_postgres())
        url = asyncio.run(fresh_database(server))
        result = asyncio.run(run(url, args.items, args.agents, args.rate, not args.poll_only))
    print(report(result))
    if args.json is not None:
        args.json.write_text(json.dumps({**asdict(result), "ok": result.ok}, indent=2))
    sys.exit(0 if result.ok else 1)
