"""The `afterbeep` command line."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from afterbeep import logs
from afterbeep.amd_cli import amd_app
from afterbeep.campaign_cli import campaigns_cli
from afterbeep.config import Settings, split_host_port
from afterbeep.voicemail_cli import voicemails_cli

if TYPE_CHECKING:
    # The service's whole stack takes seconds to import; the HTTP-client commands
    # (`voicemails`, `campaigns`) must not pay for it.
    from afterbeep.app import Runtime

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # a graceful stop of `serve`

cli = typer.Typer(no_args_is_help=True, add_completion=False, help="afterbeep voicemail platform")
account_cli = typer.Typer(no_args_is_help=True, help="Accounts")
key_cli = typer.Typer(no_args_is_help=True, help="API keys")
cli.add_typer(account_cli, name="account")
cli.add_typer(key_cli, name="key")
cli.add_typer(voicemails_cli, name="voicemails")
cli.add_typer(campaigns_cli, name="campaigns")
cli.add_typer(amd_app, name="amd")


def settle_garbage_collector() -> None:
    """Keep full collections short on a long-running service: everything alive after start-up
    (modules, tables, prompts) is moved out of the collector's reach, and young objects are
    collected less often. Without it a full collection at a few hundred calls stops the event
    loop for about 200 ms, which every SIP message and RTP packet then waits for."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


async def _with_runtime(action: Callable[[Runtime], Awaitable[T]]) -> T:
    from afterbeep.app import Runtime

    runtime = Runtime(Settings())
    await runtime.start(workers=False)
    try:
        return await action(runtime)
    finally:
        await runtime.stop()


@cli.command()
def serve() -> None:
    """Start the HTTP API (and the SIP service and workers) in one process."""
    import uvicorn

    from afterbeep.app import Runtime

    settings = Settings()
    logs.configure(settings.log_level, settings.log_json)

    class _SignalFreeServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # `main` catches the signals

    async def main() -> None:
        runtime = Runtime(settings)
        await runtime.start(postcall_process=settings.postcall == "process")
        settle_garbage_collector()
        host, port = split_host_port(settings.http_addr, 8080)
        config = uvicorn.Config(
            runtime.app, host=host, port=port, log_config=None, access_log=False, lifespan="off"
        )
        server = _SignalFreeServer(config)
        typer.echo(f"afterbeep HTTP API listening on http://{host}:{port} (docs at /docs)", err=True)
        if runtime.telephony is not None:
            typer.echo(f"afterbeep SIP listening on {runtime.telephony.listening()}", err=True)
        # SIGINT/SIGTERM: the runtime takes no new work and its calls in progress begin their
        # drain (AFTERBEEP_DRAIN_SECONDS) while the HTTP server stops; then the runtime stops.
        # uvicorn's own handling raises the signal again as soon as the HTTP server has
        # stopped, which killed the process before the drain: the signals are caught here
        # instead, for the whole shutdown, and the process then exits 0.
        loop = asyncio.get_running_loop()

        def stop_signal(sig: int, frame: FrameType | None) -> None:
            server.handle_exit(sig, frame)
            loop.call_soon_threadsafe(runtime.begin_drain)

        caught = {sig: signal.signal(sig, stop_signal) for sig in STOP_SIGNALS}
        try:
            try:
                await server.serve()
            finally:
                await runtime.stop()
        finally:
            for sig, handler in caught.items():
                signal.signal(sig, handler)

    run(main)


@cli.command(hidden=True)
def postcall() -> None:
    """The post-call worker process that `serve` starts (reads its orders on stdin)."""
    from afterbeep.postcall import lower_priority, run_child

    settings = Settings()
    logs.configure(settings.log_level, settings.log_json)
    lower_priority()
    run(lambda: run_child(settings))


@cli.command()
def migrate() -> None:
    """Apply database migrations."""

    async def action(runtime: Runtime) -> None:
        return None

    run(lambda: _with_runtime(action))
    typer.echo("database is up to date")


@account_cli.command("create")
def account_create(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Create an account and its first API key (shown once)."""
    issued = run(lambda: _with_runtime(lambda rt: rt.accounts.create_account(name)))
    if as_json:
        typer.echo(json.dumps({"account_id": issued.account_id, "api_key": issued.secret}))
    else:
        typer.echo(f"account {issued.account_id}\napi key {issued.secret}  (shown once)")


@key_cli.command("create")
def key_create(
    account: Annotated[str, typer.Option("--account", help="account id")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Create another API key for an account (shown once)."""
    issued = run(lambda: _with_runtime(lambda rt: rt.accounts.create_key(account)))
    if as_json:
        typer.echo(json.dumps({"account_id": issued.account_id, "key_id": issued.key_id, "api_key": issued.secret}))
    else:
        typer.echo(f"api key {issued.secret}  (shown once)")


def main() -> None:
    cli()
