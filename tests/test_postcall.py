"""The post-call worker process (`afterbeep.postcall`): the child's orders and start-up scan, run
in this process on both backends; and the real child process, started, killed and restarted."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from afterbeep.audio.rendition import read_wav_pcm
from afterbeep.postcall import PostCallProcess, run_child
from afterbeep.telephony.interface import EndedBy
from afterbeep.telephony.spool import Spool
from tests.conftest import Backend, make_settings
from tests.fixtures.smtp import SmtpServer, smtp_server
from tests.services.test_deposits import PUBLIC_URL, SENDER, WAIT, Rig, open_rig, speech


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


# The child runs at SCHED_IDLE: while the suite's other worker holds both cores it gets almost
# no CPU, so its work is waited for longer (a bound, never a speed assertion).
CHILD_WAIT = 90.0


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Wait (bounded) for work another task or process does; never a speed assertion."""
    async with asyncio.timeout(CHILD_WAIT):
        while not await condition():  # noqa: ASYNC110  (no event to wait on)
            await asyncio.sleep(0.05)


async def stored(rig: Rig, count: int) -> bool:
    return len(await rig.messages()) >= count


def _emails_with_wav(smtp: SmtpServer) -> int:
    return sum(
        1
        for m in smtp.messages()
        if any(p.get_content_type() == "audio/wav" for p in m.message.iter_attachments())
    )


async def test_the_child_stores_closed_entries_found_and_named_and_nothing_else(
    backend: Backend, smtp: SmtpServer
) -> None:
    async with open_rig(backend, smtp.url()) as rig:
        mailbox_id = await rig.mailbox()
        waiting = rig.entry(mailbox_id, speech(3.0, seed=1), EndedBy.HANGUP)
        live = rig.entry(mailbox_id, speech(2.0, seed=2), ended_by=None)  # a call still going
        settings = make_settings(
            backend, smtp_url=smtp.url(), smtp_from=SENDER, public_url=PUBLIC_URL
        )
        orders = asyncio.StreamReader()
        child = asyncio.create_task(run_child(settings, orders))
        try:
            await until(lambda: stored(rig, 1))  # found in the spool at start
            named_pcm = speech(4.0, seed=3)
            named = rig.entry(mailbox_id, named_pcm, EndedBy.FINISH_KEY)
            orders.feed_data(f"entry {live.meta.call_id}\n".encode())  # not closed: not taken
            orders.feed_data(b"entry ../secret\n")  # not a call id
            orders.feed_data(f"entry {named.meta.call_id}\n".encode())
            await until(lambda: stored(rig, 2))
            await until(lambda: asyncio.sleep(0, _emails_with_wav(smtp) >= 2))
        finally:
            orders.feed_eof()
            async with asyncio.timeout(WAIT):
                await child
        by_call = {m.call_id: m for m in await rig.messages()}
        assert set(by_call) == {waiting.meta.call_id, named.meta.call_id}
        audio, _ = read_wav_pcm(await rig.store.get_bytes(by_call[named.meta.call_id].audio_key))
        assert np.array_equal(audio, named_pcm)
        assert not waiting.meta_path.exists() and not named.meta_path.exists()
        assert live.meta_path.exists() and live.pcm_path.exists()  # the parent's to recover


async def test_a_wake_order_sends_an_email_queued_by_the_parent_at_once(
    backend: Backend, smtp: SmtpServer
) -> None:
    async with open_rig(backend, smtp.url()) as rig:
        mailbox_id = await rig.mailbox()
        settings = make_settings(
            backend, smtp_url=smtp.url(), smtp_from=SENDER, public_url=PUBLIC_URL
        )
        orders = asyncio.StreamReader()
        child = asyncio.create_task(run_child(settings, orders))
        try:
            await asyncio.sleep(0.5)  # the child is up and idle (its next look is 30 s away)
            # Stored by the parent itself (as a ringless deposit to a local mailbox is):
            entry = rig.entry(mailbox_id, speech(3.0, seed=6), EndedBy.HANGUP)
            assert await rig.finalize(entry) is not None
            Spool.remove(entry)
            orders.feed_data(b"wake\n")
            await until(lambda: asyncio.sleep(0, _emails_with_wav(smtp) == 1))
        finally:
            orders.feed_eof()
            async with asyncio.timeout(WAIT):
                await child


def child_env(backend: Backend, smtp: SmtpServer) -> dict[str, str]:
    settings = {**backend.env, "smtp_url": smtp.url(), "smtp_from": SENDER, "public_url": PUBLIC_URL}
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("AFTERBEEP_")},
        **{f"AFTERBEEP_{name.upper()}": str(value) for name, value in settings.items()},
    }


# The process's priority, restart and stop are the same over every backend; what the child
# stores, and how, is tested on both by the tests above (the same code, run in this process).
# At SCHED_IDLE, while the suite's other worker keeps both cores busy, this test is the file's
# longest: once is enough.
@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
async def test_the_worker_process_runs_at_idle_priority_and_comes_back_after_a_kill(
    backend: Backend, smtp: SmtpServer
) -> None:
    async with open_rig(backend, smtp.url()) as rig:
        mailbox_id = await rig.mailbox()
        process = PostCallProcess(env=child_env(backend, smtp), restart_seconds=0.2)
        await process.start()
        try:
            first_pid = process.pid
            assert first_pid is not None
            assert os.sched_getscheduler(first_pid) == os.SCHED_IDLE
            process.submit(rig.entry(mailbox_id, speech(3.0, seed=4), EndedBy.HANGUP))
            await until(lambda: stored(rig, 1))
            # (An email the killed child had in hand would wait for its lease to run out.)
            await until(lambda: asyncio.sleep(0, _emails_with_wav(smtp) == 1))

            os.kill(first_pid, signal.SIGKILL)
            await until(lambda: asyncio.sleep(0, process.restarts == 1 and process.pid != first_pid))
            # Never named on stdin (as if it was written while the child was down):
            rig.entry(mailbox_id, speech(3.0, seed=5), EndedBy.HANGUP)
            await until(lambda: stored(rig, 2))
            await until(lambda: asyncio.sleep(0, _emails_with_wav(smtp) >= 2))
        finally:
            await process.stop()
        assert process.returncode == 0  # stopped by the end of its stdin, not killed
        assert rig.spool.entries() == []


def test_python_dash_m_afterbeep_is_the_command_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "afterbeep", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "serve" in done.stdout
