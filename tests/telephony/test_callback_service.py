"""`SipCallbacks` around the call application, with fakes for the planner, the directory, the
agent's phones and the customer's line, and a clock the tests move: what `start` refuses, the
status as the callback goes, the result told once with its times, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import cast

import pytest

from afterbeep.domain.errors import InvalidInput, Unavailable
from afterbeep.domain.ids import is_id
from afterbeep.domain.ringless import SetupNumber, TelephonySetup, Transport
from afterbeep.services.callbacks import (
    CallbackOutcome,
    CallbackPlan,
    CallbackPlanner,
    CallbackResult,
)
from afterbeep.services.contact_center import CallbackRequest, CallbackState, CallbackStatus
from afterbeep.services.device_outbound import OutsideCall
from afterbeep.telephony.call import CallSettings, SipCall
from afterbeep.telephony.callback import AGENT_DISPLAY_NAME, SipCallbacks, TrunkLine
from afterbeep.telephony.delivery_worker import Pacer, TrunkLimits
from afterbeep.telephony.fake import FakeCall
from afterbeep.telephony.interface import Call
from afterbeep.telephony.scripts.callback import CustomerLine, Dialed
from afterbeep.telephony.scripts.ringer import (
    BridgeEnd,
    Leg,
    RingOutcome,
    RingResult,
    RingTarget,
)
from afterbeep.telephony.server import TelephonyServer

ACCOUNT = "acc_01jg8asp59ps9rtt7azhrhvcre"
AGENT = "usr_01jg8asp59ps9rtt7azhrhvcre"
CUSTOMER = "+14155550199"
CALL_CENTER = "+12125550100"
AT = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
DESK = RingTarget("sip:desk@192.0.2.1:5060", f"{AGENT}/dev_desk")
SETUP = TelephonySetup(
    id="setup_1", account_id=ACCOUNT, name="trunk", trunk_host="192.0.2.9", trunk_port=5060,
    transport=Transport.UDP, username=None, password_ref=None, outbound_proxy=None,
    from_domain=None, max_calls_per_second=1.0, max_concurrent_calls=1,
    numbers=(SetupNumber(CALL_CENTER, True),), deposit_uri="", deposit_headers={},
    created_at=AT, updated_at=AT,
)  # fmt: skip


def request(**fields: object) -> CallbackRequest:
    base: dict[str, object] = {
        "account_id": ACCOUNT,
        "agent_user_id": AGENT,
        "customer_number": CUSTOMER,
        "caller_id": CALL_CENTER,
        "voice_call_id": "vc_01jg8asp59ps9rtt7azhrhvcre",
        "work_item_id": "wi_01jg8asp59ps9rtt7azhrhvcre",
    }
    return CallbackRequest(**{**base, **fields})  # type: ignore[arg-type]


class MovableClock:
    def __init__(self) -> None:
        self.at = AT

    def now(self) -> datetime:
        return self.at


class Planner(CallbackPlanner):
    def __init__(self, refusal: Exception | None = None) -> None:  # no database: no super()
        self.refusal = refusal

    async def plan(self, request: CallbackRequest) -> CallbackPlan:
        if self.refusal is not None:
            raise self.refusal
        return CallbackPlan(OutsideCall(SETUP, None, CUSTOMER, request.caller_id), "en")


@dataclass
class Directory:
    targets: list[RingTarget] = field(default_factory=lambda: [DESK])

    async def user_targets(self, account_id: str, user_id: str) -> list[RingTarget]:
        return list(self.targets)

    async def device_targets(self, account_id: str, device_id: str) -> list[RingTarget]:
        return []


@dataclass
class Phones:
    """The agent's phones: ring until `answer` is set (or the anchor ends), then `outcome`;
    a bridge moves the clock by `talk` and ends when `hang_up` is set."""

    clock: MovableClock
    outcome: RingOutcome = RingOutcome.ANSWERED
    talk: timedelta = timedelta(seconds=42)
    answer: asyncio.Event = field(default_factory=asyncio.Event)
    hang_up: asyncio.Event = field(default_factory=asyncio.Event)
    agent: FakeCall = field(default_factory=lambda: FakeCall(call_id="agent"))
    anchors: list[Call] = field(default_factory=list)
    caller_ids: list[str | None] = field(default_factory=list)
    bridged: list[tuple[Call, Leg]] = field(default_factory=list)

    async def ring(
        self,
        call: Call,
        targets: Sequence[RingTarget],
        *,
        timeout: float,
        sequential: bool = False,
        caller_id: str | None = None,
        ringback: bool = True,
    ) -> RingResult:
        self.anchors.append(call)
        self.caller_ids.append(caller_id)
        anchor = cast(SipCall, call)
        answered = asyncio.ensure_future(self.answer.wait())
        gone = asyncio.ensure_future(anchor.ended.wait())
        try:
            await asyncio.wait([answered, gone], return_when=asyncio.FIRST_COMPLETED)
        finally:
            answered.cancel()
            gone.cancel()
        if anchor.ended.is_set():
            return RingResult(RingOutcome.CALLER_GONE)
        if self.outcome is RingOutcome.ANSWERED:
            return RingResult(RingOutcome.ANSWERED, self.agent, targets[0])
        return RingResult(self.outcome)

    async def bridge(self, call: Call, leg: Leg) -> BridgeEnd:
        self.bridged.append((call, leg))
        await self.hang_up.wait()
        self.clock.at += self.talk
        return BridgeEnd.CALLER_HUNG_UP


@dataclass
class Line:
    """The customer's line: `outcome` at once (ANSWERED with a FakeCall)."""

    outcome: RingOutcome = RingOutcome.ANSWERED
    dials: list[tuple[str, str]] = field(default_factory=list)

    def __call__(
        self,
        server: TelephonyServer,
        plan: OutsideCall,
        pacer: Pacer,
        held: contextlib.AsyncExitStack,
    ) -> CustomerLine:
        return self

    async def dial(self, number: str, caller_id: str, *, timeout: float) -> Dialed:
        self.dials.append((number, caller_id))
        if self.outcome is RingOutcome.ANSWERED:
            return Dialed(RingOutcome.ANSWERED, FakeCall(call_id="customer"))
        return Dialed(self.outcome)


