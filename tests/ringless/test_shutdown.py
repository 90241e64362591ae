"""A delivery worker stopped while its SIP deposit calls are up, on both backends.

The far end is a TelephonyServer run by the test: a line that answers and then holds the call
(records, never hangs up), or one that rings and never answers. The worker is stopped with a
short grace: the call is ended from our side (BYE once answered, CANCEL while it rings), the
attempt is recorded `interrupted`, and the send is `accepted` again with no lease, so the next
claim (here, this runtime's own next round) takes it at once.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from afterbeep.telephony.call import SipCall
from afterbeep.telephony.interface import CallEnded
from tests.conftest import Backend
from tests.drops.test_e2e import Line, callee, ring_until_cancelled
from tests.e2e.rig import api_of, speech
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

pytestmark = pytest.mark.timeout(120)


async def answer_and_hold(call: SipCall, line: Line) -> None:
    await call.answer()
    line.answered = asyncio.get_running_loop().time()
    with contextlib.suppress(CallEnded):
        await call.record(line, max_seconds=WAIT, silence_seconds=WAIT)


@pytest.mark.parametrize("far_end", ["answers and holds", "rings forever"])
async def test_a_stopped_worker_hangs_up_records_interrupted_and_releases(
    backend: Backend, far_end: str
) -> None:
    clock = FakeClock(NOON_EDT)
    behaviour = answer_and_hold if far_end == "answers and holds" else ring_until_cancelled
    async with (
        callee(behaviour) as owner,
        runtime_of(backend, clock, sip=True) as rt,
        api_of(rt) as api,
    ):
        account_id = await account_id_of(rt, api)
        ids = await ringless_setup(
            rt, account_id, speech(10.0), deposit_uri=f"sip:{{to}}@127.0.0.1:{owner.port}"
        )
        send_id = await add_send(rt, account_id, ids, OTHER)
        worker = rt.delivery()
        await worker.start()
        async with asyncio.timeout(WAIT):
            while not owner.lines or (far_end == "answers and holds" and not owner.lines[0].blocks):  # noqa: ASYNC110 (no event to wait on)
                await asyncio.sleep(0.05)
        async with asyncio.timeout(WAIT):
            await worker.stop(0.3)
            await owner.idle()
        (line,) = owner.lines
        if far_end == "answers and holds":
            assert line.ended == "remote"  # our BYE
        else:
            assert line.cancelled is not None and line.answered is None  # our CANCEL
        row = await send_row(rt, send_id)
        assert (row.status, row.claimed_until, row.attempts) == ("accepted", None, 1)
        (attempt,) = await attempts_of(rt, send_id)
        assert (attempt.outcome, attempt.reason) == ("interrupted", "interrupted by shutdown")
        assert attempt.ended_at is not None
