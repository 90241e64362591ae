"""The Kamailio configuration in front of afterbeep nodes (issue 23).

``render`` turns a :class:`ProxySpec` into the files Kamailio reads (``kamailio.cfg`` and the
dispatcher's ``dispatcher.list``); ``write_config`` puts them in a directory; ``command`` is the
argv that runs Kamailio in the foreground on them. Pure apart from ``write_config``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jinja2

KAMAILIO = "/usr/sbin/kamailio"
CONFIG_FILE = "kamailio.cfg"
DISPATCHER_FILE = "dispatcher.list"
DISPATCHER_SET = 1
_TEMPLATE = "kamailio.cfg.j2"
_WILDCARDS = {"0.0.0.0", "::", ""}


@dataclass(frozen=True, slots=True)
class Node:
    node_id: str
    host: str  # the node's reachable address (IP), never 0.0.0.0
    sip_port: int

    def uri(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"sip:{host}:{self.sip_port}"


@dataclass(frozen=True, slots=True)
class ProxySpec:
    listen_host: str
    listen_port: int
    nodes: tuple[Node, ...]
    calls_per_second_per_source: int = 50  # new INVITEs per source address and second; 0 = off
    failover_timeout_ms: int = 2000  # fr_timer: no answer from a node by then → the next node
    probe_interval_seconds: int = 2  # ds_ping_interval (OPTIONS to every node)
    children: int = 4  # Kamailio's worker processes per UDP socket (and TCP workers)
    advertise_host: str | None = (
        None  # the address put in Record-Route/Path when listening on a wildcard or behind NAT
    )
    log_level: int = 1  # Kamailio's `debug` (-3..4; 1 = notices and errors, 2 = info)


def _check(spec: ProxySpec) -> None:
    if not spec.nodes:
        raise ValueError("a proxy needs at least one node")
    ids = [n.node_id for n in spec.nodes]
    if len(set(ids)) != len(ids):
        raise ValueError(f"node ids must be unique: {ids}")
    for node in spec.nodes:
        if node.host in _WILDCARDS:
            raise ValueError(f"node {node.node_id}: a reachable address, not {node.host!r}")
        ipaddress.ip_address(node.host)  # ValueError: the dispatcher gets IPs (dns=no)
        _port(node.sip_port, f"node {node.node_id}")
    _port(spec.listen_port, "listen port")
    if spec.listen_host not in _WILDCARDS:
        ipaddress.ip_address(spec.listen_host)
    if spec.advertise_host is not None and spec.advertise_host in _WILDCARDS:
        raise ValueError("advertise_host must be a reachable address")
    if spec.calls_per_second_per_source < 0:
        raise ValueError("calls_per_second_per_source must be >= 0")
    if spec.failover_timeout_ms < 100:
        raise ValueError("failover_timeout_ms must be >= 100")
    if spec.probe_interval_seconds < 1:
        raise ValueError("probe_interval_seconds must be >= 1")
    if spec.children < 1:
        raise ValueError("children must be >= 1")


def _port(port: int, what: str) -> None:
    if not 0 < port < 65536:
        raise ValueError(f"{what}: {port} is not a port")


def _listens(spec: ProxySpec) -> list[str]:
    host = spec.listen_host or "0.0.0.0"
    if ":" in host:
        host = f"[{host}]"
    out = []
    for proto in ("udp", "tcp"):
        listen = f"{proto}:{host}:{spec.listen_port}"
        if spec.advertise_host is not None:
            listen += f" advertise {spec.advertise_host}:{spec.listen_port}"
        out.append(listen)
    return out


def dispatcher_list(spec: ProxySpec) -> str:
    lines = ["# setid destination flags priority attributes"]
    for node in spec.nodes:
        lines.append(f"{DISPATCHER_SET} {node.uri()} 0 0 duid={node.node_id}")
    return "\n".join(lines) + "\n"


def parse_nodes(text: str) -> tuple[Node, ...]:
    """``[ID=]HOST:PORT`` items, comma separated (``node-N`` when no id: N its position)."""
    nodes = []
    for position, item in enumerate((i.strip() for i in text.split(",") if i.strip()), 1):
        node_id, _, address = item.rpartition("=")
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise ValueError(f"{item!r}: expected [ID=]HOST:PORT")
        nodes.append(Node(node_id or f"node-{position}", host, int(port)))
    return tuple(nodes)


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` → (host, port)."""
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"{text!r}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def render(spec: ProxySpec, directory: Path | None = None) -> dict[str, str]:
    """File name → text. ``directory``: where the files will be (the config names the
    dispatcher list by absolute path); default: the current directory."""
    _check(spec)
    where = (directory or Path(".")).resolve()
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
    )
    source = resources.files(__package__).joinpath(_TEMPLATE).read_text(encoding="utf-8")
    text = env.from_string(source).render(
        nodes=spec.nodes,
        listens=_listens(spec),
        children=spec.children,
        log_level=spec.log_level,
        failover_timeout_ms=spec.failover_timeout_ms,
        probe_interval_seconds=spec.probe_interval_seconds,
        calls_per_second_per_source=spec.calls_per_second_per_source,
        dispatcher_list=str(where / DISPATCHER_FILE),
    )
    return {CONFIG_FILE: text, DISPATCHER_FILE: dispatcher_list(spec)}


def write_config(spec: ProxySpec, directory: Path) -> Path:
    """Writes the rendered files into ``directory`` (created); returns the main config's path."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in render(spec, directory).items():
        (directory / name).write_text(text, encoding="utf-8")
    return (directory / CONFIG_FILE).resolve()


def command(config: Path, runtime_dir: Path, kamailio: str = KAMAILIO) -> list[str]:
    """Argv running Kamailio in the foreground (no fork), logging to stderr, with its control
    files (pid, runtime dir) under ``runtime_dir`` (which must exist) rather than /run/kamailio."""
    return [
        kamailio,
        "-DD",
        "-E",
        "-f",
        str(config),
        "-Y",
        str(runtime_dir),
        "-P",
        str(runtime_dir / "kamailio.pid"),
    ]


def check_command(config: Path, kamailio: str = KAMAILIO) -> list[str]:
    """Argv checking the config's syntax (``kamailio -c``), exit status 0 when it is accepted."""
    return [kamailio, "-c", "-f", str(config)]
