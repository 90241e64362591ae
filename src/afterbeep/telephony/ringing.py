"""`SipRinger`, the SIP `Ringer`: forked INVITEs to a user's devices (or a group's members), then
the back-to-back bridge of the caller and the device that answered.

Ringing. Each `RingTarget` gets its own INVITE (a fork): Request-URI the registered Contact, a
Route set from its Path, sent to the address the REGISTER came from when there is one (a device
behind NAT). Forks start together, each after its `delay_sec` (or one after the other, each for
its `timeout_sec`); the first 200 wins, every other fork is CANCELled (an answer that still
arrives on one is ACKed and hung up). The caller's CANCEL or BYE while it rings cancels every
fork. Our offer on each fork: PCMU and PCMA with telephone-event. From carries `caller_id` as its
user and the caller's display name.

What the caller hears while it rings. A call not answered yet gets 180 Ringing once a device
rings, and its phone plays the ringback itself; that is Asterisk's `Dial()` without options.
Asterisk's `Dial(...,r)` instead answers with 183 Session Progress and plays a ringback tone as
early media; not done here: it needs the caller's media before the answer, and a 180 is what
every phone understands. A call already answered (a flow played it a prompt) hears a ringback
tone (`RINGBACK`, North American 440+480 Hz, 2 s on, 4 s off) until a device answers.

The bridge (`bridge`): the caller is answered if it is not yet, and the two calls' media
sessions are joined by a `MediaRelay` (each packet forwarded when it arrives, transcoded
A-law <-> µ-law when the codecs differ, RFC 4733 digits renumbered); the calls themselves stay
as they are, their recording path idle. A re-INVITE from either side (hold with `sendonly` or
`inactive`, resume with `sendrecv`) is answered at once from that side's session, and the same
direction is offered to the other side in a re-INVITE of ours. A BYE on either side (or its RTP
timing out) ends the bridge; the other side is then hung up.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from afterbeep.audio.tones import dual_tone, silence
from afterbeep.domain.netpolicy import trusting
from afterbeep.telephony.call import (
    CallEndpoint,
    DialFailed,
    DialState,
    OutboundCall,
    SipCall,
    dial,
    uri_user,
)
from afterbeep.telephony.interface import Call, CallEnded
from afterbeep.telephony.media import Direction, MediaSessionStateError, Prompt, SdpError
from afterbeep.telephony.media.relay import MediaRelay
from afterbeep.telephony.scripts.ringer import (
    BridgeEnd,
    Leg,
    RingOutcome,
    RingResult,
    RingTarget,
)
from afterbeep.telephony.sip import CallFailed, SipStateError, SipTransportError
from afterbeep.telephony.sip.message import uri_of

__all__ = ["RINGBACK", "SipRinger", "fork_from", "next_hop", "outcome_of"]

log = logging.getLogger(__name__)

RINGBACK = Prompt(np.concatenate([dual_tone(440, 480, 2000, amplitude=0.2), silence(4000)]))
BUSY_CODES = frozenset({486, 600, 603})
NO_ANSWER_CODES = frozenset({408, 480, 487})
_ANONYMOUS = "sip:anonymous@anonymous.invalid"  # RFC 3323


def next_hop(target: RingTarget) -> str | None:
    """Where a fork's INVITE is sent when that is not the Request-URI's host: the address the
    REGISTER came from (NAT), else the first Path entry; None: the Request-URI."""
    transport = target.transport.lower()
    if target.source is not None:
        host, port = target.source
        host = f"[{host}]" if ":" in host else host
        return f"sip:{host}:{port};transport={transport}"
    if target.path:
        return uri_of(target.path[0])
    if transport != "udp" and "transport=" not in target.uri.lower():
        return f"{target.uri};transport={transport}"
    return None


def fork_from(caller_id: str | None, display: str | None, host: str) -> str:
    """The From of a fork: the caller id as user, the original caller's display name."""
    uri = f"sip:{caller_id}@{host}" if caller_id else _ANONYMOUS
    if not display:
        return f"<{uri}>"
    quoted = display.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{uri}>'


