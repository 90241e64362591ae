"""The `afterbeep` command line."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError

from afterbeep import logs
from afterbeep.amd_cli import amd_app
from afterbeep.campaign_cli import campaigns_cli
from afterbeep.cluster.cli import cluster_cli
from afterbeep.cluster.spool_cli import spool_cli
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
numbers_cli = typer.Typer(
    no_args_is_help=True, help="Caller ids: the numbers an account may send from (operator only)"
)
cli.add_typer(account_cli, name="account")
cli.add_typer(key_cli, name="key")
cli.add_typer(numbers_cli, name="numbers")
member_cli = typer.Typer(no_args_is_help=True, help="Members: the people who sign in to the web pages")
cli.add_typer(member_cli, name="member")
cli.add_typer(voicemails_cli, name="voicemails")
cli.add_typer(campaigns_cli, name="campaigns")
cli.add_typer(amd_app, name="amd")
cli.add_typer(cluster_cli, name="cluster")
cli.add_typer(spool_cli, name="spool")


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


def fail(message: str) -> NoReturn:
    """One line on stderr and exit status 2: what an operator gets instead of a traceback."""
    typer.echo(f"afterbeep: {message}", err=True)
    raise typer.Exit(2)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "AFTERBEEP_" + "_".join(str(part) for part in first["loc"]).upper()
        fail(f"{name}: {first['msg']}")


def open_database(settings: Settings, *, create: bool) -> None:
    """Say on stderr which database the command uses. One that does not exist yet is created
    only with `create`: a command run from another directory must not quietly start an empty
    `./var` that the running service never sees."""
    from afterbeep.db.engine import database_exists, describe_url

    url = settings.resolved_database_url()
    where = describe_url(url)
    try:
        exists = run(lambda: database_exists(url))
    except Exception as exc:  # the driver's errors vary; the operator needs the one line
        fail(f"cannot open the database {where}: {exc}")
    if exists:
        typer.echo(f"afterbeep: database {where}", err=True)
    elif create:
        typer.echo(f"afterbeep: creating a new database {where}", err=True)
    else:
        fail(
            f"no database at {where}; set AFTERBEEP_DATA_DIR or AFTERBEEP_DATABASE_URL as for "
            "the service, or create it with `afterbeep migrate` (or --create)"
        )


def _with_database(action: Callable[[Runtime], Awaitable[T]], *, create: bool = False) -> T:
    """Run `action` on the service's objects (no workers); a domain error is one line."""
    from afterbeep.app import Runtime
    from afterbeep.domain.errors import DomainError

    settings = load_settings()
    open_database(settings, create=create)

    async def main() -> T:
        runtime = Runtime(settings)
        await runtime.start(workers=False)
        try:
            return await action(runtime)
        finally:
            await runtime.stop()

    try:
        return run(main)
    except DomainError as exc:
        fail(exc.message)


