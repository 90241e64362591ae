"""A delivery worker stopped while its SIP deposit calls are up, on both backends.

The far end is a TelephonyServer run by the test: a line that answers and then holds the call
(records, never hangs up), or one that rings and never answers. The worker is stopped with a
short grace: the call is ended from our side (BYE once answered, CANCEL while it rings), the
attempt is recorded `interrupted`, and the send is `accepted` again with no lease, so the next
claim (here, this runtime's own next round) takes it at once.

And the first step of a stop alone (`stop_claiming`, what the signal does): a worker with a
drop in progress claims no other due send, and the drop goes on to its end.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import pytest

from afterbeep.db.repos.delivery import SqlDeliveryStore
from afterbeep.domain.drops import DropOutcome, DropResult
from afterbeep.services.delivery import DeliveryService
from afterbeep.services.ports.drops import DropRequest
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.delivery_worker import DeliveryWorker
from afterbeep.telephony.interface import CallEnded
from tests.conftest import Backend
from tests.drops.support import insert_media, insert_send, insert_setup, insert_use_case, row_of
from tests.drops.test_e2e import Line, callee, ring_until_cancelled
from tests.e2e.rig import api_of, speech
from tests.ringless.test_delivery import (
    NOON_EDT,
    OTHER,
    SQLITE,
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


class GatedDropper:
    """A DropDialer whose drops go on until the test lets them end (left in voicemail)."""

    def __init__(self) -> None:
        self.requests: list[DropRequest] = []
        self.started = asyncio.Event()
        self.finish = asyncio.Event()

    async def drop(self, request: DropRequest) -> DropResult:
        self.requests.append(request)
        self.started.set()
        await self.finish.wait()
        return DropResult(DropOutcome.LEFT_VOICEMAIL, 200)


@SQLITE
async def test_a_draining_worker_claims_nothing_more_and_lets_its_call_end(
    backend: Backend,
) -> None:
    clock = FakeClock(NOON_EDT)
    async with runtime_of(backend, clock) as rt, api_of(rt) as api:
        account_id = await account_id_of(rt, api)
        setup = await insert_setup(rt, account_id)
        uc = await insert_use_case(rt, account_id, setup)
        media = await insert_media(rt, account_id, speech(3.0))
        first = await insert_send(rt, account_id, setup, uc, media, technique="single")
        second = await insert_send(rt, account_id, setup, uc, media, technique="single")
        dropper = GatedDropper()
        assert rt.store is not None and rt.deposits is not None
        service = DeliveryService(
            SqlDeliveryStore(rt.db), rt.store, clock, rt.call_router(), rt.deposits, None,
            dropper=dropper,
        )
        worker = DeliveryWorker(
            SqlDeliveryStore(rt.db), service, clock, lease=timedelta(minutes=5), batch_size=1
        )
        await worker.start()
        async with asyncio.timeout(WAIT):
            await dropper.started.wait()
        worker.stop_claiming()  # the signal: no new work from now on
        dropper.finish.set()  # the call in progress goes on to its end
        async with asyncio.timeout(WAIT):
            await worker.stop(WAIT)
        assert len(dropper.requests) == 1
        done, waiting = (await row_of(rt, first), await row_of(rt, second))
        assert (done.status, done.claimed_until) == ("left_voicemail", None)
        assert (waiting.status, waiting.claimed_until, waiting.attempts) == ("accepted", None, 0)
