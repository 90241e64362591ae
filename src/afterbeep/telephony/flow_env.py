"""The flow runner's port (`FlowEnv`) for inbound calls: media, speech, schedules and mailboxes
of the call's account, and the deposit script for voicemail nodes. One per call, bound to its
`FlowRoute`: what the flow version refers to was read with it (and is cached with the number's
route), so a call reads only a mailbox's usage; anything missing there is read through the
call router."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from afterbeep.domain.clock import Clock
from afterbeep.domain.media import Media
from afterbeep.domain.numbers import Destination, Number
from afterbeep.domain.schedules import ScheduleState, evaluate_or_open
from afterbeep.services.routing import CallRouter, FlowRoute, VoicemailRoute
from afterbeep.telephony.interface import Audio, Call
from afterbeep.telephony.prompts import prompt
from afterbeep.telephony.scripts.flow import FlowRun

log = logging.getLogger("afterbeep.flow")

MediaAudio = Callable[[Media], Awaitable[Audio | None]]
Deposit = Callable[[Call, VoicemailRoute], Awaitable[None]]
# Runs a ring group, a queue or a user on the call (`PbxCalls.send`, with the number and the hop count).
Send = Callable[[Call, Number, Destination | None, int], Awaitable[None]]


class InboundFlowEnv:
    def __init__(
        self,
        route: FlowRoute,
        router: CallRouter,
        media_audio: MediaAudio,
        deposit: Deposit,
        clock: Clock,
        send: Send | None = None,
    ) -> None:
        self._route = route
        self._number = route.number
        self._router = router
        self._media_audio = media_audio
        self._deposit = deposit
        self._clock = clock
        self._send = send

    async def audio(self, media_id: str) -> Audio | None:
        media = self._route.media.get(media_id)
        if media is None:
            media = await self._router.media(self._number.account_id, media_id)
        if media is None:
            return None
        return await self._media_audio(media)

    async def speech(self, run: FlowRun, node_id: str, field: str) -> Audio | None:
        media_id = run.speech.get(f"{node_id}/{field}")
        return None if media_id is None else await self.audio(media_id)

    async def schedule_state(self, run: FlowRun, schedule_id: str, at: datetime) -> ScheduleState:
        if schedule_id in self._route.schedules:
            schedule = self._route.schedules[schedule_id]
        else:
            schedule = await self._router.schedule(run.account_id, schedule_id)
        state, why = evaluate_or_open(schedule, at, run.timezone)
        if why is not None:
            log.warning("flow %s v%d, schedule %s: %s", run.flow_id, run.version, schedule_id, why)
        return state

    def now(self) -> datetime:
        return self._clock.now()

    async def voicemail(self, call: Call, mailbox_id: str) -> None:
        known = self._route.mailboxes.get(mailbox_id)
        if known is not None:
            route: VoicemailRoute | None = await self._router.complete(known)
        else:
            route = await self._router.mailbox(self._number, mailbox_id)
        if route is None:
            log.warning("number %s: mailbox %s of a flow is gone", self._number.id, mailbox_id)
            await call.answer()
            await call.play(prompt("vm-try-later"))
            return
        await self._deposit(call, route)

    async def send(self, call: Call, dest: Destination) -> None:
        if self._send is None:
            log.warning("number %s: ring groups, queues and users cannot ring yet", self._number.id)
            await call.answer()
            await call.play(prompt("vm-try-later"))
            return
        await self._send(call, self._number, dest, 1)
