"""The callback, step by step, over FakeCalls with a fake Ringer (the agent's phones) and a fake
customer line: the agent answers and hears the prompt, then ringback while the customer is
called with the chosen caller id, then the bridge; every way it can end short of that."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from afterbeep.services.callbacks import CallbackOutcome
from afterbeep.services.contact_center import CallbackState
from afterbeep.telephony.fake import SAMPLES_PER_MS, FakeCall
from afterbeep.telephony.interface import Call
from afterbeep.telephony.prompts import prompt
from afterbeep.telephony.scripts.callback import (
    RINGBACK,
    CallbackCall,
    Dialed,
    run_callback,
)
from afterbeep.telephony.scripts.ringer import (
    BridgeEnd,
    Leg,
    RingOutcome,
    RingResult,
    RingTarget,
)

CUSTOMER = "+14155550199"
CALL_CENTER = "+12125550100"
DESK = RingTarget("sip:desk@192.0.2.1:5060", "usr_a/dev_desk")
MOBILE = RingTarget("sip:mobile@192.0.2.2:5060", "usr_a/dev_mobile")
MAX_STEPS = 100_000  # a fake dial waiting on an agent whose time never moves fails loudly


def plan(**fields: object) -> CallbackCall:
    base: dict[str, object] = {
        "agent_targets": (DESK, MOBILE),
        "customer_number": CUSTOMER,
        "caller_id": CALL_CENTER,
        "agent_ring_seconds": 20.0,
        "customer_ring_seconds": 30.0,
    }
    return CallbackCall(**{**base, **fields})  # type: ignore[arg-type]


@dataclass
class AgentPhones:
    """The Ringer: the agent's phones give `outcome`; an answer is the `agent` FakeCall."""

    agent: FakeCall
    outcome: RingOutcome = RingOutcome.ANSWERED
    end: BridgeEnd = BridgeEnd.CALLEE_HUNG_UP
    talk_ms: int = 4000
    rings: list[tuple[list[RingTarget], float, bool, str | None, bool]] = field(
        default_factory=list
    )
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
        self.rings.append((list(targets), timeout, sequential, caller_id, ringback))
        if self.outcome is RingOutcome.ANSWERED:
            return RingResult(RingOutcome.ANSWERED, self.agent, targets[0])
        return RingResult(self.outcome)

    async def bridge(self, call: Call, leg: Leg) -> BridgeEnd:
        self.bridged.append((call, leg))
        self.agent.now += self.talk_ms * SAMPLES_PER_MS
        return self.end


@dataclass
class Customer:
    """The customer's line: after `after_ms` of the agent's time, `outcome` (ANSWERED: the
    `call` FakeCall)."""

    agent: FakeCall
    outcome: RingOutcome = RingOutcome.ANSWERED
    after_ms: int = 3000
    call: FakeCall = field(default_factory=lambda: FakeCall(call_id="customer"))
    dials: list[tuple[str, str, float, int]] = field(default_factory=list)
    cancelled: bool = False

    async def dial(self, number: str, caller_id: str, *, timeout: float) -> Dialed:
        start = self.agent.now_ms
        self.dials.append((number, caller_id, timeout, start))
        try:
            for _ in range(MAX_STEPS):
                if self.agent.now_ms >= start + self.after_ms:
                    break
                await asyncio.sleep(0)
            else:
                raise AssertionError("the agent's time did not move while the customer rang")
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.outcome is RingOutcome.ANSWERED:
            return Dialed(RingOutcome.ANSWERED, self.call)
        return Dialed(self.outcome)


@dataclass
class States:
    seen: list[tuple[CallbackState, int]] = field(default_factory=list)
    agent: FakeCall | None = None

    def __call__(self, state: CallbackState) -> None:
        self.seen.append((state, self.agent.now_ms if self.agent else 0))


async def run(
    agent: FakeCall | None = None,
    call: CallbackCall | None = None,
    *,
    outcome: RingOutcome = RingOutcome.ANSWERED,
    customer: RingOutcome = RingOutcome.ANSWERED,
    after_ms: int = 3000,
    end: BridgeEnd = BridgeEnd.CALLEE_HUNG_UP,
    anchor: FakeCall | None = None,
) -> tuple[CallbackOutcome, FakeCall, AgentPhones, Customer, States]:
    agent = agent or FakeCall(call_id="agent", caller=None)
    phones = AgentPhones(agent, outcome, end)
    line = Customer(agent, customer, after_ms)
    states = States(agent=agent)
    result = await run_callback(
        anchor or FakeCall(call_id="anchor"), call or plan(), phones, line, states
    )
    return result, agent, phones, line, states


def starts_with(heard: np.ndarray, audio: np.ndarray, at: int = 0) -> bool:
    return bool(np.array_equal(heard[at : at + len(audio)], audio))


async def test_the_agent_answers_hears_the_prompt_then_ringback_and_is_bridged() -> None:
    result, agent, phones, line, states = await run(after_ms=3000)
    assert result is CallbackOutcome.COMPLETED
    # the agent's phones: all of them, for the agent's ring time, showing the customer's number
    [(targets, timeout, sequential, caller_id, ringback)] = phones.rings
    assert targets == [DESK, MOBILE] and timeout == 20.0 and not sequential
    assert caller_id == CUSTOMER and ringback is False
    # the prompt first, then the customer is called with the call center's number
    connecting = prompt("cb-connecting")
    heard = agent.heard()
    assert starts_with(heard, connecting)
    [(number, shown, ring_s, dialled_at_ms)] = line.dials
    assert (number, shown, ring_s) == (CUSTOMER, CALL_CENTER, 30.0)
    assert dialled_at_ms == len(connecting) // SAMPLES_PER_MS
    # ringback while it rang: the tone's first second right after the prompt
    assert starts_with(heard, RINGBACK[:8000], at=len(connecting))
    assert len(heard) - len(connecting) == 3000 * SAMPLES_PER_MS  # up to the customer's answer
    # bridged: the customer is the bridge's caller, the agent's phone its leg
    [(customer, leg)] = phones.bridged
    assert customer is line.call and leg is agent
    assert [s for s, _ in states.seen] == [CallbackState.CALLING_CUSTOMER, CallbackState.CONNECTED]
    assert states.seen[1][1] == len(heard) // SAMPLES_PER_MS  # connected when it answered
    assert agent.hung_up_by_us


