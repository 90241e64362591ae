"""Inbound calls: the dialled number decides (services.routing), a call script runs.

This is the router the `TelephonyServer` asks about each INVITE before anything is answered:
an unknown number is rejected (404), a voicemail destination runs the deposit script.
`route_now` is its quick router: a number whose destination the router has cached is answered
at once (`Answer`), and the mailbox's usage and greeting are read while the call is set up. What the
script leaves in the spool goes to the spool worker, which stores it and tells the owner.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from afterbeep.audio.rendition import read_wav_pcm
from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import InvalidAudio
from afterbeep.services.deposits import DepositService
from afterbeep.services.media import Renditions
from afterbeep.services.ports.storage import ObjectStore, StorageError
from afterbeep.services.routing import CallRouter, NoRoute, VoicemailDestination, VoicemailRoute
from afterbeep.telephony.call import SipCall, uri_user
from afterbeep.telephony.interface import Audio, Call
from afterbeep.telephony.scripts.deposit import DepositBox, Outcome, leave_message
from afterbeep.telephony.server import Answer, CallHandler, Route
from afterbeep.telephony.sip import IncomingInvite
from afterbeep.telephony.spool import Spool
from afterbeep.telephony.spool_worker import SpoolHandoff

log = logging.getLogger(__name__)

GREETING_CACHE = 64
# A greeting is held whole and shared by the calls that play it: 16 000 bytes a second, at most
# AFTERBEEP_MAX_MEDIA_SECONDS long (9.6 MB at the default 600 s). The cache keeps this many
# bytes of them at most (and always the one being played).
GREETING_CACHE_BYTES = 64 * 1024 * 1024


class InboundCalls:
    def __init__(
        self,
        router: CallRouter,
        store: ObjectStore,
        spool: Spool,
        spool_worker: SpoolHandoff,
        deposits: DepositService,
        clock: Clock,
        silence_threshold: int = 200,
    ) -> None:
        self._router = router
        self._store = store
        self._spool = spool
        self._spool_worker = spool_worker
        self._deposits = deposits
        self._clock = clock
        self._silence_threshold = silence_threshold
        self._greetings: OrderedDict[str, Audio] = OrderedDict()
        self._renditions = Renditions(store)

    async def route(self, invite: IncomingInvite) -> Route:
        dialed = uri_user(invite.request.uri) or ""
        decision = await self._router.route(dialed)
        if isinstance(decision, NoRoute):
            return decision.code
        box = await self._deposit_box(decision)

        async def deposit(call: SipCall) -> None:
            await self.leave_message(call, box)

        return deposit

    def route_now(self, invite: IncomingInvite) -> Route | None:
        """`route` without I/O when the dialled number's destination is cached, else None."""
        destination = self._router.cached(uri_user(invite.request.uri) or "")
        if destination is None:
            return None
        return Answer(self._answered_deposit(destination))

    def _answered_deposit(self, destination: VoicemailDestination) -> CallHandler:
        async def deposit(call: SipCall) -> None:
            box = await self._deposit_box(await self._router.complete(destination))
            await self.leave_message(call, box)

        return deposit

    async def leave_message(self, call: Call, box: DepositBox) -> None:
        result = await leave_message(call, box, self._spool, self._clock.now())
        if result.outcome is Outcome.SAVED and result.entry is not None:
            self._spool_worker.submit(result.entry)
        elif result.outcome is Outcome.MAILBOX_FULL:
            await self._deposits.mailbox_full(box.account_id, box.mailbox_id)

    async def _deposit_box(self, route: VoicemailRoute) -> DepositBox:
        mailbox = route.mailbox
        return DepositBox(
            account_id=mailbox.account_id,
            mailbox_id=mailbox.id,
            language=mailbox.language,
            greeting=await self._greeting(route),
            skip_instructions=mailbox.skip_instructions,
            max_message_seconds=mailbox.max_message_seconds,
            min_message_seconds=mailbox.min_message_seconds,
            silence_seconds=mailbox.silence_seconds,
            silence_threshold=self._silence_threshold,
            full=route.full,
        )

    async def _greeting(self, route: VoicemailRoute) -> Audio | None:
        """The greeting's telephony rendition (media never changes, so it is cached by key;
        rendered first if its import left it pending); None falls back to the system prompt,
        also when storage cannot give it now or it does not decode."""
        key = route.greeting_key
        if key is None:
            return None
        cached = self._greetings.get(key)
        if cached is not None:
            self._greetings.move_to_end(key)
            return cached
        try:
            if route.greeting_original_key is None:
                if (await self._store.stat(key)).size > GREETING_CACHE_BYTES:
                    # only an older version stored one this long (a 1 Hz WAV made 160 MB)
                    log.warning("greeting %s is too long to hold; playing the system greeting", key)
                    return None
                wav = await self._store.get_bytes(key)
            else:
                wav = await self._renditions.telephony(
                    route.greeting_original_key, key, route.greeting_duration_ms
                )
            pcm, _rate = read_wav_pcm(wav)
        except (StorageError, InvalidAudio, ValueError):
            log.warning("greeting %s unavailable; playing the system greeting", key)
            return None
        pcm.setflags(write=False)
        self._greetings[key] = pcm
        while len(self._greetings) > 1 and (
            len(self._greetings) > GREETING_CACHE
            or sum(cached.nbytes for cached in self._greetings.values()) > GREETING_CACHE_BYTES
        ):
            self._greetings.popitem(last=False)
        return pcm
