"""CPU of the work around a call, split by stage (issue 24 points 2 and 5).

Post-call: N closed spool entries (speech, `--seconds` long, 8 kHz) go one at a time through the
real path of the post-call child: `SpoolWorker.submit` (read the PCM, `DepositService.finalize`:
WAV, storage put, the database rows; the spool files removed), then the email outbox
(`EmailDispatcher.run_once`: compose from storage, flatten, SMTP to aiosmtpd) and the webhook
outbox (`WebhookDispatcher.run_once` to a local HTTP sink). The SMTP server and the webhook sink
run in a child process, so their CPU is not counted. Stages are timed with
`time.process_time` (this process, every thread) around the functions named; nested stages are
subtracted from their parent, and messages run one after another, so each delta belongs to one
stage.

Before the beep: what a deposit call does on the service's loop (or its threads) before the
beep: the route (`CallRouter.route`, a cached number, with the mailbox's usage), the usage read
alone, and the spool entry's creation and close, in µs per call.

    .venv/bin/python -m benchmarks.postcall_cpu --messages 40 --seconds 30
    .venv/bin/python -m benchmarks.postcall_cpu --messages 40 --seconds 30 --db postgres
    .venv/bin/python -m benchmarks.postcall_cpu --messages 40 --seconds 30 --no-email

Peak traced memory of one email with a `--memory-seconds` (default 300 s) WAV attached is
printed too (tracemalloc, building and sending it to the same SMTP server).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

import afterbeep.notify.email as email_mod
import afterbeep.services.deposits as deposits_mod
from afterbeep.app import Runtime
from afterbeep.config import Settings
from afterbeep.domain.clock import iso
from afterbeep.domain.numbers import DestKind
from afterbeep.services.mailboxes import MailboxService
from afterbeep.services.numbers import NumberService
from afterbeep.services.webhooks import WebhookService
from afterbeep.telephony.interface import EndedBy
from afterbeep.telephony.spool import Spool, SpoolMeta

NUMBER = "+12025550142"
T = TypeVar("T")

# The peers, in a process of their own: aiosmtpd (tests.fixtures.smtp) and an HTTP sink that
# answers 204. Prints "<smtp url> <webhook url>", then serves until stdin closes, then prints
# how many emails arrived.
_PEERS = r"""
import http.server, sys, threading
from tests.fixtures.smtp import smtp_server

class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204); self.end_headers()
    def log_message(self, *args):
        pass

http_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
threading.Thread(target=http_server.serve_forever, daemon=True).start()
with smtp_server() as smtp:
    print(smtp.url(), f"http://127.0.0.1:{http_server.server_address[1]}/hook", flush=True)
    sys.stdin.read()
    print(len(smtp.collector.received), flush=True)
"""


class Stages:
    """CPU seconds (process_time) per stage, inclusive; `exclusive` subtracts nested stages."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap_async(self, name: str, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        @functools.wraps(fn)
        async def timed(*args: Any, **kwargs: Any) -> T:
            start = time.process_time()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.cpu[name] += time.process_time() - start
                self.calls[name] += 1

        return timed

    def wrap(self, name: str, fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> T:
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.cpu[name] += time.process_time() - start
                self.calls[name] += 1

        return timed

    @contextlib.contextmanager
    def block(self, name: str) -> Iterator[None]:
        start = time.process_time()
        try:
            yield
        finally:
            self.cpu[name] += time.process_time() - start
            self.calls[name] += 1


def speech(seconds: float, seed: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    rng = np.random.default_rng(seed)
    n = int(seconds * 8000)
    envelope = 0.55 + 0.45 * np.sin(np.arange(n) * 2 * np.pi * 4 / 8000)
    return (rng.normal(0, 3000, n) * envelope).clip(-32768, 32767).astype(np.int16)


@contextlib.contextmanager
def peers() -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _PEERS], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        smtp_url, hook_url = proc.stdout.readline().split()
        yield smtp_url, hook_url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def received_count(proc: subprocess.Popen[str]) -> int:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    return int(proc.stdout.readline() or -1)


@contextlib.contextmanager
def database(kind: str, data_dir: Path) -> Iterator[str | None]:
    if kind == "sqlite":
        yield None
        return
    from tests.fixtures.postgres import postgres_cluster

    with postgres_cluster() as url:
        yield url


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="postcall-cpu-") as tmp,
        peers() as (smtp_url, hook_url, peer_proc),
        database(args.db, Path(tmp)) as database_url,
    ):
        settings = Settings(
            data_dir=Path(tmp) / "var",
            secret_key="bench-secret-" + "x" * 32,
            allow_private_networks="127.0.0.0/8",
            transcribe=False,
            smtp_url=smtp_url,
            smtp_from="voicemail@afterbeep.test",
            public_url="http://afterbeep.test",
            **({"database_url": database_url} if database_url else {}),
        )
        rt = Runtime(settings)
        await rt.start(workers=False)
        try:
            return await _measure(args, rt, hook_url, peer_proc)
        finally:
            await rt.stop()


