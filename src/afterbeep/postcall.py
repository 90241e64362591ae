"""The post-call worker: a child process of `afterbeep serve` that stores finished recordings
and sends their notifications, away from the event loop that answers calls.

Storing a message (WAV upload, the database row, queueing the email and the webhook) and
sending its email cost about three times the CPU of handling the call itself; run on the loop
that reads SIP and RTP, they made new INVITEs wait in the socket behind them. In a process of
its own, at the lowest CPU priority (`SCHED_IDLE`: it runs when the call process does not
want the CPU), that work can no longer delay a call, nor take the GIL from it. What it has not
done yet is on disk (closed spool entries, outbox rows), so falling behind under load only
delays messages; nothing is lost.

Parent side, `PostCallProcess`: starts `python -m afterbeep postcall`, hands each closed spool
entry over as a line `entry <call_id>` on the child's stdin (`wake` asks it to look at the
email outbox now), and restarts the child if it dies. A line written while the child is down
is not needed: the child takes every closed entry in the spool when it starts, and looks again
every few seconds. Entries whose call never ended (a crash) stay with the parent's start-up
recovery, which runs before calls are taken.

Child side, `run_child`: a `Runtime` without SIP or HTTP, its email and webhook dispatchers, the
transcription worker (`transcribe` on stdin wakes it) and a `SpoolWorker` for closed entries.
End of stdin (the parent stopped, or died) stops it: work in progress gets a grace period, the
rest stays on disk for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from afterbeep.config import Settings
    from afterbeep.telephony.spool import SpoolEntry

log = logging.getLogger("afterbeep.postcall")

RESCAN_SECONDS = 5.0


def child_command() -> list[str]:
    return [sys.executable, "-m", "afterbeep", "postcall"]


class PostCallProcess:
    """The parent's handle on the post-call worker process (see the module docstring)."""

    def __init__(
        self,
        command: Sequence[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        restart_seconds: float = 1.0,
        stop_grace: float = 15.0,
        on_mailbox_changed: Callable[[str, str], None] | None = None,
    ) -> None:
        self._command = list(command or child_command())
        self._env = dict(env) if env is not None else None
        self._restart_seconds = restart_seconds
        self._stop_grace = stop_grace
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._stopping = False
        self.restarts = 0
        # The child saves deposits: it reports each mailbox it changed on a pipe of its own
        # (fd MWI_FD_ENV), read here and passed on (message-waiting NOTIFYs are sent by SIP).
        self._on_mailbox_changed = on_mailbox_changed
        self._readers: set[asyncio.Task[None]] = set()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    async def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="postcall-supervisor")
        await self._started.wait()

    def submit(self, entry: SpoolEntry) -> None:
        """Hand a closed spool entry over (a `SpoolHandoff`)."""
        self._send(f"entry {entry.meta.call_id}\n")

    def wake_email(self) -> None:
        """An email was queued by this process: the child sends it now, not at its next look."""
        self._send("wake\n")

    def wake_transcription(self) -> None:
        """A transcription job was queued by this process (a media upload)."""
        self._send("transcribe\n")

    async def _read_changes(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        pipe = os.fdopen(fd, "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        try:
            while line := await reader.readline():
                account_id, _, mailbox_id = line.decode(errors="replace").strip().partition(" ")
                if account_id and mailbox_id and self._on_mailbox_changed is not None:
                    try:
                        self._on_mailbox_changed(account_id, mailbox_id)
                    except Exception:
                        log.exception("post-call worker: mailbox change not passed on")
        finally:
            transport.close()

    async def stop(self) -> None:
        """Close the child's stdin and wait for it to finish; kill it after the grace period."""
        self._stopping = True
        process = self._process
        if process is not None and process.returncode is None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), self._stop_grace)
            except TimeoutError:
                log.warning("post-call worker did not stop in time; killing it")
                process.kill()
                await process.wait()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for reader in list(self._readers):
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)

    def _send(self, line: str) -> None:
        process = self._process
        if process is None or process.stdin is None or process.returncode is not None:
            return  # the child takes every closed entry when it starts
        if process.stdin.is_closing():
            return
        process.stdin.write(line.encode())

    async def _supervise(self) -> None:
        while not self._stopping:
            read_fd, write_fd = os.pipe() if self._on_mailbox_changed else (-1, -1)
            env = self._env
            if write_fd >= 0:
                env = {**(env if env is not None else os.environ), MWI_FD_ENV: str(write_fd)}
            try:
                self._process = await asyncio.create_subprocess_exec(
                    *self._command,
                    stdin=asyncio.subprocess.PIPE,
                    env=env,
                    pass_fds=(write_fd,) if write_fd >= 0 else (),
                )
            except OSError:
                if write_fd >= 0:
                    os.close(read_fd)
                    os.close(write_fd)
                log.exception("post-call worker could not start; retrying")
                self._started.set()
                await asyncio.sleep(self._restart_seconds)
                continue
            lower_priority(self._process.pid)  # before the child has started any thread
            if write_fd >= 0:
                os.close(write_fd)
                reader = asyncio.create_task(self._read_changes(read_fd), name="postcall-mwi")
                self._readers.add(reader)
                reader.add_done_callback(self._readers.discard)
            self._started.set()
            code = await self._process.wait()
            if self._stopping:
                return
            self.restarts += 1
            log.error(
                "post-call worker exited with code %s; restarting in %.0f s",
                code,
                self._restart_seconds,
            )
            await asyncio.sleep(self._restart_seconds)