def bind_http(host: str, port: int) -> socket.socket:
    """The HTTP socket, bound (uvicorn listens on it once the rest is up)."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        fail(f"cannot listen on {where} (HTTP): {_reason(exc)}")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {where} (HTTP): {_reason(exc)}")
    return sock


def _reason(exc: OSError) -> str:
    return (os.strerror(exc.errno) if exc.errno else str(exc)).lower()


@cli.command()
def serve() -> None:
    """Start the HTTP API (and the SIP service and workers) in one process."""
    import uvicorn

    from afterbeep.app import CannotListen, Runtime
    from afterbeep.cluster.node import SpoolBusy

    settings = load_settings()
    logs.configure(settings.log_level, settings.log_json)
    if settings.node_id:
        from afterbeep.cluster.node import backends_problem

        if problem := backends_problem(settings):
            fail(problem)
    host, port = split_host_port(settings.http_addr, 8080)
    http_socket = bind_http(host, port)
    open_database(settings, create=True)

    class _SignalFreeServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # `main` catches the signals

    async def main() -> None:
        runtime = Runtime(settings)
        try:
            await runtime.start(postcall_process=settings.postcall == "process")
        except (CannotListen, SpoolBusy):
            await runtime.stop()
            raise
        settle_garbage_collector()
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
                await server.serve(sockets=[http_socket])
            finally:
                await runtime.stop()
        finally:
            for sig, handler in caught.items():
                signal.signal(sig, handler)

    try:
        run(main)
    except (CannotListen, SpoolBusy) as exc:
        fail(str(exc))
    finally:
        http_socket.close()


@cli.command(hidden=True)
def postcall() -> None:
    """The post-call worker process that `serve` starts (reads its orders on stdin)."""
    from afterbeep.postcall import lower_priority, run_child

    settings = load_settings()
    logs.configure(settings.log_level, settings.log_json)
    lower_priority()
    run(lambda: run_child(settings))


@cli.command()
def migrate() -> None:
    """Apply database migrations (creating the database when there is none)."""

    async def action(runtime: Runtime) -> None:
        return None

    _with_database(action, create=True)
    typer.echo("database is up to date")


CreateOpt = Annotated[
    bool, typer.Option("--create", help="create the database if there is none yet")
]


@account_cli.command("create")
def account_create(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    create: CreateOpt = False,
) -> None:
    """Create an account and its first API key (shown once)."""
    issued = _with_database(lambda rt: rt.accounts.create_account(name), create=create)
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
    issued = _with_database(lambda rt: rt.accounts.create_key(account))
    if as_json:
        typer.echo(json.dumps({"account_id": issued.account_id, "key_id": issued.key_id, "api_key": issued.secret}))
    else:
        typer.echo(f"api key {issued.secret}  (shown once)")


@key_cli.command("revoke")
def key_revoke(key_id: str) -> None:
    """Revoke an API key at once (any key, even an account's last one)."""
    revoked = _with_database(lambda rt: rt.accounts.revoke_key(None, key_id))
    typer.echo(f"revoked {revoked.key_id} of account {revoked.account_id}")
    if revoked.keys_left == 0:
        typer.echo(
            f"the account has no API key left: afterbeep key create --account {revoked.account_id}",
            err=True,
        )


@account_cli.command("delete")
def account_delete(
    account_id: str,
    yes: Annotated[bool, typer.Option("--yes", help="really erase everything of the account")] = False,
) -> None:
    """Erase an account: every row and stored object it owns, and its spooled recordings."""
    if not yes:
        fail(f"this erases account {account_id} and everything it owns; run again with --yes")

    async def action(rt: Runtime) -> dict[str, int]:
        assert rt.store is not None and rt.spool is not None
        removed = await rt.accounts.delete_account(account_id, rt.store)
        spooled = [e for e in rt.spool.entries() if e.meta.account_id == account_id]
        for entry in spooled:
            rt.spool.remove(entry)
        return {**removed, "spool_entries": len(spooled)}

    removed = _with_database(action)
    typer.echo(f"deleted account {account_id}")
    for what, count in sorted(removed.items()):
        typer.echo(f"  {what}: {count}")


AccountOpt = Annotated[str, typer.Option("--account", help="account id")]


@numbers_cli.command("verify")
def numbers_verify(number: str, account: AccountOpt) -> None:
    """Let the account send from NUMBER (its setups listing it use it as caller id)."""
    e164 = _with_database(lambda rt: rt.senders().verify(account, number))
    typer.echo(f"{e164} verified for account {account}")


@numbers_cli.command("unverify")
def numbers_unverify(number: str, account: AccountOpt) -> None:
    """Take NUMBER back: the account no longer sends from it."""
    e164 = _with_database(lambda rt: rt.senders().unverify(account, number))
    typer.echo(f"{e164} no longer verified for account {account}")


def _read_password(from_stdin: bool) -> str:
    """The new member's password: one line of standard input, or asked twice on the terminal."""
    import getpass
    import sys

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            fail("--password-stdin: standard input held no password")
        return password
    if not sys.stdin.isatty():
        fail("no terminal to ask the password on: pass it on standard input with --password-stdin")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != password:
        fail("the two passwords differ")
    return password


@member_cli.command("create")
def member_create(
    account: AccountOpt,
    email: Annotated[str, typer.Option("--email", help="signs the member in")],
    role: Annotated[str, typer.Option("--role", help="admin, member or agent")] = "admin",
    name: Annotated[
        str | None, typer.Option("--name", help="shown in the pages (default: the email's local part)")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    user: Annotated[
        str | None,
        typer.Option("--user", help="link to this user (usr_...) of the account: its mailbox, or its console"),
    ] = None,
) -> None:
    """Create a member who signs in to the web pages (the first admin, say)."""
    password = _read_password(password_stdin)
    fields: dict[str, object] = {"email": email, "name": name or email.split("@", 1)[0], "role": role, "password": password}
    if user is not None:
        fields["user_id"] = user
    member = _with_database(lambda rt: rt.members.create(account, fields))
    if as_json:
        shown = {"member_id": member.id, "account_id": member.account_id, "email": member.email, "role": member.role.value, "user_id": member.user_id}
        typer.echo(json.dumps(shown))
    else:
        typer.echo(f"member {member.id} ({member.email}, {member.role.value}) in account {member.account_id}")


def main() -> None:
    cli()
