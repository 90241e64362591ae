"""`SipCallbacks`, the `Callbacks` port (issue 18) over SIP: afterbeep calls the agent's
registered phones, then the customer through the account's outbound path with the number the
call center chose as caller id, and bridges them (`telephony.scripts.callback`).

`start` checks the request (`services.callbacks.CallbackPlanner`: E.164 numbers, the account's
outbound setup, the network policy on its trunk; here: SIP running, the agent has a registered
phone and is in no other callback), then runs the callback in a task this object owns and
returns at once. The agent's phones are rung by the engine's `Ringer` for an *anchor*: a call
of our own that is never answered, standing for the callback (the phones show the customer's
number, named "Callback"). The customer's call goes through the setup's trunk (`dial_trunk`:
From and P-Asserted-Identity the caller id, the setup's credentials), paced with every other
call on that trunk (`Pacer`, its slot held until the call ends).

Each callback's status (`cb_...`) is kept in memory on this node, the last `keep` finished
ones too; its result is told once to `results` (the voice call's record). Nothing is stored
here. `stop` gives callbacks in progress until a deadline, then ends them (`canceled`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import Unavailable
from afterbeep.domain.ids import new_id
from afterbeep.domain.phone import mask
from afterbeep.services.callbacks import (
    CallbackOutcome,
    CallbackPlanner,
    CallbackResult,
    CallbackResults,
    state_of,
)
from afterbeep.services.contact_center import (
    CallbackRequest,
    Callbacks,
    CallbackState,
    CallbackStatus,
)
from afterbeep.services.device_outbound import OutsideCall
from afterbeep.telephony.call import DialFailed, SipCall
from afterbeep.telephony.delivery_worker import Pacer, TrunkLimits
from afterbeep.telephony.interface import Call
from afterbeep.telephony.outside import dial_trunk
from afterbeep.telephony.ringing import SipRinger, outcome_of
from afterbeep.telephony.scripts.callback import (
    CallbackCall,
    CustomerLine,
    Dialed,
    run_callback,
)
from afterbeep.telephony.scripts.ringer import (
    BridgeEnd,
    Directory,
    Leg,
    Ringer,
    RingOutcome,
    RingResult,
    RingTarget,
)
from afterbeep.telephony.server import TelephonyServer

__all__ = ["AGENT_DISPLAY_NAME", "LoggedResults", "SipCallbacks", "TrunkLine"]

log = logging.getLogger(__name__)

AGENT_RING_SECONDS = 30.0
CUSTOMER_RING_SECONDS = 45.0
KEEP_FINISHED = 10_000
AGENT_DISPLAY_NAME = "Callback"  # what the agent's phone shows with the customer's number


class LoggedResults:
    """`CallbackResults` that only logs (until a voice call record takes the results)."""

    async def record(self, result: CallbackResult) -> None:
        log.info(
            "callback %s for voice call %s: %s after %.1f s connected",
            result.callback_id,
            result.voice_call_id,
            result.outcome.value,
            result.duration,
        )


class TrunkLine:
    """`CustomerLine` through one account's telephony setup: the trunk's pacing slot is taken
    on `held` (the callback's), so it is kept until the callback ends."""

    def __init__(
        self,
        server: TelephonyServer,
        plan: OutsideCall,
        pacer: Pacer,
        held: contextlib.AsyncExitStack,
    ) -> None:
        self._server = server
        self._plan = plan
        self._pacer = pacer
        self._held = held

    async def dial(self, number: str, caller_id: str, *, timeout: float) -> Dialed:
        setup = self._plan.setup
        limits = TrunkLimits(setup.max_calls_per_second, setup.max_concurrent_calls)
        try:
            async with asyncio.timeout(timeout):  # the trunk's calls at once are all taken
                await self._held.enter_async_context(self._pacer.call_slot(setup.id, limits))
        except TimeoutError:
            return self._failed(number, DialFailed(503, "no free call on the trunk"))
        plan = replace(self._plan, to_e164=number, caller_id=caller_id)
        try:
            outbound = await dial_trunk(self._server, plan, timeout)
        except DialFailed as exc:
            return self._failed(number, exc)
        try:
            answered = await outbound.wait_answered()
        except DialFailed as exc:
            return self._failed(number, exc)
        except asyncio.CancelledError:
            await outbound.aclose()
            raise
        return Dialed(RingOutcome.ANSWERED, answered)

    @staticmethod
    def _failed(number: str, failure: DialFailed) -> Dialed:
        log.info("callback to %s: %d %s", mask(number), failure.code, failure.reason)
        return Dialed(outcome_of([failure.code]))


# How the customer is called: through the setup's trunk (tests: a fake line).
LineFactory = Callable[
    [TelephonyServer, OutsideCall, Pacer, contextlib.AsyncExitStack], CustomerLine
]


class _Remembering:
    """The engine's `Ringer` for one callback, keeping the legs it answered: a `SipRinger`
    forgets them afterwards (it remembers an answered leg's user until that leg is bridged)."""

    def __init__(self, ringer: Ringer) -> None:
        self.ringer = ringer
        self.legs: list[Leg] = []

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
        result = await self.ringer.ring(
            call,
            targets,
            timeout=timeout,
            sequential=sequential,
            caller_id=caller_id,
            ringback=ringback,
        )
        if result.leg is not None:
            self.legs.append(result.leg)
        return result

    async def bridge(self, call: Call, leg: Leg) -> BridgeEnd:
        return await self.ringer.bridge(call, leg)

    def forget(self) -> None:
        if isinstance(self.ringer, SipRinger):
            for leg in self.legs:
                self.ringer.forget(leg)


@dataclass(eq=False)
class _Callback:
    id: str
    request: CallbackRequest
    started_at: datetime
    state: CallbackState = CallbackState.CALLING_AGENT
    reason: str | None = None
    connected_at: datetime | None = None

    @property
    def agent(self) -> tuple[str, str]:
        return (self.request.account_id, self.request.agent_user_id)

    def status(self) -> CallbackStatus:
        return CallbackStatus(self.id, self.state, self.reason)


class SipCallbacks(Callbacks):
    def __init__(
        self,
        planner: CallbackPlanner,
        directory: Directory,
        server: Callable[[], TelephonyServer | None],
        ringer: Callable[[], Ringer | None],
        pacer: Pacer,
        clock: Clock,
        results: CallbackResults,
        *,
        customer_line: LineFactory = TrunkLine,
        agent_ring_seconds: float = AGENT_RING_SECONDS,
        customer_ring_seconds: float = CUSTOMER_RING_SECONDS,
        keep: int = KEEP_FINISHED,
    ) -> None:
        self._planner = planner
        self._directory = directory
        self._server = server
        self._ringer = ringer
        self._pacer = pacer
        self._clock = clock
        self.results = results  # replaceable: the voice call's record once it exists
        self._customer_line = customer_line
        self._agent_ring = agent_ring_seconds
        self._customer_ring = customer_ring_seconds
        self._keep = keep
        self._callbacks: OrderedDict[str, _Callback] = OrderedDict()
        self._agents: set[tuple[str, str]] = set()  # agents in a callback now
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def start(self, request: CallbackRequest) -> CallbackStatus:
        if self._closing:
            raise Unavailable("the service is shutting down", "shutting-down")
        plan = await self._planner.plan(request)
        server, ringer = self._server(), self._ringer()
        if server is None or ringer is None:
            raise Unavailable("SIP is not running on this node", "telephony-unavailable")
        targets = await self._directory.user_targets(request.account_id, request.agent_user_id)
        if not targets:
            raise Unavailable("the agent has no registered phone", "agent-not-registered")
        agent = (request.account_id, request.agent_user_id)
        if agent in self._agents:
            raise Unavailable("the agent is already in a callback", "agent-in-callback")
        callback = _Callback(new_id("cb"), request, self._clock.now())
        anchor = SipCall(server.media, server.call_settings, direction="callback")
        anchor.caller, anchor.caller_name = plan.outside.to_e164, AGENT_DISPLAY_NAME
        call = CallbackCall(
            agent_targets=targets,
            customer_number=plan.outside.to_e164,
            caller_id=request.caller_id,  # E.164, as the planner checked
            agent_ring_seconds=self._agent_ring,
            customer_ring_seconds=self._customer_ring,
            language=plan.language,
        )
        self._agents.add(agent)
        self._callbacks[callback.id] = callback
        task = asyncio.create_task(
            self._run(callback, anchor, call, server, ringer, plan.outside), name=callback.id
        )
        self._tasks.add(task)
        task.add_done_callback(self._done)
        log.info(
            "callback %s: agent %s to %s for voice call %s",
            callback.id,
            request.agent_user_id,
            mask(plan.outside.to_e164),
            request.voice_call_id,
        )
        return callback.status()

    async def status(self, account_id: str, callback_id: str) -> CallbackStatus | None:
        callback = self._callbacks.get(callback_id)
        if callback is None or callback.request.account_id != account_id:
            return None
        return callback.status()

    async def _run(
        self,
        callback: _Callback,
        anchor: SipCall,
        call: CallbackCall,
        server: TelephonyServer,
        ringer: Ringer,
        outside: OutsideCall,
    ) -> None:
        def on_state(state: CallbackState) -> None:
            callback.state = state
            if state is CallbackState.CONNECTED:
                callback.connected_at = self._clock.now()

        outcome = CallbackOutcome.CANCELED
        remembering = _Remembering(ringer)
        try:
            async with contextlib.AsyncExitStack() as held:
                line = self._customer_line(server, outside, self._pacer, held)
                outcome = await run_callback(anchor, call, remembering, line, on_state)
        except asyncio.CancelledError:
            await self._finish(callback, CallbackOutcome.CANCELED)
            raise
        except Exception:
            log.exception("callback %s failed", callback.id)
            outcome = CallbackOutcome.CUSTOMER_FAILED
        finally:
            remembering.forget()
            await anchor.hangup()
        await self._finish(callback, outcome)

    async def _finish(self, callback: _Callback, outcome: CallbackOutcome) -> None:
        ended_at = self._clock.now()
        callback.state = state_of(outcome)
        callback.reason = None if outcome is CallbackOutcome.COMPLETED else outcome.value
        self._agents.discard(callback.agent)
        connected = callback.connected_at
        duration = (ended_at - connected).total_seconds() if connected is not None else 0.0
        request = callback.request
        result = CallbackResult(
            callback_id=callback.id,
            account_id=request.account_id,
            voice_call_id=request.voice_call_id,
            work_item_id=request.work_item_id,
            outcome=outcome,
            started_at=callback.started_at,
            connected_at=connected,
            ended_at=ended_at,
            duration=max(0.0, duration),
        )
        log.info("callback %s: %s", callback.id, outcome.value)
        try:
            await self.results.record(result)
        except Exception:
            log.exception("callback %s: its result could not be recorded", callback.id)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        while len(self._callbacks) > self._keep + len(self._tasks):
            oldest = next(iter(self._callbacks.values()))
            if oldest.state not in (CallbackState.COMPLETED, CallbackState.FAILED):
                break
            self._callbacks.popitem(last=False)

    def drain(self) -> None:
        """Take no new callback (shutdown)."""
        self._closing = True

    async def stop(self, timeout: float) -> None:
        """Let callbacks in progress run for `timeout` seconds, then end them."""
        self._closing = True
        if not self._tasks:
            return
        tasks = list(self._tasks)
        _, pending = await asyncio.wait(tasks, timeout=timeout) if timeout > 0 else ((), tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
