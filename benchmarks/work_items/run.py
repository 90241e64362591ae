"""Work items routed to agents through the real HTTP API and their event streams (issue 18).

    .venv/bin/python -m benchmarks.work_items --items 1000 --agents 50 [--rate 50] [--handle-ms 200]
        [--decline 0.05] [--kill-after 400] [--database-url postgresql://...] [--json FILE] [--keep]

Starts `afterbeep serve` (SQLite in a temporary directory unless `--database-url`), creates an
account, `--agents` agent users in one queue (capacity 10, a voicemail weighs 3: three items at
once each), an agent token each. Every agent is a test client: its event stream
(`/v1/agents/me/events`) and its API; on `work_item.offered` it accepts (or declines, with
probability `--decline`), holds the item `--handle-ms`, and completes it. Items are routed with
`POST /v1/work-items` at `--rate` per second. With `--kill-after N`, the service is killed
(SIGKILL) once N items are completed and started again on the same data: the agents reconnect,
complete what they hold, and the run goes on. Checks, from every item's offers history read
back through the API: every item is there and completed, no agent held more than its capacity
at any time, no item was offered to two agents at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from ulid import ULID

BIN = Path(sys.executable).parent
CAPACITY = 10
VOICEMAIL_WEIGHT = 3
MAX_ITEMS = 20_000
MAX_AGENTS = 200


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    data_dir: Path
    database_url: str | None
    process: subprocess.Popen[bytes] | None = None
    url: str = ""
    starts: int = 0

    def env(self, port: int) -> dict[str, str]:
        env = {
            **os.environ,
            "AFTERBEEP_DATA_DIR": str(self.data_dir),
            "AFTERBEEP_HTTP_ADDR": f"127.0.0.1:{port}",
            "AFTERBEEP_SIP_ADDR": f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
            "AFTERBEEP_SMTP_URL": "smtp://127.0.0.1:9",
            "AFTERBEEP_TRANSCRIBE": "off",
            "AFTERBEEP_AMD_WORDS": "off",
            "AFTERBEEP_DELIVERY_ENABLED": "false",
            "AFTERBEEP_LOG_LEVEL": "WARNING",
            "AFTERBEEP_SECRET_KEY": "bench-secret-" + "x" * 32,
        }
        if self.database_url:
            env["AFTERBEEP_DATABASE_URL"] = self.database_url
        return env

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "afterbeep"), *args], env=self.env(free_port()), capture_output=True,
            text=True, timeout=120, check=True,
        )  # fmt: skip
        return done.stdout

    async def start(self) -> None:
        port = free_port()
        self.starts += 1
        log = (self.data_dir.parent / f"serve-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(  # noqa: ASYNC220  (returns at once)
            [str(BIN / "afterbeep"), "serve"],
            env=self.env(port),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"afterbeep serve exited {self.process.returncode}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(self.url + "/healthz", timeout=1)).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError("afterbeep serve did not come up")

    def cpu_seconds(self) -> float:
        """The service process's user + system CPU time so far."""
        if self.process is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Run:
    service: Service
    items: int
    handle_s: float
    decline: float
    kill_after: int | None
    posted_at: dict[str, float] = field(default_factory=dict)  # item -> when routed
    first_offer_seen: dict[str, float] = field(default_factory=dict)
    completed: set[str] = field(default_factory=set)
    accepted_by: dict[str, str] = field(default_factory=dict)
    killed_at: float | None = None
    cpu_before_kill: float = 0.0
    up: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    midway: asyncio.Event = field(default_factory=asyncio.Event)  # kill_after items completed
    errors: list[str] = field(default_factory=list)

    def mark_completed(self, item_id: str) -> None:
        self.completed.add(item_id)
        if self.kill_after is not None and len(self.completed) >= self.kill_after:
            self.midway.set()
        if len(self.completed) >= self.items:
            self.done.set()