@dataclass
class Results:
    recorded: list[CallbackResult] = field(default_factory=list)
    told: asyncio.Event = field(default_factory=asyncio.Event)

    async def record(self, result: CallbackResult) -> None:
        self.recorded.append(result)
        self.told.set()


@dataclass
class Rig:
    callbacks: SipCallbacks
    clock: MovableClock
    phones: Phones
    line: Line
    results: Results
    directory: Directory
    server: list[TelephonyServer | None]


def rig(
    *,
    refusal: Exception | None = None,
    outcome: RingOutcome = RingOutcome.ANSWERED,
    customer: RingOutcome = RingOutcome.ANSWERED,
) -> Rig:
    clock = MovableClock()
    phones, line, results, directory = (
        Phones(clock, outcome),
        Line(customer),
        Results(),
        Directory(),
    )
    fake_server = SimpleNamespace(media=object(), call_settings=CallSettings())
    server: list[TelephonyServer | None] = [cast(TelephonyServer, fake_server)]
    callbacks = SipCallbacks(
        Planner(refusal),
        directory,
        lambda: server[0],
        lambda: phones,
        Pacer(),
        clock,
        results,
        customer_line=line,
        agent_ring_seconds=5.0,
        customer_ring_seconds=5.0,
    )
    return Rig(callbacks, clock, phones, line, results, directory, server)


async def state_becomes(rig: Rig, callback_id: str, state: CallbackState) -> CallbackStatus:
    async with asyncio.timeout(5):
        while True:
            status = await rig.callbacks.status(ACCOUNT, callback_id)
            assert status is not None
            if status.state is state:
                return status
            await asyncio.sleep(0)