@pytest.mark.parametrize("outcome", [RingOutcome.NO_ANSWER, RingOutcome.BUSY, RingOutcome.FAILED])
async def test_no_phone_of_the_agent_answers(outcome: RingOutcome) -> None:
    result, agent, phones, line, states = await run(outcome=outcome)
    assert result is CallbackOutcome.AGENT_NO_ANSWER
    assert line.dials == [] and phones.bridged == [] and states.seen == []
    assert agent.played == []


async def test_nothing_to_ring_is_no_answer() -> None:
    result, _, phones, line, _ = await run(
        call=plan(agent_targets=()), outcome=RingOutcome.NO_ANSWER
    )
    assert result is CallbackOutcome.AGENT_NO_ANSWER and line.dials == []
    assert phones.rings[0][0] == []


async def test_the_callback_given_up_while_the_agent_rings_is_canceled() -> None:
    result, _, _, line, _ = await run(outcome=RingOutcome.CALLER_GONE)
    assert result is CallbackOutcome.CANCELED and line.dials == []


@pytest.mark.parametrize(
    ("customer", "expected", "told"),
    [
        (RingOutcome.BUSY, CallbackOutcome.CUSTOMER_BUSY, "cb-busy"),
        (RingOutcome.NO_ANSWER, CallbackOutcome.CUSTOMER_NO_ANSWER, "cb-no-answer"),
        (RingOutcome.FAILED, CallbackOutcome.CUSTOMER_FAILED, "cb-failed"),
    ],
)
async def test_the_customer_does_not_answer_and_the_agent_is_told_why(
    customer: RingOutcome, expected: CallbackOutcome, told: str
) -> None:
    result, agent, phones, _, states = await run(customer=customer, after_ms=2000)
    assert result is expected
    assert phones.bridged == [] and agent.hung_up_by_us
    assert [s for s, _ in states.seen] == [CallbackState.CALLING_CUSTOMER]
    last_start, last = agent.played[-1]
    assert np.array_equal(last, prompt(told))
    connecting = len(prompt("cb-connecting"))
    assert last_start == connecting + 2000 * SAMPLES_PER_MS  # told once it was known


async def test_the_agent_hangs_up_during_ringback_and_the_customers_call_is_given_up() -> None:
    connecting_ms = len(prompt("cb-connecting")) // SAMPLES_PER_MS
    agent = FakeCall(call_id="agent", hangup_at_ms=connecting_ms + 1500)
    result, _, phones, line, _ = await run(agent, after_ms=10_000)
    assert result is CallbackOutcome.AGENT_HUNG_UP
    assert len(line.dials) == 1 and line.cancelled and phones.bridged == []


async def test_the_agent_hangs_up_during_the_prompt_and_the_customer_is_never_called() -> None:
    agent = FakeCall(call_id="agent", hangup_at_ms=300)
    result, _, phones, line, states = await run(agent)
    assert result is CallbackOutcome.AGENT_HUNG_UP
    assert line.dials == [] and phones.bridged == []
    assert [s for s, _ in states.seen] == [CallbackState.CALLING_CUSTOMER]


async def test_a_callback_cancelled_while_the_customer_rings_gives_up_both_calls() -> None:
    """The service shuts down: the customer's call is given up, the agent's hung up."""
    agent = FakeCall(call_id="agent")
    phones, line = AgentPhones(agent), Customer(agent, after_ms=10**9)
    task = asyncio.ensure_future(
        run_callback(FakeCall(call_id="anchor"), plan(), phones, line, States(agent=agent))
    )
    async with asyncio.timeout(5):
        while agent.now_ms < len(prompt("cb-connecting")) // SAMPLES_PER_MS + 5000:  # noqa: ASYNC110
            await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert line.cancelled and agent.hung_up_by_us and phones.bridged == []


async def test_a_bridge_that_cannot_start_is_a_failure() -> None:
    result, _, phones, _, _ = await run(end=BridgeEnd.FAILED)
    assert result is CallbackOutcome.CUSTOMER_FAILED and len(phones.bridged) == 1


@pytest.mark.parametrize("end", [BridgeEnd.CALLER_HUNG_UP, BridgeEnd.CALLEE_HUNG_UP])
async def test_either_side_hanging_up_completes_it(end: BridgeEnd) -> None:
    result, *_ = await run(end=end)
    assert result is CallbackOutcome.COMPLETED


async def test_the_prompts_are_in_the_accounts_language() -> None:
    _, agent, *_ = await run(call=plan(language="es"), customer=RingOutcome.BUSY)
    assert np.array_equal(agent.played[0][1], prompt("cb-connecting", "es"))
    assert np.array_equal(agent.played[-1][1], prompt("cb-busy", "es"))
    assert not np.array_equal(prompt("cb-busy", "es"), prompt("cb-busy", "en"))