async def _measure(
    args: argparse.Namespace, rt: Runtime, hook_url: str, peer_proc: subprocess.Popen[str]
) -> dict[str, Any]:
    assert rt.store and rt.spool and rt.spool_worker and rt.email_dispatcher and rt.dispatcher
    issued = await rt.accounts.create_account("Bench Clinic")
    account_id = issued.account_id
    values: dict[str, Any] = {"name": "Front desk", "max_message_seconds": 600}
    if args.email:
        values["notify_email"] = "owner@clinic.example"
    view = await MailboxService(rt.uow, rt.store, rt.clock).create(account_id, values)
    mailbox_id = view.mailbox.id
    await WebhookService(rt.uow, rt.clock).create(
        account_id, hook_url, ["message.created"], "bench-webhook-secret-0123456789"
    )

    stages = Stages()
    spool, worker = rt.spool, rt.spool_worker
    Spool.read_pcm = staticmethod(stages.wrap("spool read", Spool.read_pcm))  # type: ignore[method-assign]
    Spool.remove = staticmethod(stages.wrap("spool remove", Spool.remove))  # type: ignore[method-assign]
    deposits_mod.write_wav = stages.wrap("wav build", deposits_mod.write_wav)  # type: ignore[attr-defined]
    rt.store.put_file = stages.wrap_async("storage put", rt.store.put_file)  # type: ignore[method-assign]
    rt.store.get_bytes = stages.wrap_async("storage get", rt.store.get_bytes)  # type: ignore[method-assign]
    rt.store.open_range = stages.wrap_async("storage get", rt.store.open_range)  # type: ignore[method-assign]
    deposits = rt.deposits
    assert deposits is not None
    deposits.finalize = stages.wrap_async("finalize", deposits.finalize)  # type: ignore[method-assign]
    dispatcher = rt.email_dispatcher
    dispatcher._compose = stages.wrap_async("email compose", dispatcher._compose)  # type: ignore[method-assign]
    email_mod.wire_bytes = stages.wrap("email flatten", email_mod.wire_bytes)  # type: ignore[attr-defined]
    sender = dispatcher._sender
    sender.send = stages.wrap_async("smtp send", sender.send)  # type: ignore[method-assign]

    pcm = speech(args.seconds, 7)
    for n in range(args.messages + 1):
        if n == 1:  # the first message warms the code paths up and is not counted
            stages.cpu.clear()
        meta = SpoolMeta(
            call_id=f"call_{secrets.token_hex(8)}",
            account_id=account_id,
            mailbox_id=mailbox_id,
            caller="+12025550123",
            caller_name="Ada Lovelace",
            callee=NUMBER,
            started_at=iso(rt.clock.now()),
        )
        writer = spool.writer(meta)
        with stages.block("spool create"):
            writer.create()
        for block in np.array_split(pcm, max(1, len(pcm) // 1600)):
            writer.write(block)
        with stages.block("spool close"):
            entry = writer.close(EndedBy.HANGUP)
        with stages.block("post-call: store"):
            worker.submit(entry)
            await worker.wait_idle()
        if args.email:
            with stages.block("post-call: email"):
                sent = await dispatcher.run_once()
            assert sent == 1, f"email {n} not sent"
        with stages.block("post-call: webhook"):
            await rt.dispatcher.run_once()
    n = args.messages
    cpu: dict[str, float] = defaultdict(float, stages.cpu)
    per_call = await _before_beep(args, rt, account_id, mailbox_id)
    memory = await _email_memory(args, rt, account_id, mailbox_id) if args.email else {}
    emails = received_count(peer_proc) if args.email else 0

    def ms(value: float) -> float:
        return round(1000 * value / n, 3)

    split = {
        "spool read": ms(cpu["spool read"]),
        "wav build": ms(cpu["wav build"]),
        "storage put": ms(cpu["storage put"]),
        "db (finalize less wav and put)": ms(
            cpu["finalize"] - cpu["wav build"] - cpu["storage put"]
        ),
        "spool remove": ms(cpu["spool remove"]),
        "store, whole (submit to idle)": ms(cpu["post-call: store"]),
        "email compose (db, storage get, MIME)": ms(cpu["email compose"]),
        "of which storage get or open": ms(cpu["storage get"]),
        "email flatten": ms(cpu["email flatten"]),
        "smtp send (less flatten)": ms(cpu["smtp send"] - cpu["email flatten"]),
        "email, whole (run_once)": ms(cpu["post-call: email"]),
        "webhook, whole (run_once)": ms(cpu["post-call: webhook"]),
    }
    total = cpu["post-call: store"] + cpu["post-call: email"] + cpu["post-call: webhook"]
    return {
        "db": args.db,
        "messages": n,
        "seconds": args.seconds,
        "email": args.email,
        "emails_received": emails,
        "post_call_cpu_ms_per_message": round(1000 * total / n, 3),
        "post_call_stages_ms": split,
        "spool_us_per_call": {
            "create": round(1e6 * cpu["spool create"] / n, 1),
            "close": round(1e6 * cpu["spool close"] / n, 1),
        },
        "before_beep_us_per_call": per_call,
        "email_memory": memory,
        "stages_ms_inclusive": {name: ms(value) for name, value in sorted(cpu.items())},
    }


async def _before_beep(
    args: argparse.Namespace, rt: Runtime, account_id: str, mailbox_id: str
) -> dict[str, float]:
    await NumberService(rt.uow, rt.clock, "US").create(
        account_id, NUMBER, DestKind.VOICEMAIL, mailbox_id
    )
    router = rt.call_router()
    await router.route(NUMBER)  # the cache warm, as for a number called a moment ago
    found: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.calls):
        start = time.process_time()
        await router.route(NUMBER)
        found["route (cached number, usage read)"].append(time.process_time() - start)
        start = time.process_time()
        async with rt.lookups() as uow:
            await uow.messages.usage(account_id, [mailbox_id])
        found["usage alone"].append(time.process_time() - start)
    return {name: round(1e6 * statistics.fmean(values), 1) for name, values in found.items()}


async def _email_memory(
    args: argparse.Namespace, rt: Runtime, account_id: str, mailbox_id: str
) -> dict[str, int]:
    """Peak traced memory while one email with a `--memory-seconds` WAV is composed and sent."""
    assert rt.spool and rt.spool_worker and rt.email_dispatcher
    meta = SpoolMeta(
        call_id=f"call_{secrets.token_hex(8)}",
        account_id=account_id,
        mailbox_id=mailbox_id,
        caller="+12025550123",
        caller_name=None,
        callee=NUMBER,
        started_at=iso(rt.clock.now()),
    )
    writer = rt.spool.open(meta)
    writer.write(speech(args.memory_seconds, 3))
    rt.spool_worker.submit(writer.close(EndedBy.FINISH_KEY))
    await rt.spool_worker.wait_idle()
    async with rt.uow() as uow:
        message = await uow.messages.get_by_call_id(account_id, meta.call_id)
    assert message is not None
    tracemalloc.start()
    try:
        sent = await rt.email_dispatcher.run_once()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {"wav_bytes": message.size_bytes, "peak_traced_bytes": peak, "sent": sent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--calls", type=int, default=400, help="route look-ups timed")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--no-email", dest="email", action="store_false")
    parser.add_argument("--memory-seconds", type=float, default=300.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