async def test_a_callback_goes_from_calling_the_agent_to_completed_and_its_result_is_told() -> None:
    r = rig()
    started = await r.callbacks.start(request())
    assert is_id(started.id, "cb") and started.state is CallbackState.CALLING_AGENT
    assert started.reason is None
    await asyncio.sleep(0)
    [anchor] = r.phones.anchors  # the agent's phones ring for the callback's own call
    assert isinstance(anchor, SipCall) and anchor.caller_name == AGENT_DISPLAY_NAME
    assert r.phones.caller_ids == [CUSTOMER]  # they show the customer's number
    assert r.callbacks.running == 1
    r.clock.at += timedelta(seconds=7)  # the agent answers after 7 s
    r.phones.answer.set()
    await state_becomes(r, started.id, CallbackState.CONNECTED)
    assert r.line.dials == [(CUSTOMER, CALL_CENTER)]
    r.phones.hang_up.set()  # 42 s later, the customer hangs up
    status = await state_becomes(r, started.id, CallbackState.COMPLETED)
    assert status == CallbackStatus(started.id, CallbackState.COMPLETED, None)
    await r.results.told.wait()
    [result] = r.results.recorded
    assert result.outcome is CallbackOutcome.COMPLETED and result.callback_id == started.id
    assert (result.account_id, result.voice_call_id, result.work_item_id) == (
        ACCOUNT, request().voice_call_id, request().work_item_id,
    )  # fmt: skip
    assert result.started_at == AT and result.connected_at == AT + timedelta(seconds=7)
    assert result.ended_at == AT + timedelta(seconds=49) and result.duration == 42.0
    assert anchor.ended.is_set() and r.phones.agent.hung_up_by_us
    async with asyncio.timeout(5):
        while r.callbacks.running:  # noqa: ASYNC110 (the task's done-callback)
            await asyncio.sleep(0)


@pytest.mark.parametrize(
    ("outcome", "customer", "reason"),
    [
        (RingOutcome.NO_ANSWER, RingOutcome.ANSWERED, "agent_no_answer"),
        (RingOutcome.ANSWERED, RingOutcome.BUSY, "customer_busy"),
        (RingOutcome.ANSWERED, RingOutcome.NO_ANSWER, "customer_no_answer"),
        (RingOutcome.ANSWERED, RingOutcome.FAILED, "customer_failed"),
    ],
)
async def test_a_callback_that_fails_says_why_with_no_talk_time(
    outcome: RingOutcome, customer: RingOutcome, reason: str
) -> None:
    r = rig(outcome=outcome, customer=customer)
    started = await r.callbacks.start(request())
    r.phones.answer.set()
    status = await state_becomes(r, started.id, CallbackState.FAILED)
    assert status.reason == reason
    await r.results.told.wait()
    [result] = r.results.recorded
    assert result.outcome.value == reason and result.connected_at is None
    assert result.duration == 0.0 and r.phones.bridged == []


@pytest.mark.parametrize(
    "refusal",
    [
        InvalidInput("customer_number", "must be E.164"),
        Unavailable("not allowed", "outbound-not-allowed"),
    ],
)
async def test_what_the_planner_refuses_is_raised_and_nothing_rings(refusal: Exception) -> None:
    r = rig(refusal=refusal)
    with pytest.raises(type(refusal)):
        await r.callbacks.start(request())
    assert r.phones.anchors == [] and r.callbacks.running == 0


async def test_an_agent_without_a_registered_phone_is_unavailable() -> None:
    r = rig()
    r.directory.targets = []
    with pytest.raises(Unavailable) as raised:
        await r.callbacks.start(request())
    assert raised.value.error_id == "agent-not-registered" and r.callbacks.running == 0


async def test_without_sip_on_this_node_it_is_unavailable() -> None:
    r = rig()
    r.server[0] = None
    with pytest.raises(Unavailable) as raised:
        await r.callbacks.start(request())
    assert raised.value.error_id == "telephony-unavailable"


