"""Inbound calls: the dialled number decides (services.routing), a call script runs.

This is the router the `TelephonyServer` asks about each INVITE before anything is answered.
A `NoRoute` is the SIP answer it names (403 anonymous caller refused, 404 unknown or disabled
number, 480 unavailable); a `hangup` destination declines the call (603, never answered: no
media, nothing billed to the caller); a voicemail destination runs the deposit script; a flow
runs the flow runner (`telephony.scripts.flow`) on the version the number led to. `route_now` is its quick router: a number whose destinations the
router has cached is decided at once (the schedule evaluated, no I/O) and a deposit answered
(`Answer`), the mailbox's usage and greeting being read while the call is set up. What the
script leaves in the spool goes to the spool worker, which stores it and tells the owner.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from afterbeep.audio.rendition import read_wav_pcm
from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import InvalidAudio
from afterbeep.domain.media import Media
from afterbeep.domain.pin_lockout import source_of
from afterbeep.domain.users import Forward
from afterbeep.services.deposits import DepositService
from afterbeep.services.device_outbound import OutsideCall
from afterbeep.services.media import Renditions
from afterbeep.services.phone_menu import PhoneMenuService
from afterbeep.services.ports.storage import ObjectStore, StorageError
from afterbeep.services.queues import QueueEngine
from afterbeep.services.routing import (
    UNAVAILABLE,
    CallRouter,
    FlowRoute,
    HangupRoute,
    NoRoute,
    QueueRoute,
    RingGroupRoute,
    UserRoute,
    VoicemailDestination,
    VoicemailMainRoute,
    VoicemailRoute,
    internal_line,
)
from afterbeep.services.routing import (
    Route as RouterRoute,
)
from afterbeep.telephony.call import SipCall, uri_user
from afterbeep.telephony.flow_env import InboundFlowEnv
from afterbeep.telephony.interface import Audio, Call
from afterbeep.telephony.outside import OutsideCalls
from afterbeep.telephony.pbx_calls import PbxCalls
from afterbeep.telephony.phone_menu_env import CallBack, ServiceDoor, voice
from afterbeep.telephony.scripts.deposit import DepositBox, Outcome, leave_message
from afterbeep.telephony.scripts.flow import FlowRun, run_flow
from afterbeep.telephony.scripts.phone_menu import phone_menu
from afterbeep.telephony.scripts.ringer import Directory, Ringer
from afterbeep.telephony.scripts.user import UserLines, call_user
from afterbeep.telephony.server import Answer, CallHandler, Route
from afterbeep.telephony.sip import IncomingInvite
from afterbeep.telephony.sip.message import uri_of
from afterbeep.telephony.sip.registrar import DeviceSecret, Registrar
from afterbeep.telephony.spool import Spool
from afterbeep.telephony.spool_worker import SpoolHandoff

log = logging.getLogger(__name__)

DECLINED_BY_HANGUP_DESTINATION = 603
FORBIDDEN = 403
# A device may dial outside numbers (account's allow_device_outbound), but this node was built
# without a way out (`outside` not given).
OUTBOUND_NOT_BUILT = 503
MAX_USER_HOPS = 5  # users forwarding to users: a loop ends here
# From users that mean "the caller withholds its identity" (RFC 3323 and carriers' usage).
ANONYMOUS_USERS = frozenset({"anonymous", "restricted", "private", "withheld"})
# Privacy header values asking to hide who calls (RFC 3323 `user`, RFC 3325 `id`).
HIDING_PRIVACY = frozenset({"id", "user"})
OWN_MAILBOX = "*97"  # from a device: its user's mailbox
ANY_MAILBOX = "*98"  # from a device: asks for the mailbox number

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
        *,
        registrar: Registrar | None = None,
        ringer: Ringer | None = None,
        directory: Directory | None = None,
        queue_engine: QueueEngine | None = None,
        outside: OutsideCalls | None = None,
        phone_menu: PhoneMenuService | None = None,
    ) -> None:
        self._phone_menu = phone_menu  # None: *97, *98 and voicemail_main are answered 480
        self._outside = outside  # devices' calls to outside numbers (None: answered 503)
        self._registrar = registrar  # None: no device is authenticated (trunk calls only)
        self._ringer = ringer  # None (until `use_ringer`): calls to users cannot ring (480)
        self._directory = directory
        self._router = router
        self._store = store
        self._spool = spool
        self._spool_worker = spool_worker
        self._deposits = deposits
        self._clock = clock
        self._silence_threshold = silence_threshold
        self._greetings: OrderedDict[str, Audio] = OrderedDict()
        self._renditions = Renditions(store)
        # Ring groups and queues run once the engine rings people (a Ringer) and registered
        # devices are known (a Directory); until then their calls are answered 480.
        self._queue_engine = queue_engine
        self._pbx: PbxCalls | None = None
        self.lines = UserLines()  # users' calls on this node, for their max_simultaneous
        if ringer is not None:
            self.use_ringer(ringer)

    def use_ringer(self, ringer: Ringer, in_call: Callable[[str], bool] | None = None) -> None:
        """What rings users' phones (the SIP server's, known once it is built); `in_call`:
        whether a user is in a call bridged on this node (queues skip such agents)."""
        self._ringer = ringer
        if self._directory is not None and self._queue_engine is not None:
            self._pbx = PbxCalls(
                self._router,
                ringer,
                self._directory,
                self._queue_engine,
                self._clock,
                self._media_of,
                self._deposit_into,
                self._flow,
                self._user,
                in_call,
                self._run_menu,
            )

    async def route(self, invite: IncomingInvite) -> Route:
        from_device = await self._device_call(invite)
        if from_device is not None:
            return from_device
        dialed = uri_user(invite.request.uri) or ""
        decision = await self._router.route(dialed, anonymous=anonymous_caller(invite))
        return await self._decided(decision)

    async def _decided(self, decision: RouterRoute) -> Route:
        if isinstance(decision, VoicemailRoute):
            box = await self._deposit_box(decision)

            async def deposit(call: SipCall) -> None:
                await self.leave_message(call, box)

            return deposit
        return self._act(decision)

    def route_now(self, invite: IncomingInvite) -> Route | None:
        """`route` without I/O when the dialled number's destinations are cached, else None."""
        destinations = self._router.cached(uri_user(invite.request.uri) or "")
        if destinations is None:
            return None
        refuses_anonymous = not destinations.number.allow_anonymous
        anonymous = refuses_anonymous and anonymous_caller(invite)
        target = self._router.target(destinations, anonymous=anonymous)
        if isinstance(target, VoicemailDestination):
            return Answer(self._answered_deposit(target))
        return self._act(target)

    def _act(
        self,
        decision: NoRoute
        | HangupRoute
        | FlowRoute
        | UserRoute
        | RingGroupRoute
        | QueueRoute
        | VoicemailMainRoute,
    ) -> Route:
        """What the SIP service does for a decision other than a deposit."""
        if isinstance(decision, NoRoute):
            return decision.code
        if isinstance(decision, HangupRoute):
            return DECLINED_BY_HANGUP_DESTINATION
        if isinstance(decision, RingGroupRoute | QueueRoute):
            return self._pbx_route(decision)
        if isinstance(decision, VoicemailMainRoute):
            return self._menu_route(decision.number.account_id, decision.language, None, None)
        if isinstance(decision, UserRoute):
            if self._ringer is None or self._directory is None:
                log.warning("user %s: no ringer here; answering 480", decision.user.id)
                return UNAVAILABLE.code
            user_route = decision

            async def ring_user(call: SipCall) -> None:
                await self._user(call, user_route, 0)

            return ring_user  # not answered: the user's phones ring, the caller hears ringback
        flow = decision

        async def run_flow(call: SipCall) -> None:
            await self._flow(call, flow)

        return Answer(run_flow)  # a flow starts at its entry, which answers

    def _pbx_route(self, decision: RingGroupRoute | QueueRoute) -> Route:
        pbx = self._pbx
        if pbx is None:
            log.warning("number %s: ring groups and queues cannot ring yet", decision.number.id)
            return UNAVAILABLE.code

        async def run(call: SipCall) -> None:
            await pbx.run(call, decision)

        return run  # a ring group rings before answering; a queue answers when the caller joins

    async def _media_of(self, account_id: str, media_id: str) -> Audio | None:
        media = await self._router.media(account_id, media_id)
        return None if media is None else await self._media_audio(media)

    async def _flow(self, call: Call, route: FlowRoute) -> None:
        """Run `route`'s flow (the version it was routed to) on the call, not answered yet."""
        run = FlowRun(
            account_id=route.account_id,
            flow_id=route.flow_id,
            version=route.version,
            graph=route.graph,
            language=route.language,
            timezone=route.timezone,
            speech=route.speech,
        )
        env = InboundFlowEnv(
            route,
            self._router,
            self._media_audio,
            self._deposit_into,
            self._clock,
            send=self._pbx.send if self._pbx is not None else None,
        )
        await run_flow(call, run, env)

    async def _user(self, call: Call, route: UserRoute, hops: int) -> None:
        """Ring the user; where it falls through to is resolved now, in the route's account."""
        assert self._ringer is not None and self._directory is not None

        async def run(_: Call, forward: Forward, busy: bool) -> None:
            decision = await self._router.forward(route.number, forward, route.user)
            if isinstance(decision, VoicemailRoute):
                box = replace(await self._deposit_box(decision), busy=busy)
                greeting_id = decision.mailbox.greeting_for(busy=busy)
                if greeting_id != decision.mailbox.playing_greeting_id and greeting_id:
                    busy_greeting = await self._media_of(decision.mailbox.account_id, greeting_id)
                    if busy_greeting is not None:
                        box = replace(box, greeting=busy_greeting)
                await self.leave_message(call, box)
            elif isinstance(decision, FlowRoute):
                await self._flow(call, decision)
            elif isinstance(decision, UserRoute) and hops < MAX_USER_HOPS:
                await self._user(call, decision, hops + 1)
            elif isinstance(decision, RingGroupRoute | QueueRoute) and self._pbx is not None:
                await self._pbx.run(call, decision, hops + 1)
            else:
                await call.hangup()

        result = await call_user(
            call, route.user, self._ringer, self._directory, run, self.lines
        )
        log.info("call %s to user %s: %s", call.call_id, route.user.id, result.end.value)

    async def _device_call(self, invite: IncomingInvite) -> Route | None:
        """The route of a call from one of our devices (None: not a device's call). A device
        is known by its From user (its auth username) or by answering our challenge; its
        INVITE is challenged (407) and verified as a REGISTER is. It may dial an extension of
        its account, a number held here (that number's routing), or, when its account allows
        it, an outside number."""
        if self._registrar is None:
            return None
        answers = list(invite.request.headers.get("proxy-authorization"))
        from_user = uri_user(invite.from_uri) if invite.from_header else None
        if not answers and (not from_user or await self._router.device(from_user) is None):
            return None
        found = await self._registrar.authenticate(
            "INVITE", answers, invite.client_host, self._clock.now(), proxy=True
        )
        if not isinstance(found, DeviceSecret):
            code, reason, headers = found

            async def refuse(call: SipCall) -> None:
                if call.invite is not None:
                    call.invite.reject(code, reason, headers)

            return refuse
        return self._holding_line(found.user_id, await self._dialled_by(found, invite))

    async def _dialled_by(self, found: DeviceSecret, invite: IncomingInvite) -> Route:
        dialed = uri_user(invite.request.uri) or ""
        if dialed in (OWN_MAILBOX, ANY_MAILBOX):
            return await self._device_menu(found, dialed == OWN_MAILBOX)
        user = await self._router.extension(found.account_id, dialed)
        if user is not None:
            return self._act(UserRoute(internal_line(found.account_id, user), user))
        decision = await self._router.route(dialed)
        if isinstance(decision, NoRoute) and decision.code == 404:
            account = await self._router.account(found.account_id)
            if account is None or not account.allow_device_outbound:
                return FORBIDDEN
            if self._outside is None:
                return OUTBOUND_NOT_BUILT
            return await self._outside.route(found.account_id, found.user_id, dialed)
        return await self._decided(decision)

    async def _device_menu(self, found: DeviceSecret, own: bool) -> Route:
        """`*97`: the phone's user's mailbox (no PIN when it allows so); `*98`: asks which."""
        account = await self._router.account(found.account_id)
        language = account.language if account is not None else "en"
        call_back = None
        if account is not None and account.allow_device_outbound and self._outside is not None:
            call_back = self._dial_back(found.account_id, found.user_id)
        if not own:
            return self._menu_route(found.account_id, language, found.device_id, call_back)
        service = self._phone_menu
        mailbox = None if service is None else await service.of_user(found.account_id, found.user_id)
        if service is None or mailbox is None:
            return UNAVAILABLE.code
        needs_pin = not mailbox.skip_pin_from_own_device
        source = source_of(found.device_id, None)

        async def menu(call: SipCall) -> None:
            door = ServiceDoor(
                service, found.account_id, source, language, mailbox,
                needs_pin=needs_pin, call_back=call_back,
            )  # fmt: skip
            await phone_menu(call, door, voice)

        return Answer(menu)

    def _menu_route(
        self, account_id: str, language: str, device_id: str | None, call_back: CallBack | None
    ) -> Route:
        """The phone menu asking for the mailbox number, then its PIN."""
        service = self._phone_menu
        if service is None:
            return UNAVAILABLE.code

        async def menu(call: SipCall) -> None:
            source = source_of(device_id, call.caller)
            door = ServiceDoor(service, account_id, source, language, None, call_back=call_back)
            await phone_menu(call, door, voice)

        return Answer(menu)

    async def _run_menu(self, call: Call, route: VoicemailMainRoute) -> None:
        """The phone menu reached from a flow node or a ring group's or queue's exit."""
        service = self._phone_menu
        if service is None:
            await call.hangup()
            return
        source = source_of(None, call.caller)
        door = ServiceDoor(service, route.number.account_id, source, route.language, None)
        await phone_menu(call, door, voice)

    def _dial_back(self, account_id: str, user_id: str) -> CallBack:
        """Calls a message's caller back from the menu, as the phone would dial it."""
        outside = self._outside
        assert outside is not None

        async def dial(call: Call, number: str) -> None:
            if not isinstance(call, SipCall):
                return
            plan = await outside.planner.plan(account_id, user_id, number)
            if isinstance(plan, OutsideCall):
                await outside.call(call, plan)
            else:
                log.info("call back from the menu refused: %s", plan.reason)

        return dial

    def _holding_line(self, user_id: str, route: Route) -> Route:
        """`route`, counted as one of the calling user's calls while its handler runs."""
        if isinstance(route, int):
            return route
        handler = route.handler if isinstance(route, Answer) else route

        async def held(call: SipCall) -> None:
            with self.lines.held(user_id):
                await handler(call)

        return Answer(held) if isinstance(route, Answer) else held

    async def _deposit_into(self, call: Call, route: VoicemailRoute) -> None:
        await self.leave_message(call, await self._deposit_box(route))

    async def _media_audio(self, media: Media) -> Audio | None:
        return await self._telephony_audio(
            media.telephony_key, media.original_key, media.duration_ms, "media"
        )

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
        greeting = await self._greeting(route)
        name = None
        if greeting is None and mailbox.name_media_id is not None:  # the system one says it
            name = await self._media_of(mailbox.account_id, mailbox.name_media_id)
        return DepositBox(
            account_id=mailbox.account_id,
            mailbox_id=mailbox.id,
            language=mailbox.language,
            greeting=greeting,
            skip_instructions=mailbox.skip_instructions,
            max_message_seconds=mailbox.max_message_seconds,
            min_message_seconds=mailbox.min_message_seconds,
            silence_seconds=mailbox.silence_seconds,
            silence_threshold=self._silence_threshold,
            full=route.full,
            name=name,
            extension=route.extension if greeting is None and name is None else None,
        )

    async def _greeting(self, route: VoicemailRoute) -> Audio | None:
        """The greeting's telephony rendition; None falls back to the system prompt."""
        key = route.greeting_key
        if key is None:
            return None
        return await self._telephony_audio(
            key, route.greeting_original_key, route.greeting_duration_ms, "greeting"
        )

    async def _telephony_audio(
        self, key: str, original_key: str | None, duration_ms: int | None, what: str
    ) -> Audio | None:
        """A media's telephony rendition (media never changes, so it is cached by key;
        rendered first if its import left it pending); None when storage cannot give it now
        or it does not decode."""
        cached = self._greetings.get(key)
        if cached is not None:
            self._greetings.move_to_end(key)
            return cached
        try:
            if original_key is None:
                if (await self._store.stat(key)).size > GREETING_CACHE_BYTES:
                    # only an older version stored one this long (a 1 Hz WAV made 160 MB)
                    log.warning("%s %s is too long to hold; not playing it", what, key)
                    return None
                wav = await self._store.get_bytes(key)
            else:
                wav = await self._renditions.telephony(original_key, key, duration_ms)
            pcm, _rate = read_wav_pcm(wav)
        except (StorageError, InvalidAudio, ValueError):
            log.warning("%s %s unavailable; not playing it", what, key)
            return None
        pcm.setflags(write=False)
        self._greetings[key] = pcm
        while len(self._greetings) > 1 and (
            len(self._greetings) > GREETING_CACHE
            or sum(cached.nbytes for cached in self._greetings.values()) > GREETING_CACHE_BYTES
        ):
            self._greetings.popitem(last=False)
        return pcm


def anonymous_caller(invite: IncomingInvite) -> bool:
    """Whether the caller withholds its identity: a `Privacy: id` (or `user`) header, a From
    user such as `anonymous`, or no caller id at all."""
    for value in invite.request.headers.get("privacy"):
        if {token.strip().lower() for token in value.split(";")} & HIDING_PRIVACY:
            return True
    user = uri_user(uri_of(invite.from_header)) if invite.from_header else None
    return user is None or user.lower() in ANONYMOUS_USERS