def outcome_of(codes: Sequence[int]) -> RingOutcome:
    """How a ring that nobody answered ended, from each fork's final code (ours: 487 when we
    stopped it ringing): a fork that rang out (or 408/480) makes it NO_ANSWER; else busy
    (486/600/603) when every fork that reached a device said so (503: unreachable); else
    FAILED. No fork at all: NO_ANSWER."""
    if not codes or any(code in NO_ANSWER_CODES for code in codes):
        return RingOutcome.NO_ANSWER
    if any(code in BUSY_CODES for code in codes) and all(
        code in BUSY_CODES or code == 503 for code in codes
    ):
        return RingOutcome.BUSY
    return RingOutcome.FAILED


@dataclass(eq=False)
class _Fork:
    target: RingTarget
    outbound: OutboundCall | None = None
    code: int | None = None  # the final failure, or None
    task: asyncio.Task[SipCall | None] | None = None
    started_at: float | None = None  # loop time its INVITE went out


@dataclass(eq=False)
class _Ringing:
    """One `ring()`: its forks, the ringback, the winner."""

    endpoint: CallEndpoint
    call: SipCall
    from_uri: str
    ringback: bool
    forks: list[_Fork] = field(default_factory=list)
    winner: SipCall | None = None
    rang: bool = False
    tone: asyncio.Task[None] | None = None
    tone_stop: asyncio.Event = field(default_factory=asyncio.Event)

    def on_ringing(self) -> None:
        if self.rang or not self.ringback:
            return
        self.rang = True
        if not self.call.answered:
            self.call.ringing()

    def start_tone(self) -> None:
        media = self.call.media
        if self.ringback and self.call.answered and media is not None and self.tone is None:
            self.tone = asyncio.create_task(self._play_tone(), name=f"ringback-{self.call.call_id}")

    async def _play_tone(self) -> None:
        media = self.call.media
        assert media is not None
        while not self.tone_stop.is_set():
            try:
                result = await media.play(RINGBACK, interrupt=self.tone_stop)
            except MediaSessionStateError:
                return
            if result.interrupted:
                return

    async def stop_tone(self) -> None:
        self.tone_stop.set()
        if self.tone is not None:
            await asyncio.gather(self.tone, return_exceptions=True)
            self.tone = None

    async def run_fork(self, fork: _Fork, until: float) -> SipCall | None:
        """Ring one target until ``until`` (loop time): its call when answered, else None (the
        reason in ``fork.code``)."""
        loop = asyncio.get_running_loop()
        target = fork.target
        if target.delay_sec > 0:
            await asyncio.sleep(min(target.delay_sec, max(0.0, until - loop.time())))
        end = until
        if target.timeout_sec is not None:
            end = min(end, loop.time() + target.timeout_sec)
        if loop.time() >= end:
            fork.code = 487
            return None
        headers = [("Route", value if "<" in value else f"<{value}>") for value in target.path]
        policy = self.endpoint.ua.config.network_policy
        if policy is not None and target.source is not None:
            policy = trusting(policy, target.source[0])
        fork.started_at = loop.time()
        try:
            fork.outbound = await dial(
                self.endpoint,
                target.uri,
                self.from_uri,
                outbound_proxy=next_hop(target),
                timeout=end - loop.time() + 1.0,
                headers=headers,
                network_policy=policy,
            )
        except DialFailed as exc:
            fork.code = exc.code
            return None
        log.info("ringing %s for call %s", target.label, self.call.call_id)
        outbound = fork.outbound
        try:
            async with asyncio.timeout_at(end):
                async for state in outbound.updates():
                    if state in (DialState.RINGING, DialState.EARLY_MEDIA):
                        self.on_ringing()
        except TimeoutError:
            fork.code = 487
            return None
        if outbound.call is not None:
            return outbound.call
        fork.code = outbound.failure.code if outbound.failure is not None else 500
        return None

    async def ring(self, targets: Sequence[RingTarget], limit: float) -> RingOutcome | None:
        """Ring ``targets`` together for at most ``limit`` s: ANSWERED (``winner`` set),
        CALLER_GONE, or None when every fork ended unanswered."""
        loop = asyncio.get_running_loop()
        until = loop.time() + limit
        forks = [_Fork(target) for target in targets]
        self.forks.extend(forks)
        for fork in forks:
            fork.task = asyncio.create_task(self.run_fork(fork, until))
        gone = asyncio.ensure_future(self.call.ended.wait())
        pending: set[asyncio.Future[Any]] = {gone, *(f.task for f in forks if f.task)}
        try:
            while True:
                if gone.done():
                    return RingOutcome.CALLER_GONE
                for fork in forks:
                    task = fork.task
                    if task is not None and task.done() and not task.cancelled():
                        answered = task.result()
                        if answered is not None and self.winner is None:
                            self.winner = answered
                            return RingOutcome.ANSWERED
                pending = {p for p in pending if not p.done()}
                if pending == {gone}:
                    return None
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            # A cancel arriving now (the caller's application gave up on this ring as the
            # caller hung up) must not cut the CANCELs short: the forks would ring on.
            stopping = asyncio.ensure_future(self._stop_forks(forks))
            try:
                await asyncio.shield(stopping)
            except asyncio.CancelledError:
                await stopping
                raise

    async def _stop_forks(self, forks: Sequence[_Fork]) -> None:
        """Cancel the forks still ringing; hang up any answer but the winner's."""
        for fork in forks:
            if fork.task is not None and not fork.task.done():
                fork.task.cancel()
        await asyncio.gather(*(f.task for f in forks if f.task is not None), return_exceptions=True)
        for fork in forks:
            outbound = fork.outbound
            if outbound is None:
                continue
            if outbound.call is not None and outbound.call is not self.winner:
                await outbound.call.hangup()
            elif outbound.call is None:
                if fork.code is None:
                    fork.code = 487
                await outbound.aclose()

    def outcome(self) -> RingOutcome:
        return outcome_of([f.code for f in self.forks if f.code is not None])


