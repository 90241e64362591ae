"""A cluster on one machine (`afterbeep cluster run`): Kamailio in front of N `afterbeep serve`
nodes, all child processes of this one.

`plan()` decides, without I/O, what each node gets: node id `n<i>`, its SIP and HTTP ports,
its share of the RTP range, its data directory, and the environment of its `serve` (the shared
database, object store and signing key, AFTERBEEP_SIP_ADVERTISE). `Supervisor` starts the
nodes, waits until each answers /readyz, then starts Kamailio over them
(`afterbeep.cluster.kamailio`). A child that exits while the cluster runs is started again
after a backoff (a node then recovers its own spool, as any restart of `serve` does). `stop()`
(SIGTERM, SIGINT) drains: every node gets SIGTERM and finishes its calls in progress
(AFTERBEEP_DRAIN_SECONDS) while Kamailio still relays their BYEs; Kamailio stops last.

What runs where is written to `<run_dir>/cluster.json` (pids, ports, restarts) at each change,
for operators and tests.

On Linux every child is started with a parent-death signal (`prctl(PR_SET_PDEATHSIG, SIGTERM)`):
when the supervisor dies without stopping them (kill -9, a crash), each node gets SIGTERM and
drains as on `stop()`, and Kamailio exits, instead of running on unsupervised. Elsewhere the
children outlive a killed supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

log = logging.getLogger("afterbeep.cluster")

RESTART_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)  # seconds before the 1st, 2nd... restart in a row
STEADY_SECONDS = 60.0  # a child that ran this long starts its backoff over
READY_TIMEOUT = 90.0
KILL_GRACE = 10.0  # past the drain, before SIGKILL
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> Callable[[], None]:
    """What a child runs between fork and exec: SIGTERM when `parent` (the supervisor's pid)
    dies; no exec when it died already (Linux only: the setting survives exec and is
    cleared in a child's own children). Nothing elsewhere."""

    def arm() -> None:
        if not sys.platform.startswith("linux"):
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # gone already: never start
            os._exit(1)

    return arm


class ClusterError(Exception):
    """The cluster cannot start as asked (one line for the operator)."""


@dataclass(frozen=True, slots=True)
class NodePlan:
    node_id: str
    host: str
    sip_port: int
    http_port: int
    rtp_min: int
    rtp_max: int
    data_dir: Path

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def env(self, shared: Mapping[str, str]) -> dict[str, str]:
        """The environment of this node's `serve`: `shared` (the operator's, with the
        cluster-wide settings) and what is this node's own."""
        return {
            **shared,
            # what reaches a node's SIP comes through Kamailio, on the same host
            "AFTERBEEP_SIP_TRUSTED_PROXIES": shared.get("AFTERBEEP_SIP_TRUSTED_PROXIES")
            or self.host,
            "AFTERBEEP_NODE_ID": self.node_id,
            "AFTERBEEP_DATA_DIR": str(self.data_dir),
            "AFTERBEEP_HTTP_ADDR": f"{self.host}:{self.http_port}",
            "AFTERBEEP_SIP_ADDR": f"{self.host}:{self.sip_port}",
            "AFTERBEEP_SIP_ADVERTISE": f"{self.host}:{self.sip_port}",
            "AFTERBEEP_RTP_PORT_MIN": str(self.rtp_min),
            "AFTERBEEP_RTP_PORT_MAX": str(self.rtp_max),
        }


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    host: str
    proxy_port: int
    nodes: tuple[NodePlan, ...]
    run_dir: Path


PortPicker = Callable[[], int]


def free_port_pair(host: str) -> int:
    """A port free for both UDP and TCP on `host` (SIP binds both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
            return port
    raise ClusterError(f"no free SIP port on {host}")


def plan(
    nodes: int,
    *,
    host: str,
    proxy_port: int,
    sip_port_base: int,
    http_port_base: int,
    rtp_min: int,
    rtp_max: int,
    data_dir: Path,
    pick: PortPicker | None = None,
) -> ClusterPlan:
    """Node i (0-based) is `n<i>` on `sip_port_base + i` and `http_port_base + i` (a base of 0:
    ports picked by `pick`), with the i-th of N equal slices of the RTP range (even-sized,
    RTP and RTCP pairs) and `<data_dir>/n<i>`."""
    if nodes < 1:
        raise ClusterError("--nodes must be at least 1")
    if host in ("0.0.0.0", "::", ""):
        raise ClusterError(f"--host {host!r}: the address the nodes are reached at, not a wildcard")
    width = (rtp_max - rtp_min + 1) // nodes // 2 * 2
    if width < 4:
        raise ClusterError(f"the RTP range {rtp_min}-{rtp_max} is too small for {nodes} nodes")
    picker = pick or (lambda: free_port_pair(host))
    planned = []
    for i in range(nodes):
        low = rtp_min + i * width
        planned.append(
            NodePlan(
                node_id=f"n{i}",
                host=host,
                sip_port=sip_port_base + i if sip_port_base else picker(),
                http_port=http_port_base + i if http_port_base else picker(),
                rtp_min=low,
                rtp_max=low + width - 1,
                data_dir=data_dir / f"n{i}",
            )
        )
    return ClusterPlan(host, proxy_port or picker(), tuple(planned), data_dir / "cluster")


@dataclass
class Child:
    """One supervised process: a node, or Kamailio."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    ready: Callable[[], bool] | None = None  # None: up as soon as started
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0  # monotonic
    started_wall: float = 0.0  # time.time(), for cluster.json
    failures_in_a_row: int = 0
    exits: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out: IO[bytes]
        with self.log_path.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=die_with_parent(os.getpid()),
            )
        self.started_at = time.monotonic()
        self.started_wall = time.time()

    async def wait_ready(self, timeout: float) -> None:
        if self.ready is None:
            return
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(self.ready):
            if self.process is None or self.process.returncode is not None:
                raise ClusterError(f"{self.name} exited while starting; see {self.log_path}")
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"{self.name} not ready after {timeout:.0f} s; see {self.log_path}"
                )
            await asyncio.sleep(0.2)

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    async def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        if self.process is None or self.process.returncode is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), grace)
        except TimeoutError:
            log.warning("%s did not stop within %.0f s: killed", self.name, grace)
            self.signal(signal.SIGKILL)
            await self.process.wait()


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _ready_at(url: str) -> Callable[[], bool]:
    return lambda: _http_ok(url)


