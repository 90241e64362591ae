"""`afterbeep cluster ...`: render the Kamailio configuration, run a cluster on one machine."""

from __future__ import annotations

import typer

cluster_cli = typer.Typer(
    no_args_is_help=True, help="A cluster: Kamailio in front of several afterbeep nodes"
)
