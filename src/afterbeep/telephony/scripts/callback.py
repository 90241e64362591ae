"""The callback: afterbeep calls an agent back to a customer, as the agent lives it.

1. The agent's registered phones ring (all at once; they show the customer's number).
2. The agent answers and hears "Connecting your callback."
3. The customer is called through the account's outbound path, with the number the call center
   chose as caller id; the agent hears ringback meanwhile (hanging up cancels that call).
4. The customer answers: the two are bridged until either hangs up. Busy, no answer or a
   failure: the agent hears which, and the call ends.

`on_state` is told when the customer is being called and when the two are connected (the
callback's status, and the start of its talk time). The result is how it ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import numpy as np

from afterbeep.audio.tones import dual_tone, silence
from afterbeep.services.callbacks import CallbackOutcome
from afterbeep.services.contact_center import CallbackState
from afterbeep.telephony.interface import Call, CallEnded
from afterbeep.telephony.prompts import prompt
from afterbeep.telephony.scripts.pbx import PIECE_SAMPLES, stop
from afterbeep.telephony.scripts.ringer import (
    BridgeEnd,
    Ringer,
    RingOutcome,
    RingTarget,
)

__all__ = ["RINGBACK", "CallbackCall", "CustomerLine", "Dialed", "run_callback"]

# North American ringback, 440+480 Hz, 2 s on, 4 s off (what `SipRinger` plays a waiting caller).
RINGBACK = np.concatenate([dual_tone(440, 480, 2000, amplitude=0.2), silence(4000)])
RINGBACK.setflags(write=False)

_TOLD = {
    CallbackOutcome.CUSTOMER_BUSY: "cb-busy",
    CallbackOutcome.CUSTOMER_NO_ANSWER: "cb-no-answer",
    CallbackOutcome.CUSTOMER_FAILED: "cb-failed",
}
_CUSTOMER_ENDS = {
    RingOutcome.BUSY: CallbackOutcome.CUSTOMER_BUSY,
    RingOutcome.NO_ANSWER: CallbackOutcome.CUSTOMER_NO_ANSWER,
}


@dataclass(frozen=True, slots=True)
class Dialed:
    """How a call to the customer went: ANSWERED (with the call), BUSY, NO_ANSWER or FAILED."""

    outcome: RingOutcome
    call: Call | None = None


class CustomerLine(Protocol):
    async def dial(self, number: str, caller_id: str, *, timeout: float) -> Dialed:
        """Call `number` out, showing `caller_id`, for at most `timeout` seconds. Cancelled,
        the call is given up (CANCEL)."""
        ...


@dataclass(frozen=True, slots=True)
class CallbackCall:
    agent_targets: Sequence[RingTarget]  # the agent's registered phones
    customer_number: str  # E.164
    caller_id: str  # E.164, what the customer sees
    agent_ring_seconds: float
    customer_ring_seconds: float
    language: str = "en"  # the account's, for the prompts the agent hears


async def run_callback(
    anchor: Call,
    call: CallbackCall,
    ringer: Ringer,
    line: CustomerLine,
    on_state: Callable[[CallbackState], None],
) -> CallbackOutcome:
    """Run one callback. `anchor` is what the `Ringer` rings the agent for: the callback's own
    call, never answered; ending it gives up ringing the agent."""
    rung = await ringer.ring(
        anchor,
        call.agent_targets,
        timeout=call.agent_ring_seconds,
        caller_id=call.customer_number,
        ringback=False,
    )
    if rung.outcome is RingOutcome.CALLER_GONE:
        return CallbackOutcome.CANCELED
    if rung.outcome is not RingOutcome.ANSWERED or rung.leg is None:
        return CallbackOutcome.AGENT_NO_ANSWER
    agent_leg = rung.leg
    agent = cast(Call, agent_leg)  # the legs a Ringer answers are calls (`SipCall`)
    try:
        on_state(CallbackState.CALLING_CUSTOMER)
        await agent.play(prompt("cb-connecting", call.language))
        dialed = await _dial_over_ringback(agent, line, call)
        if dialed.outcome is not RingOutcome.ANSWERED or dialed.call is None:
            outcome = _CUSTOMER_ENDS.get(dialed.outcome, CallbackOutcome.CUSTOMER_FAILED)
            with contextlib.suppress(CallEnded):
                await agent.play(prompt(_TOLD[outcome], call.language))
            return outcome
        on_state(CallbackState.CONNECTED)
        # The customer is the bridge's caller: the agent's phone is the leg the Ringer answered.
        end = await ringer.bridge(dialed.call, agent_leg)
        if end is BridgeEnd.FAILED:
            return CallbackOutcome.CUSTOMER_FAILED
        return CallbackOutcome.COMPLETED
    except CallEnded:
        return CallbackOutcome.AGENT_HUNG_UP
    finally:
        await agent_leg.hangup()


async def _dial_over_ringback(agent: Call, line: CustomerLine, call: CallbackCall) -> Dialed:
    """Dial the customer while the agent hears ringback; CallEnded when the agent hangs up
    first (the customer's call is then given up, or hung up if it was just answered)."""
    dialing = asyncio.ensure_future(
        line.dial(call.customer_number, call.caller_id, timeout=call.customer_ring_seconds)
    )
    at = 0
    try:
        while not dialing.done():
            piece = RINGBACK[at : at + PIECE_SAMPLES]
            at = (at + len(piece)) % len(RINGBACK)
            player = asyncio.ensure_future(agent.play(piece))
            await asyncio.wait([player, dialing], return_when=asyncio.FIRST_COMPLETED)
            if dialing.done():
                await stop(player)
                break
            player.result()
        return dialing.result()
    except BaseException:
        await _give_up(dialing)
        raise


async def _give_up(dialing: asyncio.Future[Dialed]) -> None:
    answered = None
    if dialing.done() and not dialing.cancelled() and dialing.exception() is None:
        answered = dialing.result().call
    await stop(dialing)
    if answered is not None:
        with contextlib.suppress(CallEnded):
            await answered.hangup()
