"""`afterbeep spool ...`: a node's recording spool, seen by an operator or another node."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

spool_cli = typer.Typer(no_args_is_help=True, help="The recording spool of a node")


@spool_cli.command("recover")
def recover(
    node: Annotated[str, typer.Option("--node", help="the node id whose spool to recover (n1, ...)")],
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="that node's data directory (default: AFTERBEEP_DATA_DIR)"),
    ] = None,
    wait: Annotated[float, typer.Option("--wait", help="seconds to wait for storage")] = 120.0,
) -> None:
    """Store the recordings a node left in its spool (a node that died and does not come back).
    Refused while the node, or another recovery, holds that spool."""
    from afterbeep.app import Runtime
    from afterbeep.cli import fail, load_settings, open_database, run
    from afterbeep.cluster.node import SpoolBusy, spool_directory
    from afterbeep.cluster.recovery import Recovered, recover_spool
    from afterbeep.config import Settings

    settings = load_settings()
    try:
        Settings(node_id=node)
    except ValueError:
        fail(f"--node {node!r}: letters, digits, '-' and '_' only")
    directory = spool_directory((data_dir or settings.resolved_data_dir()).expanduser().resolve(), node)
    if not directory.is_dir():
        fail(f"no spool at {directory}")
    open_database(settings, create=False)

    async def main() -> Recovered:
        runtime = Runtime(settings)
        await runtime.start(workers=False)
        try:
            assert runtime.deposits is not None
            return await recover_spool(directory, runtime.deposits, runtime.clock, wait=wait)
        finally:
            await runtime.stop()

    try:
        done = run(main)
    except SpoolBusy as exc:
        fail(str(exc))
    typer.echo(f"spool of {node} ({directory}): {done.stored} recording(s) stored, {done.left} left")
    if done.left:
        raise typer.Exit(1)