MWI_FD_ENV = "AFTERBEEP_POSTCALL_MWI_FD"


class PipeMessageWaiting:
    """The child's `MessageWaiting`: one line `<account> <mailbox>` per change on the pipe the
    parent reads (a line is written whole; when the pipe is full the change is dropped and
    logged rather than the loop blocked)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        os.set_blocking(fd, False)

    def mailbox_changed(self, account_id: str, mailbox_id: str) -> None:
        try:
            os.write(self._fd, f"{account_id} {mailbox_id}\n".encode())
        except OSError as exc:
            log.warning("mailbox change not passed to the SIP process: %s", exc)


def lower_priority(pid: int = 0) -> None:
    """Process `pid` (this one by default; its main thread, and the threads it starts later)
    runs only when nothing else wants the CPU; the nicest nice value where SCHED_IDLE is not
    available."""
    try:
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, 19)


async def _stdin_lines() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def run_child(settings: Settings, lines: asyncio.StreamReader | None = None) -> None:
    """The post-call worker's main: until end of input on `lines` (stdin by default)."""
    from afterbeep.app import Runtime

    reader = lines if lines is not None else await _stdin_lines()
    runtime = Runtime(settings)
    fd = os.environ.get(MWI_FD_ENV, "")
    if fd.isdigit():
        runtime.mwi.extra.append(PipeMessageWaiting(int(fd)).mailbox_changed)
    await runtime.start(workers=False)
    try:
        assert runtime.dispatcher and runtime.email_dispatcher and runtime.spool_worker
        assert runtime.spool is not None
        await runtime.dispatcher.start()
        await runtime.email_dispatcher.start()
        transcription = await runtime.start_transcription()
        worker, spool = runtime.spool_worker, runtime.spool
        await worker.recover(closed=True)
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), RESCAN_SECONDS)
            except TimeoutError:
                await worker.recover(closed=True)
                continue
            if not line:
                break
            command, _, argument = line.decode(errors="replace").strip().partition(" ")
            if command == "entry":
                entry = await asyncio.to_thread(spool.entry, argument)
                if entry is not None and entry.meta.ended_by is not None:
                    worker.submit(entry)
            elif command == "wake":
                runtime.email_dispatcher.notify()
            elif command == "transcribe":
                transcription.notify()
    finally:
        await runtime.stop()
