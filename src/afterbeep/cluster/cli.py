"""`afterbeep cluster ...`: render the Kamailio configuration, run a cluster on one machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

cluster_cli = typer.Typer(
    no_args_is_help=True, help="A cluster: Kamailio in front of several afterbeep nodes"
)


@cluster_cli.command("config")
def config_cmd(
    nodes: Annotated[
        str,
        typer.Option(
            "--nodes",
            help="the nodes' SIP addresses, comma separated: [ID=]HOST:PORT (HOST reachable from the proxy, never 0.0.0.0)",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="directory to write kamailio.cfg and dispatcher.list into")
    ],
    listen: Annotated[
        str, typer.Option("--listen", help="where Kamailio listens (UDP and TCP): HOST:PORT")
    ] = "0.0.0.0:5060",
    advertise: Annotated[
        str | None,
        typer.Option(
            "--advertise",
            help="the proxy's public address in Record-Route and Path (behind NAT, or listening on 0.0.0.0)",
        ),
    ] = None,
    cps: Annotated[
        int,
        typer.Option(
            "--cps", help="new calls per second accepted per source address (0: no limit)"
        ),
    ] = 50,
    failover_ms: Annotated[
        int, typer.Option("--failover-ms", help="no answer from a node within this → the next node")
    ] = 2000,
    probe_seconds: Annotated[
        int, typer.Option("--probe-seconds", help="interval of the OPTIONS probes to each node")
    ] = 2,
    children: Annotated[int, typer.Option("--children", help="Kamailio worker processes")] = 4,
) -> None:
    """Write the Kamailio configuration for nodes, and print the command that runs it."""
    from afterbeep.cluster import kamailio

    try:
        host, port = kamailio.parse_address(listen)
        spec = kamailio.ProxySpec(
            listen_host=host,
            listen_port=port,
            nodes=kamailio.parse_nodes(nodes),
            calls_per_second_per_source=cps,
            failover_timeout_ms=failover_ms,
            probe_interval_seconds=probe_seconds,
            children=children,
            advertise_host=advertise,
        )
        cfg = kamailio.write_config(spec, out)
    except ValueError as exc:
        typer.echo(f"afterbeep cluster config: {exc}", err=True)
        raise typer.Exit(2) from exc
    runtime_dir = cfg.parent / "run"
    runtime_dir.mkdir(exist_ok=True)
    typer.echo(f"wrote {cfg} and {cfg.parent / kamailio.DISPATCHER_FILE}")
    typer.echo("run: " + " ".join(kamailio.command(cfg, runtime_dir)))


@cluster_cli.command("run")
def run_cluster(
    nodes: Annotated[
        int, typer.Option("--nodes", help="afterbeep nodes to run (default: one per core)")
    ] = 0,
    host: Annotated[
        str, typer.Option("--host", help="the address Kamailio and the nodes listen on and are reached at")
    ] = "127.0.0.1",
    sip_port: Annotated[int, typer.Option("--sip-port", help="Kamailio's SIP port (0: a free one)")] = 5060,
    node_sip_port_base: Annotated[
        int, typer.Option("--node-sip-port-base", help="node i's SIP port is this + i (0: free ports)")
    ] = 5070,
    http_port_base: Annotated[
        int, typer.Option("--http-port-base", help="node i's HTTP port is this + i (0: free ports)")
    ] = 8080,
    rtp_min: Annotated[
        int | None, typer.Option("--rtp-min", help="the RTP range split among the nodes (default: AFTERBEEP_RTP_PORT_MIN)")
    ] = None,
    rtp_max: Annotated[int | None, typer.Option("--rtp-max", help="(default: AFTERBEEP_RTP_PORT_MAX)")] = None,
    kamailio: Annotated[str, typer.Option("--kamailio", help="the Kamailio binary")] = "/usr/sbin/kamailio",
    kamailio_children: Annotated[int, typer.Option("--kamailio-children", help="Kamailio's UDP workers")] = 4,
    cps: Annotated[
        int, typer.Option("--cps", help="new calls per second Kamailio accepts per source address (0: no limit)")
    ] = 50,
) -> None:
    """Run Kamailio and N `afterbeep serve` nodes on this machine, sharing AFTERBEEP_DATABASE_URL
    (PostgreSQL) and AFTERBEEP_STORAGE_URL (S3); until SIGTERM or Ctrl-C, which drain the nodes."""
    import os
    import shutil

    from afterbeep.cli import fail, load_settings, run
    from afterbeep.cluster.node import backends_problem
    from afterbeep.cluster.supervisor import (
        ClusterError,
        Supervisor,
        kamailio_command,
        plan,
        run_until_signalled,
    )
    from afterbeep.db.engine import Database

    settings = load_settings()
    if problem := backends_problem(settings):
        fail(problem)
    if shutil.which(kamailio) is None:
        fail(f"no Kamailio at {kamailio} (Debian: apt-get install kamailio; or --kamailio PATH)")
    data_dir = settings.resolved_data_dir()
    try:
        cluster = plan(
            nodes or os.cpu_count() or 1,
            host=host,
            proxy_port=sip_port,
            sip_port_base=node_sip_port_base,
            http_port_base=http_port_base,
            rtp_min=settings.rtp_port_min if rtp_min is None else rtp_min,
            rtp_max=settings.rtp_port_max if rtp_max is None else rtp_max,
            data_dir=data_dir,
        )
    except ClusterError as exc:
        fail(str(exc))
    shared = {
        **os.environ,
        # every node signs links (emails, audio URLs) that any other node must accept
        "AFTERBEEP_SECRET_KEY": settings.resolved_secret_key().decode(),
    }

    async def main() -> None:
        # Once, before any node starts: N nodes migrating one empty database at once collide.
        database = Database(settings.resolved_database_url())
        try:
            await database.migrate()
        finally:
            await database.close()
        supervisor = Supervisor(
            cluster,
            shared,
            kamailio_command(kamailio, kamailio_children, cps),
            drain_seconds=settings.drain_seconds,
            say=lambda line: typer.echo(line, err=True),
        )
        await run_until_signalled(supervisor)

    try:
        run(main)
    except ClusterError as exc:
        fail(str(exc))
