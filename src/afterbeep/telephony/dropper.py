"""`SipDropper`, the delivery engine's `DropDialer` for voicemail drops: places the call (single
or the two-call technique) and runs the drop script (`telephony.scripts.drop`) on the answer.

The two-call technique: call 1 at t = 0 only occupies the line; call 2 at t =
`second_call_delay_ms`; call 1 is CANCELled as soon as call 2 rings (180/183), or fails or is
answered, and at `first_call_bound_ms` at the latest (its own INVITE times out then too). Call
1 is never an attempt: the engine records one attempt per drop, call 2's. Should call 1 be
answered anyway before call 2 is placed or answered, the drop runs on call 1 (the line is
ours; a second call would only ring a busy line) and call 2 is cancelled; if both are
answered, call 2 (the intended one) is used and call 1 hung up without a sound. A failure of
call 1 by itself (busy, 404...) is ignored: call 2's answer is the one that counts. Both
INVITEs go through the trunk's `Pacer` (calls per second and calls at once); call 1's slot is
given back when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace

from afterbeep.audio.amd import MachineDetector
from afterbeep.audio.sit import SitDetector
from afterbeep.domain.drops import (
    DETECTION_LIMIT_S,
    DropFailure,
    DropOutcome,
    DropResult,
    outcome_of_code,
)
from afterbeep.domain.ringless import DropTechnique
from afterbeep.services.ports.drops import DropRequest
from afterbeep.telephony.call import (
    MEDIA_NOT_ALLOWED,
    DialFailed,
    DialState,
    MediaNotAllowed,
    OutboundCall,
    SipCall,
)
from afterbeep.telephony.delivery_worker import Pacer, TrunkLimits
from afterbeep.telephony.scripts.drop import Detector, TurnWords, drop_message
from afterbeep.telephony.server import TelephonyServer
from afterbeep.telephony.sip import Credentials

__all__ = ["SipDropper"]

log = logging.getLogger("afterbeep.drop")


class _Leg:
    """One INVITE of a drop: whether it is answered, and SIT heard on its early media."""

    def __init__(self, outbound: OutboundCall) -> None:
        self.outbound = outbound
        self.sit = False
        self._sit = SitDetector()
        self._watch = asyncio.ensure_future(self._watch_early())
        self.answer: asyncio.Future[SipCall | DialFailed] = asyncio.ensure_future(self._answer())

    async def _watch_early(self) -> None:
        async with contextlib.aclosing(self.outbound.early_audio()) as early:
            async for block in early:
                if self._sit.feed(block) is not None:
                    self.sit = True
                    self.outbound.cancel()
                    return

    async def _answer(self) -> SipCall | DialFailed:
        try:
            return await self.outbound.wait_answered()
        except DialFailed as exc:
            return exc

    @property
    def ringing(self) -> bool:
        return self.outbound.ringing.is_set() or self.outbound.early_media.is_set()

    def answered(self) -> SipCall | None:
        result = self.answer.result() if self.answer.done() else None
        return result if isinstance(result, SipCall) else None

    async def close(self) -> None:
        """Cancel it if it is still ringing, hang it up if it was answered."""
        result: SipCall | DialFailed | None
        if self.answer.cancelled():  # a stopping worker cut the wait for the answer short
            await self.outbound.aclose()
            result = self.outbound.call
        else:
            if not self.answer.done():
                self.outbound.cancel()
            result = await self.answer
        if isinstance(result, SipCall):
            await result.hangup()
        self._watch.cancel()
        await asyncio.gather(self._watch, return_exceptions=True)


class SipDropper:
    """`services.ports.drops.DropDialer` over the `TelephonyServer`, paced per trunk."""

    def __init__(
        self,
        server: Callable[[], TelephonyServer | None],
        pacer: Pacer,
        *,
        ring_timeout: float = 45.0,
        detector: Callable[[], Detector] = MachineDetector,
        detection_limit: float = DETECTION_LIMIT_S,
        words: TurnWords | None = None,
    ) -> None:
        """``words``: transcribe first turns for ``detector`` (a `WordsDetector`)."""
        self._server = server
        self._pacer = pacer
        self._ring_timeout = ring_timeout
        self._detector = detector
        self._detection_limit = detection_limit
        self._words = words
        self.invites = 0
        self.first_calls_cancelled = 0

    async def drop(self, request: DropRequest) -> DropResult:
        server = self._server()
        if server is None:
            return DropResult(DropOutcome.FAILED, 503, DropFailure.TRUNK_ERROR.value)
        loop = asyncio.get_running_loop()
        began = loop.time()
        if request.technique is DropTechnique.SINGLE or request.max_concurrent_calls < 2:
            # A trunk that carries one call at a time cannot hold the line with a first call.
            result = await self._single(server, request)
        else:
            result = await self._two_call(server, request)
        return replace(result, duration_ms=int((loop.time() - began) * 1000))

    async def _open(
        self,
        stack: contextlib.AsyncExitStack,
        server: TelephonyServer,
        request: DropRequest,
        timeout: float,
    ) -> _Leg | DialFailed:
        """An INVITE placed within a pacer slot that `stack` holds until it closes."""
        limits = TrunkLimits(request.calls_per_second, request.max_concurrent_calls)
        await stack.enter_async_context(self._pacer.call_slot(request.setup_id, limits))
        credentials = (
            Credentials(request.username, request.password)
            if request.username and request.password is not None
            else None
        )
        self.invites += 1
        try:
            outbound = await server.dial(
                request.to_uri,
                request.from_uri,
                credentials=credentials,
                outbound_proxy=request.outbound_proxy,
                timeout=timeout,
                headers=request.headers,
            )
        except DialFailed as exc:
            return exc
        leg = _Leg(outbound)
        stack.push_async_callback(leg.close)
        return leg

    async def _single(self, server: TelephonyServer, request: DropRequest) -> DropResult:
        async with contextlib.AsyncExitStack() as stack:
            leg = await self._open(stack, server, request, self._ring_timeout)
            if isinstance(leg, DialFailed):
                return _unanswered(leg, sit=False)
            return await self._finish(leg, request)

    async def _two_call(self, server: TelephonyServer, request: DropRequest) -> DropResult:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        bound_at = t0 + request.first_call_bound_ms / 1000
        async with contextlib.AsyncExitStack() as stack, contextlib.AsyncExitStack() as first_stack:
            opened = await self._open(first_stack, server, request, request.first_call_bound_ms / 1000)
            first = opened if isinstance(opened, _Leg) else None
            if first is None:
                await first_stack.aclose()
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(request.second_call_delay_ms / 1000):
                        await asyncio.shield(first.answer)
                if first.answered() is not None:
                    log.info("drop %s: call 1 was answered; the drop runs on it", request.send_id)
                    return await self._finish(first, request)
            second = await self._open(stack, server, request, self._ring_timeout)
            if isinstance(second, DialFailed):
                return _unanswered(second, sit=False)
            if first is not None:
                if await self._first_wins(first, second, bound_at):
                    await second.close()
                    return await self._finish(first, request)
                if first.answered() is None:
                    self.first_calls_cancelled += 1
                await first_stack.aclose()
            return await self._finish(second, request)

    async def _first_wins(self, first: _Leg, second: _Leg, bound_at: float) -> bool:
        """Until call 1 has to go (call 2 rings or ends, or the bound): True if call 1 was
        answered meanwhile (and call 2 not), so the drop runs on call 1."""
        loop = asyncio.get_running_loop()
        while True:
            if first.answer.done():
                return first.answered() is not None and second.answered() is None
            if second.ringing or second.answer.done() or loop.time() >= bound_at:
                first.outbound.cancel()
                return False
            progress = asyncio.ensure_future(_progress(second.outbound))
            waiters: set[asyncio.Future[object]] = {first.answer, second.answer, progress}  # type: ignore[arg-type]
            try:
                await asyncio.wait(
                    waiters,
                    timeout=max(0.0, bound_at - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                progress.cancel()
                await asyncio.gather(progress, return_exceptions=True)

    async def _finish(self, leg: _Leg, request: DropRequest) -> DropResult:
        result = await leg.answer
        if isinstance(result, DialFailed):
            return _unanswered(result, sit=leg.sit)
        outcome = await drop_message(
            result,
            request.audio,
            self._detector(),
            detection_limit=self._detection_limit,
            words=self._words,
        )
        if result.end_reason == MEDIA_NOT_ALLOWED and outcome.outcome in (
            DropOutcome.FAILED,
            DropOutcome.NO_ANSWER,
        ):  # a re-INVITE moved the media out of the network policy: we hung up
            outcome = replace(
                outcome,
                outcome=DropOutcome.FAILED,
                reason=DropFailure.MEDIA_ADDRESS_NOT_ALLOWED.value,
            )
        return replace(outcome, sip_code=200)


async def _progress(outbound: OutboundCall) -> None:
    """Until the call rings or has early media."""
    while outbound.state is DialState.CALLING:
        ringing = asyncio.ensure_future(outbound.ringing.wait())
        early = asyncio.ensure_future(outbound.early_media.wait())
        try:
            await asyncio.wait({ringing, early}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (ringing, early):
                waiter.cancel()
            await asyncio.gather(ringing, early, return_exceptions=True)


def _unanswered(failure: DialFailed, *, sit: bool) -> DropResult:
    if sit:
        return DropResult(DropOutcome.FAILED, failure.code, DropFailure.SIT_TONE.value)
    if isinstance(failure, MediaNotAllowed):
        return DropResult(
            DropOutcome.FAILED, failure.code, DropFailure.MEDIA_ADDRESS_NOT_ALLOWED.value
        )
    outcome, reason = outcome_of_code(failure.code)
    detail = reason.value if reason is not None else f"{failure.code} {failure.reason}"
    return DropResult(outcome, failure.code, detail)