class SipRinger:
    """`afterbeep.telephony.scripts.ringer.Ringer` over SIP, from one `CallEndpoint` (the
    telephony server). ``on_fork`` (tests, metrics) hears of every INVITE sent."""

    def __init__(
        self,
        endpoint: CallEndpoint,
        *,
        on_fork: Callable[[RingTarget, float], None] | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._on_fork = on_fork
        self._answered_by: dict[str, str] = {}  # an answered leg's call id -> its user
        self._in_call: Counter[str] = Counter()  # users with a device in a bridge here

    def in_call(self, user_id: str) -> bool:
        """Whether one of the user's devices is in a call bridged on this node."""
        return self._in_call[user_id] > 0

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
        sip = _sip_call(call)
        if sip.ended.is_set():
            return RingResult(RingOutcome.CALLER_GONE)
        if not targets:
            return RingResult(RingOutcome.NO_ANSWER)
        user = caller_id if caller_id is not None else uri_user(sip.caller or "") or sip.caller
        host = self._endpoint.ua.advertised_host
        ringing = _Ringing(self._endpoint, sip, fork_from(user, sip.caller_name, host), ringback)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        ringing.start_tone()
        try:
            if sequential:
                outcome: RingOutcome | None = None
                for target in targets:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    one = replace(target, delay_sec=0.0)
                    outcome = await ringing.ring([one], min(left, target.timeout_sec or left))
                    if outcome is not None:
                        break
            else:
                outcome = await ringing.ring(targets, max(0.0, timeout))
        finally:
            await ringing.stop_tone()
            if self._on_fork is not None:
                for fork in ringing.forks:
                    if fork.started_at is not None:
                        self._on_fork(fork.target, fork.started_at)
        if outcome is RingOutcome.ANSWERED and ringing.winner is not None:
            target = next(
                f.target
                for f in ringing.forks
                if f.outbound is not None and f.outbound.call is ringing.winner
            )
            log.info("call %s answered by %s", sip.call_id, target.label)
            user = target.label.partition("/")[0]
            if user.startswith("usr_"):
                self._answered_by[ringing.winner.call_id] = user
            return RingResult(RingOutcome.ANSWERED, leg=ringing.winner, target=target)
        if outcome is RingOutcome.CALLER_GONE:
            return RingResult(RingOutcome.CALLER_GONE)
        return RingResult(ringing.outcome())

    def forget(self, leg: Leg) -> None:
        """A leg `ring()` answered that will not be bridged (hung up instead)."""
        self._answered_by.pop(leg.call_id, None)

    async def bridge(self, call: Call, leg: Leg) -> BridgeEnd:
        caller = _sip_call(call)
        if not isinstance(leg, SipCall):
            raise TypeError("SipRinger bridges the legs its ring() answered")
        callee = leg
        user = self._answered_by.pop(callee.call_id, None)
        if user is None:
            return await self._bridge(caller, callee)
        self._in_call[user] += 1
        try:
            return await self._bridge(caller, callee)
        finally:
            self._in_call[user] -= 1
            if self._in_call[user] <= 0:
                del self._in_call[user]

    async def _bridge(self, caller: SipCall, callee: SipCall) -> BridgeEnd:
        if not caller.answered:
            try:
                await caller.answer()
            except CallEnded:
                await callee.hangup()
                return BridgeEnd.CALLER_HUNG_UP
        if caller.media is None or callee.media is None or callee.dialog is None:
            await callee.hangup()
            await caller.hangup()
            return BridgeEnd.FAILED
        bridge = _Bridge(caller, callee)
        try:
            return await bridge.run()
        finally:
            await bridge.close()


def _sip_call(call: Call) -> SipCall:
    if not isinstance(call, SipCall):
        raise TypeError("SipRinger rings and bridges SIP calls")
    return call


class _Bridge:
    """Two answered calls joined by a media relay until either ends."""

    def __init__(self, caller: SipCall, callee: SipCall) -> None:
        assert caller.media is not None and callee.media is not None
        self.caller = caller
        self.callee = callee
        self.relay = MediaRelay(caller.media, callee.media)
        self._tasks: set[asyncio.Task[None]] = set()
        self._locks = {id(caller): asyncio.Lock(), id(callee): asyncio.Lock()}
        self._restore: list[tuple[SipCall, Callable[[bytes], bytes | None] | None]] = []
        self.reinvites_passed = 0

    async def run(self) -> BridgeEnd:
        self.relay.start()
        for side, other in ((self.caller, self.callee), (self.callee, self.caller)):
            dialog = side.dialog
            assert dialog is not None
            self._restore.append((side, dialog.on_reinvite))
            dialog.on_reinvite = self._reinvite_handler(side, other, dialog.on_reinvite)
        waiters = {
            asyncio.ensure_future(self.caller.ended.wait()),
            asyncio.ensure_future(self.callee.ended.wait()),
        }
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        if self.caller.ended.is_set():
            log.info("bridge %s: caller ended (%s)", self.caller.call_id, self.caller.end_reason)
            return BridgeEnd.CALLER_HUNG_UP
        log.info("bridge %s: callee ended (%s)", self.caller.call_id, self.callee.end_reason)
        return BridgeEnd.CALLEE_HUNG_UP

    def _reinvite_handler(
        self,
        side: SipCall,
        other: SipCall,
        answer: Callable[[bytes], bytes | None] | None,
    ) -> Callable[[bytes], bytes | None]:
        def handle(offer: bytes) -> bytes | None:
            result = answer(offer) if answer is not None else None
            media = side.media
            if result is not None and media is not None and media.negotiated is not None:
                wanted = media.negotiated.remote_direction
                task = asyncio.create_task(self._pass_across(other, wanted))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return result

        return handle

    async def _pass_across(self, other: SipCall, direction: Direction) -> None:
        """Offer ``other`` the direction the first side asked of us (its hold or resume)."""
        async with self._locks[id(other)]:
            media, dialog = other.media, other.dialog
            if media is None or dialog is None or dialog.terminated or other.ended.is_set():
                return
            current = media.negotiated
            if current is not None and current.direction is direction:
                return
            try:
                offer = media.offer(direction=direction)
                answer = await dialog.reinvite(offer)
                media.accept_answer(answer, offer)
            except (CallFailed, SipStateError, SipTransportError, SdpError) as exc:
                log.info("call %s: re-INVITE %s not passed: %s", other.call_id, direction, exc)
                return
            self.reinvites_passed += 1

    async def close(self) -> None:
        self.relay.stop()
        for side, handler in self._restore:
            if side.dialog is not None:
                side.dialog.on_reinvite = handler
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.callee.hangup()
        await self.caller.hangup()