class Agent:
    def __init__(self, run: Run, user_id: str, token: str) -> None:
        self.run = run
        self.user_id = user_id
        self.headers = {"Authorization": f"Bearer {token}"}
        self.handling: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.rng = random.Random(user_id)

    async def call(
        self, client: httpx.AsyncClient, method: str, path: str, **kw: Any
    ) -> httpx.Response | None:
        await self.run.up.wait()
        try:
            return await client.request(
                method, self.run.service.url + path, headers=self.headers, **kw
            )
        except httpx.TransportError:
            return None

    async def live(self, client: httpx.AsyncClient) -> None:
        """The event stream, reconnected after the service restarts."""
        while not self.run.done.is_set():
            await self.run.up.wait()
            held = await self.call(client, "GET", "/v1/agents/me/work-items")
            if held is not None and held.status_code == 200:
                for item in held.json()["items"]:
                    if item["state"] in ("assigned", "wrapping"):
                        self._spawn(client, self.finish(client, item["id"]))
            try:
                async with client.stream(
                    "GET", self.run.service.url + "/v1/agents/me/events", headers=self.headers,
                    timeout=httpx.Timeout(10, read=None),
                ) as response:  # fmt: skip
                    name = ""
                    async for line in response.aiter_lines():
                        if line.startswith("event: "):
                            name = line[7:]
                        elif line.startswith("data: ") and name == "work_item.offered":
                            self.offered(client, json.loads(line[6:]))
            except (httpx.TransportError, httpx.RemoteProtocolError):
                await asyncio.sleep(0.2)

    def _spawn(self, client: httpx.AsyncClient, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def offered(self, client: httpx.AsyncClient, item: dict[str, Any]) -> None:
        item_id = item["id"]
        now = time.monotonic()
        self.run.first_offer_seen.setdefault(item_id, now)
        if item_id in self.handling:
            return
        self.handling.add(item_id)
        self._spawn(client, self.handle(client, item_id, item["offer"]["id"]))

    async def handle(self, client: httpx.AsyncClient, item_id: str, offer_id: str) -> None:
        try:
            if self.rng.random() < self.run.decline:
                await self.call(client, "POST", f"/v1/agents/me/offers/{offer_id}/decline")
                return
            r = await self.call(client, "POST", f"/v1/agents/me/offers/{offer_id}/accept")
            if r is None or r.status_code != 200:
                return  # closed meanwhile (restart, timeout): it is offered again
            self.run.accepted_by[item_id] = self.user_id
            await self.finish(client, item_id)
        finally:
            self.handling.discard(item_id)

    async def finish(self, client: httpx.AsyncClient, item_id: str) -> None:
        await asyncio.sleep(self.run.handle_s * self.rng.uniform(0.5, 1.5))
        for _ in range(100):
            r = await self.call(
                client, "POST", f"/v1/agents/me/work-items/{item_id}/complete", json={"notes": "ok"}
            )
            if r is not None and r.status_code in (200, 409):
                self.run.mark_completed(item_id)
                return
            if r is not None and r.status_code == 404:
                return
            await asyncio.sleep(0.2)


async def setup(
    service: Service, agents: int
) -> tuple[str, dict[str, str], str, list[tuple[str, str]]]:
    created = json.loads(service.cli("account", "create", "Bench", "--json"))
    headers = {"Authorization": f"Bearer {created['api_key']}"}
    users: list[tuple[str, str]] = []
    async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=30) as http:
        user_ids = []
        for n in range(agents):
            r = await http.post("/v1/users", json={"username": f"{100 + n}", "is_agent": True})
            r.raise_for_status()
            user_ids.append(r.json()["id"])
        r = await http.post(
            "/v1/queues",
            json={"name": "Reps", "members": [{"user_id": u} for u in user_ids],
                  "work_offer_timeout_sec": 30},
        )  # fmt: skip
        r.raise_for_status()
        queue_id = r.json()["id"]
        for user_id in user_ids:
            r = await http.post(f"/v1/agents/{user_id}/tokens", json={"name": "bench"})
            r.raise_for_status()
            token = r.json()["token"]
            r = await http.patch(
                "/v1/agents/me",
                json={"status": "available"},
                headers={"Authorization": f"Bearer {token}"},
            )
            r.raise_for_status()
            users.append((user_id, token))
    return created["account_id"], headers, queue_id, users


