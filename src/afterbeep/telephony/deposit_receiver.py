"""Receiving ringless voicemail: SIP deposits from trusted peers go straight into a mailbox.

A deposit is an INVITE to one of our numbers carrying the marker header
``X-Afterbeep-Deposit: 1`` (the documented deposit marker). From a source address listed in
``AFTERBEEP_DEPOSIT_PEERS`` it is answered at once and recorded into the number's mailbox: no
greeting, no instructions, no beep; the recording ends when the peer hangs up after playing
its audio. A marker from any other address is refused with 403 (a caller must not be able to
skip the greeting by adding a header). INVITEs without the marker follow the normal inbound
route.

The sender may name its send in ``X-Afterbeep-Send``; the message's call id is then derived
from it, so a deposit the sender repeats (it never saw our answer) stores no second message.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable

from afterbeep.domain.clock import Clock, iso
from afterbeep.domain.phone import mask
from afterbeep.services.routing import CallRouter, NoRoute, VoicemailRoute
from afterbeep.telephony.call import SipCall, uri_user
from afterbeep.telephony.interface import CallEnded, EndedBy
from afterbeep.telephony.server import Route, Router
from afterbeep.telephony.sip import IncomingInvite
from afterbeep.telephony.spool import Spool, SpoolMeta
from afterbeep.telephony.spool_worker import SpoolWorker

__all__ = [
    "DEPOSIT_HEADER",
    "SEND_HEADER",
    "DepositReceiver",
    "PeerList",
    "deposit_call_id",
    "parse_peers",
]

log = logging.getLogger("afterbeep.deposit_receiver")

DEPOSIT_HEADER = "X-Afterbeep-Deposit"
SEND_HEADER = "X-Afterbeep-Send"
# A deposit's audio may hold long pauses; the peer's BYE ends it, this only guards dead peers.
DEPOSIT_SILENCE_SECONDS = 30.0
_SEND_ID_RE = re.compile(r"[A-Za-z0-9_]{1,80}")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PeerList = tuple[Network, ...]


def parse_peers(text: str) -> PeerList:
    """``"10.0.0.1, 192.168.0.0/24, ::1"`` → networks; empty text → no peer. ValueError on junk."""
    peers: list[Network] = []
    for item in text.split(","):
        item = item.strip()
        if item:
            peers.append(ipaddress.ip_network(item, strict=False))
    return tuple(peers)


def peer_allowed(peers: Iterable[Network], host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return any(address.version == net.version and address in net for net in peers)


def deposit_call_id(send_id: str | None) -> str | None:
    """The message call id for a deposit naming its send; None when the name is unusable."""
    if send_id is None or not _SEND_ID_RE.fullmatch(send_id.strip()):
        return None
    return f"rvm_{send_id.strip()}"


class DepositReceiver:
    """A `Router` in front of the normal inbound one (``fallback``)."""

    def __init__(
        self,
        fallback: Router,
        router: CallRouter,
        spool: Spool,
        spool_worker: SpoolWorker,
        clock: Clock,
        peers: PeerList,
        *,
        silence_threshold: int = 200,
    ) -> None:
        self._fallback = fallback
        self._router = router
        self._spool = spool
        self._spool_worker = spool_worker
        self._clock = clock
        self._peers = peers
        self._silence_threshold = silence_threshold
        self.received = 0
        self.refused = 0

    async def route(self, invite: IncomingInvite) -> Route:
        marker = invite.request.headers.get_first(DEPOSIT_HEADER.lower())
        if marker is None or marker.strip() != "1":
            return await self._fallback(invite)
        host = invite.source[0]
        if not peer_allowed(self._peers, host):
            self.refused += 1
            log.warning("deposit refused: %s is not a deposit peer", host)
            return 403
        decision = await self._router.route(uri_user(invite.request.uri) or "")
        if isinstance(decision, NoRoute):
            return decision.code
        if decision.full:
            return 480
        call_id = deposit_call_id(invite.request.headers.get_first(SEND_HEADER.lower()))

        async def receive(call: SipCall) -> None:
            await self._receive(call, decision, call_id)

        return receive

    async def _receive(self, call: SipCall, route: VoicemailRoute, call_id: str | None) -> None:
        if call_id is not None:
            call.call_id = call_id
        await call.answer()
        mailbox = route.mailbox
        meta = SpoolMeta(
            call_id=call.call_id,
            account_id=mailbox.account_id,
            mailbox_id=mailbox.id,
            caller=call.caller,
            caller_name=call.caller_name,
            callee=call.callee,
            started_at=iso(self._clock.now()),
        )
        writer = self._spool.open(meta, self._silence_threshold)
        try:
            recording = await call.record(
                writer,
                max_seconds=mailbox.max_message_seconds,
                silence_seconds=max(DEPOSIT_SILENCE_SECONDS, mailbox.silence_seconds),
                finish_on="",
                silence_threshold=self._silence_threshold,
            )
        except (CallEnded, OSError):
            writer.discard()
            raise
        # Kept whole: a deposit's trailing silence is part of the sender's audio.
        entry = writer.close(EndedBy.FINISH_KEY)
        self.received += 1
        log.info(
            "deposit received for %s (%s, %d ms)",
            mask(call.callee),
            recording.ended_by.value,
            recording.duration_ms,
        )
        self._spool_worker.submit(entry)
