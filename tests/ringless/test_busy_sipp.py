"""A far end that is always busy, played by SIPp (tests/sipp/uas_busy.xml): the send is retried
after the use case's backoff (a fake clock moves it on) and ends `failed` with the busy reason
after `max_attempts`; SIPp's own message counts show exactly one INVITE and one ACK per attempt.
"""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pytest

from tests.conftest import Backend
from tests.e2e.rig import SCENARIOS, api_of, speech
from tests.ringless.test_delivery import (
    NOON_EDT,
    OTHER,
    WAIT,
    FakeClock,
    account_id_of,
    add_send,
    attempts_of,
    ringless_setup,
    runtime_of,
    send_row,
)
from tests.sip import conftest as sip_rig
from tests.sip.conftest import free_udp_port

sipp_bin = sip_rig.sipp_bin

SQLITE = pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
ATTEMPTS = 3


async def busy_uas(sipp: str, cwd: Path, port: int, calls: int) -> asyncio.subprocess.Process:
    """SIPp answering `calls` INVITEs with 486 on 127.0.0.1:`port`, then exiting."""
    return await asyncio.create_subprocess_exec(
        sipp,
        "-sf",
        str(SCENARIOS / "uas_busy.xml"),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-m",
        str(calls),
        "-nostdin",
        "-timeout",
        f"{int(WAIT * 2)}s",
        "-trace_counts",
        "-trace_err",
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


def final_counts(cwd: Path) -> dict[str, int]:
    """The last row of SIPp's `-trace_counts` file: counter name → value."""
    (path,) = cwd.glob("uas_busy_*_counts.csv")
    rows = list(csv.reader(io.StringIO(path.read_text()), delimiter=";"))
    header, last = rows[0], rows[-1]
    return {name: int(value) for name, value in zip(header, last, strict=False) if name[:1].isdigit()}


@SQLITE
async def test_busy_sipp_far_end_is_retried_then_fails(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    clock = FakeClock(NOON_EDT)
    port = free_udp_port()
    cwd = tmp_path
    sipp = await busy_uas(sipp_bin, cwd, port, ATTEMPTS)
    try:
        async with runtime_of(backend, clock, sip=True) as rt, api_of(rt) as api:
            account_id = await account_id_of(rt, api)
            ids = await ringless_setup(
                rt,
                account_id,
                speech(10.0),
                deposit_uri=f"sip:{{to}}@127.0.0.1:{port}",
                max_attempts=ATTEMPTS,
                backoff=1,  # the smallest backoff allowed; 1 s, then 2 s (on the fake clock)
            )
            send_id = await add_send(rt, account_id, ids, OTHER)
            worker = rt.delivery()
            seen = []
            for wait in (0, 0.5, 0.5, 1.5, 0.5):
                clock.advance(wait)
                async with asyncio.timeout(WAIT):
                    await worker.run_once()
                row = await send_row(rt, send_id)
                seen.append((row.status, row.attempts))
            assert seen == [
                ("accepted", 1),
                ("accepted", 1),  # 0.5 s: still backing off
                ("accepted", 2),
                ("accepted", 2),
                ("failed", 3),
            ]
            assert row.failure_reason == "486 Busy Here"
            attempts = await attempts_of(rt, send_id)
            assert [(a.number, a.sip_code, a.outcome) for a in attempts] == [
                (n, 486, "not_delivered") for n in (1, 2, 3)
            ]
        async with asyncio.timeout(WAIT):
            output, _ = await sipp.communicate()
    finally:
        if sipp.returncode is None:
            sipp.kill()
            await sipp.wait()
    assert sipp.returncode == 0, output.decode(errors="replace")
    counts = final_counts(cwd)
    assert counts["0_INVITE_Recv"] == ATTEMPTS, counts
    assert counts["1_486_Sent"] == ATTEMPTS, counts
    assert counts["2_ACK_Recv"] == ATTEMPTS, counts
    assert counts["0_INVITE_Unexp"] == counts["2_ACK_Unexp"] == 0, counts