async def produce(
    run: Run, client: httpx.AsyncClient, headers: dict[str, str], queue_id: str, rate: float
) -> None:
    start = time.monotonic()
    for n in range(run.items):
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        vc = f"vc_{str(ULID()).lower()}"
        posted = time.monotonic()
        while True:
            await run.up.wait()
            try:
                r = await client.post(
                    run.service.url + "/v1/work-items", json={"voice_call_id": vc, "queue_id": queue_id},
                    headers=headers,
                )  # fmt: skip
            except httpx.TransportError:
                await asyncio.sleep(0.2)
                continue
            if r.status_code in (200, 201):
                run.posted_at[r.json()["work_item_id"]] = posted
                break
            run.errors.append(f"route {r.status_code}: {r.text[:200]}")
            await asyncio.sleep(0.2)


async def killer(run: Run) -> None:
    if run.kill_after is None:
        return
    await run.midway.wait()
    run.up.clear()
    run.cpu_before_kill = run.service.cpu_seconds()
    run.service.kill()
    run.killed_at = time.monotonic()
    print(
        f"killed the service (SIGKILL) after {len(run.completed)} completed items", file=sys.stderr
    )
    await run.service.start()
    run.up.set()
    print(f"restarted in {time.monotonic() - run.killed_at:.1f} s", file=sys.stderr)


