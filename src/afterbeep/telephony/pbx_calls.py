"""Inbound calls to ring groups and queues: their applications run with the engine's `Ringer`,
the `Directory` of registered devices and this node's `QueueEngine`, and the calls they send on
(exit, closed, timeout... destinations) are routed here in the number's account: a mailbox
(the deposit script), a flow (the flow runner), a user, another ring group or queue, or hang
up.

Built by `app.py` once a `Ringer` and a `Directory` exist (the bridge and the users issues);
without it, `InboundCalls` answers a call to a ring group or a queue 480.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from afterbeep.domain.clock import Clock
from afterbeep.domain.numbers import Destination, Number
from afterbeep.domain.ring_groups import Rotation
from afterbeep.domain.schedules import ScheduleState, evaluate_or_open
from afterbeep.services.queues import QueueEngine
from afterbeep.services.routing import (
    CallRouter,
    FlowRoute,
    QueueRoute,
    RingGroupRoute,
    UserRoute,
    VoicemailMainRoute,
    VoicemailRoute,
)
from afterbeep.telephony.interface import Audio, Call
from afterbeep.telephony.scripts.pbx import PbxEnv
from afterbeep.telephony.scripts.queue import run_queue
from afterbeep.telephony.scripts.ring_group import run_ring_group
from afterbeep.telephony.scripts.ringer import Directory, Ringer

log = logging.getLogger(__name__)

MAX_HOPS = 8  # ring group -> queue -> ring group ...: a loop of exits ends here with a hang-up


class PbxCalls:
    def __init__(
        self,
        router: CallRouter,
        ringer: Ringer,
        directory: Directory,
        engine: QueueEngine,
        clock: Clock,
        media: Callable[[str, str], Awaitable[Audio | None]],
        deposit: Callable[[Call, VoicemailRoute], Awaitable[None]],
        flow: Callable[[Call, FlowRoute], Awaitable[None]],
        user: Callable[[Call, UserRoute, int], Awaitable[None]],
        in_call: Callable[[str], bool] | None = None,
        menu: Callable[[Call, VoicemailMainRoute], Awaitable[None]] | None = None,
    ) -> None:
        self._menu = menu  # the owners' phone menu (`voicemail_main`); None: hung up
        self._router = router
        self._ringer = ringer
        self._directory = directory
        self._engine = engine
        self._clock = clock
        self._media = media
        self._deposit = deposit
        self._flow = flow
        self._user = user
        self._in_call = in_call  # users in a bridged call on this node (not offered queue calls)
        self.rotation = Rotation()  # round-robin ring groups' memory, per node

    async def run(self, call: Call, route: RingGroupRoute | QueueRoute, hops: int = 0) -> None:
        env = self._env(route, hops)
        if isinstance(route, RingGroupRoute):
            await run_ring_group(call, route.group, env, self.rotation)
        else:
            await run_queue(call, route.queue, env, self._engine)

    async def send(self, call: Call, number: Number, dest: Destination | None, hops: int) -> None:
        if hops >= MAX_HOPS:
            log.warning("number %s: %d hops of ring groups and queues; hanging up", number.id, hops)
            await call.hangup()
            return
        route = await self._router.destination(number, dest)
        if isinstance(route, VoicemailRoute):
            await self._deposit(call, route)
        elif isinstance(route, FlowRoute):
            await self._flow(call, route)
        elif isinstance(route, RingGroupRoute | QueueRoute):
            await self.run(call, route, hops + 1)
        elif isinstance(route, UserRoute):
            await self._user(call, route, hops + 1)
        elif isinstance(route, VoicemailMainRoute) and self._menu is not None:
            await self._menu(call, route)
        else:
            await call.hangup()

    def _env(self, route: RingGroupRoute | QueueRoute, hops: int) -> PbxEnv:
        number, timezone = route.number, route.timezone

        async def run_destination(call: Call, dest: Destination | None) -> None:
            await self.send(call, number, dest, hops)

        async def schedule_state(account_id: str, schedule_id: str) -> ScheduleState:
            schedule = await self._router.schedule(account_id, schedule_id)
            state, why = evaluate_or_open(schedule, self._clock.now(), timezone)
            if why is not None:
                log.warning("schedule %s: %s", schedule_id, why)
            return state

        return PbxEnv(
            self._ringer,
            self._directory,
            run_destination,
            schedule_state,
            self._media,
            route.language,
            self._in_call,
        )
