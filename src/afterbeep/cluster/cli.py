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