def _t(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def check(items: list[dict[str, Any]]) -> dict[str, Any]:
    """From every item's offers: capacity never exceeded, never offered to two at once."""
    spans: dict[str, list[tuple[float, int]]] = defaultdict(list)
    overlapping_offers = 0
    dispatch_ms: list[float] = []
    for item in items:
        offers = item["offers"]
        if offers:
            dispatch_ms.append(
                ((_t(offers[0]["offered_at"]) or 0) - (_t(item["created_at"]) or 0)) * 1000
            )
        for before, after in itertools.pairwise(offers):
            if before["ended_at"] is None or (_t(before["ended_at"]) or 0) > (
                _t(after["offered_at"]) or 0
            ):
                overlapping_offers += 1
        for offer in offers:
            start = _t(offer["offered_at"]) or 0
            end = _t(item["ended_at"]) if offer["status"] == "accepted" else _t(offer["ended_at"])
            end = end if end is not None else float("inf")
            spans[offer["agent_id"]] += [(start, item["weight"]), (end, -item["weight"])]
    peak = 0
    for events in spans.values():
        held = 0
        for _, delta in sorted(events, key=lambda e: (e[0], e[1])):  # ends before starts at a tie
            held += delta
            peak = max(peak, held)
    return {
        "peak_units_held_by_one_agent": peak,
        "capacity_exceeded": peak > CAPACITY,
        "offered_to_two_at_once": overlapping_offers,
        "server_dispatch_ms": dispatch_ms,
    }


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-work-items-"))
    service = Service(workdir / "var", args.database_url)
    run = Run(service, args.items, args.handle_ms / 1000, args.decline, args.kill_after)
    try:
        await service.start()
        _, headers, queue_id, users = await setup(service, args.agents)
        run.up.set()
        limits = httpx.Limits(
            max_connections=args.agents * 4 + 20, max_keepalive_connections=args.agents * 4
        )
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            agents = [Agent(run, u, t) for u, t in users]
            streams = [asyncio.create_task(a.live(client)) for a in agents]
            started = time.monotonic()
            cpu_at_start = service.cpu_seconds()
            own_cpu = time.process_time()
            tasks = [
                asyncio.create_task(produce(run, client, headers, queue_id, args.rate)),
                asyncio.create_task(killer(run)),
            ]
            try:
                await asyncio.wait_for(run.done.wait(), args.time_limit)
            except TimeoutError:
                run.errors.append(
                    f"only {len(run.completed)} of {run.items} completed in {args.time_limit} s"
                )
            elapsed = time.monotonic() - started
            service_cpu = service.cpu_seconds() + run.cpu_before_kill - cpu_at_start
            clients_cpu = time.process_time() - own_cpu
            for task in [*tasks, *streams]:
                task.cancel()
            for agent in agents:
                for task in list(agent.tasks):
                    task.cancel()
            await asyncio.gather(*tasks, *streams, return_exceptions=True)
            found: list[dict[str, Any]] = []
            cursor = None
            while True:
                params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
                page = (
                    await client.get(service.url + "/v1/work-items", params=params, headers=headers)
                ).json()
                found.extend(page["items"])
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            detailed = [
                (
                    await client.get(service.url + f"/v1/work-items/{i['id']}", headers=headers)
                ).json()
                for i in found
            ]
        states: dict[str, int] = defaultdict(int)
        for item in detailed:
            states[item["state"]] += 1
        checks = check(detailed)
        latencies = [
            (run.first_offer_seen[i] - posted) * 1000
            for i, posted in run.posted_at.items()
            if i in run.first_offer_seen
            and (run.killed_at is None or not posted <= run.killed_at <= run.first_offer_seen[i])
        ]
        dispatch = checks.pop("server_dispatch_ms")
        result = {
            "items": args.items,
            "agents": args.agents,
            "rate_per_s": args.rate,
            "handle_ms": args.handle_ms,
            "decline": args.decline,
            "killed_after": args.kill_after,
            "restarts": service.starts - 1,
            "elapsed_s": round(elapsed, 2),
            "completed_per_s": round(len(run.completed) / elapsed, 1) if elapsed else None,
            "service_cpu_s": round(service_cpu, 1),
            "clients_cpu_s": round(clients_cpu, 1),
            "items_in_db": len(detailed),
            "states": dict(states),
            "lost": args.items - len(detailed),
            "offers": sum(len(i["offers"]) for i in detailed),
            "offers_by_status": {
                s: sum(1 for i in detailed for o in i["offers"] if o["status"] == s)
                for s in ("accepted", "declined", "timed_out", "rescinded", "pending")
            },
            **checks,
            "offer_latency_ms_p50": round(pct(latencies, 0.50), 1),
            "offer_latency_ms_p99": round(pct(latencies, 0.99), 1),
            "offer_latency_ms_max": round(max(latencies, default=float("nan")), 1),
            "server_dispatch_ms_p50": round(pct(dispatch, 0.50), 1),
            "server_dispatch_ms_p99": round(pct(dispatch, 0.99), 1),
            "mean_dispatch_ms": round(statistics.fmean(dispatch), 1) if dispatch else None,
            "errors": run.errors[:10],
        }
        result["ok"] = (
            not run.errors
            and result["lost"] == 0
            and states.get("completed", 0) == args.items
            and not checks["capacity_exceeded"]
            and checks["offered_to_two_at_once"] == 0
        )
        return result
    finally:
        service.stop()
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work directory kept: {workdir}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--rate", type=float, default=50.0, help="items routed per second")
    parser.add_argument(
        "--handle-ms", type=float, default=200.0, help="how long an agent holds an item"
    )
    parser.add_argument("--decline", type=float, default=0.05, help="share of offers declined")
    parser.add_argument(
        "--kill-after", type=int, default=None, help="SIGKILL the service after N completed"
    )
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--time-limit", type=float, default=600.0)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not 1 <= args.items <= MAX_ITEMS or not 1 <= args.agents <= MAX_AGENTS:
        parser.error(f"--items 1..{MAX_ITEMS}, --agents 1..{MAX_AGENTS}")
    if args.kill_after is not None and not 0 < args.kill_after < args.items:
        parser.error("--kill-after must be between 0 and --items")
    result = asyncio.run(bench(args))
    for key, value in result.items():
        print(f"{key:32} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    sys.exit(0 if result["ok"] else 1)