ProxyCommand = Callable[[ClusterPlan], list[str]]


def kamailio_command(kamailio: str, children: int, calls_per_second: int) -> ProxyCommand:
    """Kamailio's argv for a plan: its configuration written by `afterbeep.cluster.kamailio`."""

    def build(cluster: ClusterPlan) -> list[str]:
        from afterbeep.cluster import kamailio as k

        spec = k.ProxySpec(
            listen_host=cluster.host,
            listen_port=cluster.proxy_port,
            nodes=tuple(k.Node(n.node_id, n.host, n.sip_port) for n in cluster.nodes),
            calls_per_second_per_source=calls_per_second,
            children=children,
        )
        config_dir = cluster.run_dir / "kamailio"
        try:
            cfg = k.write_config(spec, config_dir)
        except ValueError as exc:
            raise ClusterError(f"the Kamailio configuration: {exc}") from exc
        return k.command(cfg, config_dir, kamailio)

    return build


class Supervisor:
    def __init__(
        self,
        cluster: ClusterPlan,
        shared_env: Mapping[str, str],
        proxy: ProxyCommand | None,
        *,
        drain_seconds: float,
        python: str = sys.executable,
        say: Callable[[str], None] = print,
    ) -> None:
        self.cluster = cluster
        self.say = say
        self._drain = drain_seconds
        self._stopping = asyncio.Event()
        self._watchers: set[asyncio.Task[None]] = set()
        self.nodes = [
            Child(
                node.node_id,
                [python, "-m", "afterbeep", "serve"],
                node.env(shared_env),
                cluster.run_dir / f"{node.node_id}.log",
                ready=_ready_at(node.http_url + "/readyz"),
            )
            for node in cluster.nodes
        ]
        self.proxy: Child | None = None
        if proxy is not None:
            self.proxy = Child(
                "kamailio", proxy(cluster), dict(shared_env), cluster.run_dir / "kamailio.log"
            )

    @property
    def children(self) -> list[Child]:
        return [*self.nodes, *([self.proxy] if self.proxy else [])]

    async def start(self) -> None:
        """Every node up and ready, then Kamailio; a failure stops what started."""
        self.cluster.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            for child in self.nodes:
                await child.start()
            for child in self.nodes:
                await child.wait_ready(READY_TIMEOUT)
            if self.proxy is not None:
                await self.proxy.start()
                await asyncio.sleep(0.5)
                if self.proxy.process is not None and self.proxy.process.returncode is not None:
                    raise ClusterError(f"kamailio exited at start; see {self.proxy.log_path}")
        except BaseException:
            await self._stop_all()
            raise
        for child in self.children:
            self._watch(child)
        self.write_status()
        for node, child in zip(self.cluster.nodes, self.nodes, strict=True):
            self.say(
                f"{node.node_id}: SIP {node.host}:{node.sip_port}, HTTP {node.http_url}, "
                f"RTP {node.rtp_min}-{node.rtp_max}, data {node.data_dir} (pid {child.pid}, log {child.log_path})"
            )
        if self.proxy is not None:
            self.say(
                f"Kamailio: SIP {self.cluster.host}:{self.cluster.proxy_port} (pid {self.proxy.pid}, "
                f"log {self.proxy.log_path}); calls go there"
            )

    def _watch(self, child: Child) -> None:
        task = asyncio.create_task(self._supervise(child), name=f"supervise-{child.name}")
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _supervise(self, child: Child) -> None:
        """Start `child` again each time it exits, until the cluster stops."""
        while True:
            assert child.process is not None
            code = await child.process.wait()
            if self._stopping.is_set():
                return
            child.exits.append(code)
            if time.monotonic() - child.started_at > STEADY_SECONDS:
                child.failures_in_a_row = 0
            delay = RESTART_BACKOFF[min(child.failures_in_a_row, len(RESTART_BACKOFF) - 1)]
            child.failures_in_a_row += 1
            self.say(f"{child.name} exited ({code}); starting it again in {delay:.1f} s")
            try:
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
                return
            except TimeoutError:
                pass
            try:
                await child.start()
            except OSError as exc:  # the old process stays the one waited on: backoff again
                self.say(f"{child.name} could not be started again: {exc}")
                continue
            child.restarts += 1
            self.write_status()
            self.say(f"{child.name} started again (pid {child.pid})")

    def write_status(self) -> None:
        """`<run_dir>/cluster.json`: where each child listens and its pid."""
        status = {
            "proxy": {
                "host": self.cluster.host,
                "sip_port": self.cluster.proxy_port,
                "pid": self.proxy.pid if self.proxy else None,
                "restarts": self.proxy.restarts if self.proxy else 0,
            },
            "nodes": [
                {
                    "node_id": node.node_id,
                    "sip_port": node.sip_port,
                    "http_url": node.http_url,
                    "rtp": [node.rtp_min, node.rtp_max],
                    "data_dir": str(node.data_dir),
                    "pid": child.pid,
                    "restarts": child.restarts,
                    "started_at": child.started_wall,
                    "log": str(child.log_path),
                }
                for node, child in zip(self.cluster.nodes, self.nodes, strict=True)
            ],
        }
        path = self.cluster.run_dir / "cluster.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status, indent=2))
        os.replace(tmp, path)

    async def wait_stopped(self) -> None:
        await self._stopping.wait()

    def request_stop(self) -> None:
        self._stopping.set()

    async def stop(self) -> None:
        """Drain the nodes (SIGTERM: `serve` finishes its calls in progress), then stop Kamailio."""
        self._stopping.set()
        for task in list(self._watchers):
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        await self._stop_all()

    async def _stop_all(self) -> None:
        await asyncio.gather(*(child.stop(self._drain + KILL_GRACE) for child in self.nodes))
        if self.proxy is not None:
            await self.proxy.stop(KILL_GRACE)


async def run_until_signalled(supervisor: Supervisor) -> None:
    """Start the cluster, run until SIGTERM or SIGINT, then drain and stop it."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, supervisor.request_stop)
    try:
        await supervisor.start()
        await supervisor.wait_stopped()
        supervisor.say("stopping: the nodes drain their calls, then Kamailio stops")
        await supervisor.stop()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