async def test_one_callback_at_a_time_per_agent_and_the_status_is_the_accounts_own() -> None:
    r = rig(outcome=RingOutcome.NO_ANSWER)
    first = await r.callbacks.start(request())
    with pytest.raises(Unavailable) as raised:
        await r.callbacks.start(request())
    assert raised.value.error_id == "agent-in-callback"
    other_agent = await r.callbacks.start(request(agent_user_id="usr_01jg8asp59ps9rtt7azhrhvcrf"))
    assert other_agent.id != first.id
    assert await r.callbacks.status("acc_01jg8asp59ps9rtt7azhrhvcrf", first.id) is None
    assert await r.callbacks.status(ACCOUNT, "cb_01jg8asp59ps9rtt7azhrhvcre") is None
    r.phones.answer.set()
    await state_becomes(r, first.id, CallbackState.FAILED)
    await state_becomes(r, other_agent.id, CallbackState.FAILED)
    again = await r.callbacks.start(request())  # the agent is free again
    assert again.id != first.id


async def test_shutdown_ends_a_callback_in_progress_as_canceled() -> None:
    r = rig()
    started = await r.callbacks.start(request())
    await asyncio.sleep(0)
    r.callbacks.drain()
    with pytest.raises(Unavailable):
        await r.callbacks.start(request(agent_user_id="usr_01jg8asp59ps9rtt7azhrhvcrf"))
    await r.callbacks.stop(timeout=0.0)
    assert r.callbacks.running == 0
    status = await r.callbacks.status(ACCOUNT, started.id)
    assert status == CallbackStatus(started.id, CallbackState.FAILED, "canceled")
    [result] = r.results.recorded
    assert result.outcome is CallbackOutcome.CANCELED
    assert cast(SipCall, r.phones.anchors[0]).ended.is_set()


async def test_finished_callbacks_are_kept_up_to_a_bound() -> None:
    r = rig(outcome=RingOutcome.NO_ANSWER)
    r.callbacks._keep = 2
    r.phones.answer.set()
    ids = []
    for _ in range(4):
        started = await r.callbacks.start(request())
        ids.append(started.id)
        await state_becomes(r, started.id, CallbackState.FAILED)
        async with asyncio.timeout(5):
            while r.callbacks.running:  # noqa: ASYNC110
                await asyncio.sleep(0)
    kept = [await r.callbacks.status(ACCOUNT, i) for i in ids]
    assert [k is not None for k in kept] == [False, False, True, True]


async def test_a_callback_that_breaks_is_a_failure_and_frees_the_agent() -> None:
    r = rig()

    async def broken(*args: object, **kwargs: object) -> RingResult:
        raise RuntimeError("a bug")

    r.phones.ring = broken  # type: ignore[method-assign]
    started = await r.callbacks.start(request())
    status = await state_becomes(r, started.id, CallbackState.FAILED)
    assert status.reason == "customer_failed"
    await r.results.told.wait()
    assert [x.outcome for x in r.results.recorded] == [CallbackOutcome.CUSTOMER_FAILED]
    await r.callbacks.start(request())  # the agent is free again


async def test_the_customer_waits_for_a_free_call_on_the_trunk_no_longer_than_its_ring() -> None:
    pacer = Pacer()
    limits = TrunkLimits(SETUP.max_calls_per_second, SETUP.max_concurrent_calls)  # one at once
    server = cast(TelephonyServer, SimpleNamespace())  # never dialled: no free call
    async with pacer.call_slot(SETUP.id, limits), contextlib.AsyncExitStack() as held:
        line = TrunkLine(server, OutsideCall(SETUP, None, CUSTOMER, CALL_CENTER), pacer, held)
        dialed = await line.dial(CUSTOMER, CALL_CENTER, timeout=0.05)
    assert dialed == Dialed(RingOutcome.FAILED)
