"""`afterbeep cluster ...`: render the Kamailio configuration, run a cluster on one machine."""

from __future__ import annotations

from typing import Annotated

import typer

cluster_cli = typer.Typer(
    no_args_is_help=True, help="A cluster: Kamailio in front of several afterbeep nodes"
)


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
    supervisor = Supervisor(
        cluster,
        shared,
        kamailio_command(kamailio, kamailio_children),
        drain_seconds=settings.drain_seconds,
        say=lambda line: typer.echo(line, err=True),
    )

    async def main() -> None:
        await run_until_signalled(supervisor)

    try:
        run(main)
    except ClusterError as exc:
        fail(str(exc))
