"""A call from one of our phones to an outside number, through the account's telephony setup.

`OutsideCalls.route` is what `InboundCalls` answers a device's INVITE to a number not held
here (the account allows it): a refusal with its reason (`services.device_outbound`), or the
handler that dials the number through the setup's trunk, paced as drops and deposits are (the
same `Pacer`, per setup: INVITEs per second and calls at once, the slot held until the call
ends). The phone hears 180 Ringing while the far end rings; the far end's failure comes back as
the matching SIP answer (busy 486, no answer 480, unreachable or trunk trouble 503, others as
they came); an answer is bridged (`Ringer.bridge`), and a CANCEL from the phone cancels the
trunk's INVITE. The trunk is reached under the network policy of every outbound call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from afterbeep.domain.phone import mask
from afterbeep.services.device_outbound import DeviceOutbound, OutsideCall, Refused
from afterbeep.telephony.call import DialFailed, DialState, OutboundCall, SipCall
from afterbeep.telephony.delivery_worker import Pacer, TrunkLimits
from afterbeep.telephony.scripts.ringer import Ringer
from afterbeep.telephony.server import Route, TelephonyServer
from afterbeep.telephony.sip import Credentials

__all__ = ["OutsideCalls", "answer_for", "dial_trunk"]

log = logging.getLogger(__name__)

RING_TIMEOUT = 90.0  # the far end rings this long at most (the phone's user usually gives up first)
_ANONYMOUS = "sip:anonymous@anonymous.invalid"  # RFC 3323


def answer_for(failure: DialFailed) -> tuple[int, str]:
    """What the phone is told when the far end did not answer."""
    code = failure.code
    if code in (486, 600):
        return 486, "Busy Here"
    if code in (408, 480, 487):
        return 480, "No Answer"
    if code in (401, 407) or (code >= 500 and code < 600):
        return 503, "Outside Call Failed"  # the trunk refused us or failed: not the phone's fault
    return code, failure.reason or "Outside Call Failed"


class OutsideCalls:
    def __init__(
        self,
        planner: DeviceOutbound,
        server: Callable[[], TelephonyServer | None],
        ringer: Callable[[], Ringer | None],
        pacer: Pacer,
        *,
        ring_timeout: float = RING_TIMEOUT,
    ) -> None:
        self._planner = planner
        self._server = server
        self._ringer = ringer
        self._pacer = pacer
        self._ring_timeout = ring_timeout

    async def route(self, account_id: str, user_id: str, dialed: str) -> Route:
        plan = await self._planner.plan(account_id, user_id, dialed)
        if isinstance(plan, Refused):
            refused = plan

            async def refuse(call: SipCall) -> None:
                if call.invite is not None and call.invite.answerable:
                    call.invite.reject(refused.code, refused.reason)

            return refuse
        outside = plan

        async def dial_out(call: SipCall) -> None:
            await self.call(call, outside)

        return dial_out  # not answered: the far end rings first

    async def call(self, call: SipCall, plan: OutsideCall) -> None:
        server, ringer = self._server(), self._ringer()
        if server is None or ringer is None:
            self._reject(call, 503, "Outside Calls Unavailable")
            return
        setup = plan.setup
        limits = TrunkLimits(setup.max_calls_per_second, setup.max_concurrent_calls)
        async with contextlib.AsyncExitStack() as held:

            async def place() -> SipCall:
                await held.enter_async_context(self._pacer.call_slot(setup.id, limits))
                return await self._ring(call, server, plan)

            placing = asyncio.create_task(place(), name=f"outside-{call.call_id}")
            gone = asyncio.ensure_future(call.ended.wait())
            try:
                await asyncio.wait({placing, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                gone.cancel()
                if not placing.done():
                    placing.cancel()  # the phone hung up (CANCEL): the trunk's INVITE is cancelled
                results = await asyncio.gather(placing, gone, return_exceptions=True)
            leg = results[0]
            if isinstance(leg, DialFailed):
                code, reason = answer_for(leg)
                log.info(
                    "call %s out to %s: %d %s",
                    call.call_id,
                    mask(plan.to_e164),
                    leg.code,
                    leg.reason,
                )
                self._reject(call, code, reason)
                return
            if not isinstance(leg, SipCall):
                if isinstance(leg, BaseException) and not isinstance(leg, asyncio.CancelledError):
                    raise leg
                log.info(
                    "call %s out to %s: the phone hung up first", call.call_id, mask(plan.to_e164)
                )
                return
            if call.ended.is_set():
                await leg.hangup()
                return
            log.info("call %s out to %s answered", call.call_id, mask(plan.to_e164))
            await ringer.bridge(call, leg)

    async def _ring(self, call: SipCall, server: TelephonyServer, plan: OutsideCall) -> SipCall:
        """Dial the number through the setup's trunk, 180 to the phone while it rings: the
        answered leg; DialFailed when it was not answered."""
        outbound = await dial_trunk(server, plan, self._ring_timeout)
        try:
            async for state in outbound.updates():
                if state in (DialState.RINGING, DialState.EARLY_MEDIA) and not call.answered:
                    call.ringing()
        except asyncio.CancelledError:
            await outbound.aclose()
            raise
        if outbound.call is not None:
            return outbound.call
        raise outbound.failure if outbound.failure is not None else DialFailed(500, "no answer")

    @staticmethod
    def _reject(call: SipCall, code: int, reason: str) -> None:
        if call.invite is not None and call.invite.answerable:
            call.invite.reject(code, reason)


async def dial_trunk(server: TelephonyServer, plan: OutsideCall, timeout: float) -> OutboundCall:
    """The INVITE to `plan.to_e164` through the setup's trunk: From (and P-Asserted-Identity)
    the caller id at the setup's domain, or anonymous with `Privacy: id`; the setup's digest
    credentials. Raises DialFailed as `TelephonyServer.dial` does."""
    setup = plan.setup
    domain = setup.from_domain or setup.trunk_host
    if plan.caller_id:
        from_uri = f"sip:{plan.caller_id}@{domain}"
        headers = [("P-Asserted-Identity", f"<{from_uri}>")]
    else:
        from_uri, headers = _ANONYMOUS, [("Privacy", "id")]
    credentials = (
        Credentials(setup.username, plan.password)
        if setup.username and plan.password is not None
        else None
    )
    return await server.dial(
        setup.call_target(plan.to_e164),
        from_uri,
        credentials=credentials,
        outbound_proxy=setup.outbound_proxy,
        timeout=timeout,
        headers=headers,
    )
