"""Receiving ringless voicemail: SIP deposits from trusted peers go straight into a mailbox.

A deposit is an INVITE to one of our numbers carrying the marker header
``X-Afterbeep-Deposit: 1`` (the documented deposit marker). From a source address listed in
``AFTERBEEP_DEPOSIT_PEERS`` it is answered at once and recorded into the number's mailbox: no
greeting, no instructions, no beep; the recording ends when the peer hangs up after playing
its audio. A deposit whose peer vanished without BYE (RTP timeout) is dropped, not stored: the
peer never saw it through and will send it again. A peer at any other address may instead authenticate by SIP digest (RFC 3261
§22.4, RFC 7616) as one of the ``AFTERBEEP_DEPOSIT_USERS``: its first INVITE gets 401 with a
SHA-256 and an MD5 challenge (qop=auth, a nonce that expires after `NONCE_SECONDS`; an expired
nonce is challenged again with ``stale=true``), and a wrong answer, an unknown user or a replayed
nonce count gets 403. A marker from a peer neither allowed by address nor authenticated is
refused with 403 (a caller must not be able to skip the greeting by adding a header); INVITEs
without the marker follow the normal inbound route.

The digest check (`DigestGuard`) is ours: the SIP library only answers challenges. It is pure
(time passed in) and stateless but for the highest nonce count seen per live nonce; nonces are
signed with a per-process key, so after a restart an old nonce is simply challenged again.

The sender may name its send in ``X-Afterbeep-Send``; the message's call id is then derived
from it, so a deposit the sender repeats (it never saw our answer) stores no second message.
Calls of one send never share its spool entry: a repeat that arrives while the earlier call is
still live (the sender restarted, or gave up on it, before our RTP timeout) ends that call and
drops its partial recording, the newest call wins; a repeat of a deposit received whole and
still waiting in the spool is answered and heard out, and the entry already there is kept.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import ipaddress
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from aiosipua.headers import parse_auth

from afterbeep.domain.clock import Clock, iso
from afterbeep.domain.phone import mask
from afterbeep.services.routing import CallRouter, NoRoute, VoicemailRoute
from afterbeep.telephony.call import SipCall, uri_user
from afterbeep.telephony.interface import Audio, CallEnded, EndedBy, Recording, RecordingSink
from afterbeep.telephony.server import QuickRouter, Route, Router
from afterbeep.telephony.sip import IncomingInvite
from afterbeep.telephony.spool import Spool, SpoolMeta
from afterbeep.telephony.spool_worker import SpoolHandoff

__all__ = [
    "DEPOSIT_HEADER",
    "SEND_HEADER",
    "AuthCheck",
    "AuthOutcome",
    "DepositReceiver",
    "DigestGuard",
    "PeerList",
    "deposit_call_id",
    "parse_peers",
    "parse_users",
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


def parse_users(text: str) -> dict[str, str]:
    """``"name:password, other:secret"`` → {name: password}; a password may hold ``:`` but not
    ``,``. ValueError on an item without a name or a password."""
    users: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, password = item.partition(":")
        if not sep or not name.strip() or not password:
            raise ValueError("deposit users are name:password items separated by commas")
        users[name.strip()] = password
    return users


# -- digest authentication of deposit peers (the server side) ------------------

REALM = "afterbeep"
NONCE_SECONDS = 60.0
_HASHES = {"SHA-256": hashlib.sha256, "MD5": hashlib.md5}


class AuthOutcome(enum.Enum):
    OK = "ok"
    CHALLENGE = "challenge"  # no usable credentials: send 401
    STALE = "stale"  # the right answer to an expired nonce: send 401 with stale=true
    REFUSED = "refused"  # wrong answer, unknown user, replay: send 403


@dataclass(frozen=True, slots=True)
class AuthCheck:
    outcome: AuthOutcome
    user: str | None = None
    detail: str = ""


class DigestGuard:
    """Checks ``Authorization: Digest`` answers against a table of users; see the module
    docstring. `now` is seconds since the epoch, passed in."""

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        realm: str = REALM,
        nonce_seconds: float = NONCE_SECONDS,
        key: bytes | None = None,
    ) -> None:
        self._users = dict(users)
        self.realm = realm
        self._nonce_seconds = nonce_seconds
        self._key = key if key is not None else os.urandom(32)
        self._counts: dict[str, tuple[float, int]] = {}  # nonce -> (expires, highest nc)

    def _sign(self, expires: int) -> str:
        return hmac.new(self._key, str(expires).encode(), hashlib.sha256).hexdigest()[:32]

    def nonce(self, now: float) -> str:
        expires = int(now + self._nonce_seconds)
        return f"{expires}.{self._sign(expires)}"

    def challenges(self, now: float, *, stale: bool = False) -> list[tuple[str, str]]:
        """``WWW-Authenticate`` headers: SHA-256 first, then MD5, one nonce for both."""
        nonce = self.nonce(now)
        extra = ", stale=true" if stale else ""
        return [
            (
                "WWW-Authenticate",
                f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={algorithm}, '
                f'qop="auth"{extra}',
            )
            for algorithm in ("SHA-256", "MD5")
        ]

    def _nonce_expiry(self, nonce: str) -> int | None:
        """The expiry a nonce of ours carries; None for a nonce we did not sign."""
        head, _, signature = nonce.partition(".")
        if not head.isdigit() or not hmac.compare_digest(signature, self._sign(int(head))):
            return None
        return int(head)

    def check(
        self, method: str, request_uri: str, authorizations: Sequence[str], now: float
    ) -> AuthCheck:
        self._forget(now)
        for value in authorizations:
            parsed = parse_auth(value)
            if parsed.scheme.lower() != "digest":
                continue
            params = {k.strip().lower(): v for k, v in parsed.params.items()}
            if params.get("realm") != self.realm:
                continue
            return self._check(method, request_uri, params, now)
        return AuthCheck(AuthOutcome.CHALLENGE)

    def _check(
        self, method: str, request_uri: str, params: Mapping[str, str], now: float
    ) -> AuthCheck:
        user = params.get("username", "")
        nonce = params.get("nonce", "")
        algorithm = params.get("algorithm", "MD5").upper()
        digest = _HASHES.get(algorithm)
        expires = self._nonce_expiry(nonce)
        if expires is None:
            return AuthCheck(AuthOutcome.STALE, detail="not our nonce")
        password = self._users.get(user)
        if password is None or digest is None:
            return AuthCheck(AuthOutcome.REFUSED, detail="unknown user or algorithm")
        if params.get("qop", "").lower() != "auth" or params.get("uri") != request_uri:
            return AuthCheck(AuthOutcome.REFUSED, user, "qop or uri does not match")
        nc_text, cnonce = params.get("nc", ""), params.get("cnonce", "")
        try:
            nc = int(nc_text, 16)
        except ValueError:
            return AuthCheck(AuthOutcome.REFUSED, user, "bad nonce count")

        def h(text: str) -> str:
            assert digest is not None
            return digest(text.encode()).hexdigest()

        ha1 = h(f"{user}:{self.realm}:{password}")
        ha2 = h(f"{method}:{request_uri}")
        expected = h(f"{ha1}:{nonce}:{nc_text}:{cnonce}:auth:{ha2}")
        if not hmac.compare_digest(expected, params.get("response", "").lower()):
            return AuthCheck(AuthOutcome.REFUSED, user, "wrong answer")
        if expires <= now:
            return AuthCheck(AuthOutcome.STALE, user, "nonce expired")
        _, seen = self._counts.get(nonce, (expires, 0))
        if nc <= seen:
            return AuthCheck(AuthOutcome.REFUSED, user, "nonce count replayed")
        self._counts[nonce] = (expires, nc)
        return AuthCheck(AuthOutcome.OK, user)

    def _forget(self, now: float) -> None:
        for nonce in [n for n, (expires, _) in self._counts.items() if expires <= now]:
            del self._counts[nonce]


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


def _is_deposit(invite: IncomingInvite) -> bool:
    marker = invite.request.headers.get_first(DEPOSIT_HEADER.lower())
    return marker is not None and marker.strip() == "1"


@dataclass(slots=True)
class _Live:
    """The call currently depositing a send, and whether its handling has finished."""

    call: SipCall
    done: asyncio.Event = field(default_factory=asyncio.Event)


class _Ignored:
    """A recording sink that keeps nothing."""

    def write(self, pcm: Audio) -> None:
        pass


class DepositReceiver:
    """A `Router` in front of the normal inbound one (``fallback``)."""

    def __init__(
        self,
        fallback: Router,
        router: CallRouter,
        spool: Spool,
        spool_worker: SpoolHandoff,
        clock: Clock,
        peers: PeerList,
        *,
        users: Mapping[str, str] | None = None,
        silence_threshold: int = 200,
        quick_fallback: QuickRouter | None = None,
    ) -> None:
        self._fallback = fallback
        self._quick_fallback = quick_fallback
        self._router = router
        self._spool = spool
        self._spool_worker = spool_worker
        self._clock = clock
        self._peers = peers
        self._guard = DigestGuard(users) if users else None
        self._silence_threshold = silence_threshold
        self._live: dict[str, _Live] = {}
        self.received = 0
        self.refused = 0
        self.repeats = 0

    def quick_route(self, invite: IncomingInvite) -> Route | None:
        """The fallback's quick route for an ordinary call; None (ask `route`) for a deposit."""
        if self._quick_fallback is None or _is_deposit(invite):
            return None
        return self._quick_fallback(invite)

    async def route(self, invite: IncomingInvite) -> Route:
        if not _is_deposit(invite):
            return await self._fallback(invite)
        host = invite.source[0]
        if not peer_allowed(self._peers, host):
            refusal = self._authenticate(invite, host)
            if refusal is not None:
                return refusal
        decision = await self._router.route(uri_user(invite.request.uri) or "")
        if isinstance(decision, NoRoute):
            return decision.code
        if not isinstance(decision, VoicemailRoute) or decision.full:
            return 480  # a deposit needs a mailbox with room (not a flow or a hangup)
        call_id = deposit_call_id(invite.request.headers.get_first(SEND_HEADER.lower()))

        async def receive(call: SipCall) -> None:
            await self._receive(call, decision, call_id)

        return receive

    def _authenticate(self, invite: IncomingInvite, host: str) -> Route | None:
        """None when the peer proved who it is; else the 401 challenge or the 403."""
        if self._guard is None:
            self.refused += 1
            log.warning("deposit refused: %s is not a deposit peer", host)
            return 403
        now = self._clock.now().timestamp()
        check = self._guard.check(
            "INVITE", invite.request.uri, invite.request.headers.get("authorization"), now
        )
        if check.outcome is AuthOutcome.OK:
            return None
        if check.outcome is AuthOutcome.REFUSED:
            self.refused += 1
            log.warning("deposit refused from %s: %s", host, check.detail)
            return 403
        headers = self._guard.challenges(now, stale=check.outcome is AuthOutcome.STALE)

        async def challenge(call: SipCall) -> None:
            assert call.invite is not None
            call.invite.reject(401, "Unauthorized", headers)

        return challenge

    async def _receive(self, call: SipCall, route: VoicemailRoute, call_id: str | None) -> None:
        if call_id is None:
            await self._record(call, route)  # named by its SIP Call-ID: no earlier call shares it
            return
        call.call_id = call_id
        live = await self._claim(call)
        try:
            held = await asyncio.to_thread(self._spool.entry, call_id)
            if held is not None and held.meta.ended_by is not None:
                await self._hear_out(call, route)
            else:
                await self._record(call, route)
        finally:
            live.done.set()
            if self._live.get(call_id) is live:
                del self._live[call_id]

    async def _claim(self, call: SipCall) -> _Live:
        """Make `call` the one live deposit of its send. An earlier call of the same send still
        live is an attempt its sender gave up on (it died, or timed out, and sent again before
        our RTP timeout): it is ended and its partial recording dropped before this one opens
        the same spool entry."""
        while (earlier := self._live.get(call.call_id)) is not None:
            log.warning("deposit for %s sent again: ending the earlier call", mask(call.callee))
            earlier.call.end("superseded")
            await earlier.done.wait()
        live = _Live(call)
        self._live[call.call_id] = live
        return live

    async def _hear_out(self, call: SipCall, route: VoicemailRoute) -> None:
        """A repeat of a deposit already received whole and not yet stored: answered and heard
        to the end like any other (its sender then knows it landed), but the entry in the spool
        is the one kept."""
        await call.answer()
        await self._take(call, route, _Ignored())
        self.repeats += 1
        log.info("deposit for %s repeated: the first one is kept", mask(call.callee))

    async def _take(self, call: SipCall, route: VoicemailRoute, sink: RecordingSink) -> Recording:
        """The deposit's audio into `sink`, until the sender hangs up (no key ends it)."""
        mailbox = route.mailbox
        return await call.record(
            sink,
            max_seconds=mailbox.max_message_seconds,
            silence_seconds=max(DEPOSIT_SILENCE_SECONDS, mailbox.silence_seconds),
            finish_on="",
            silence_threshold=self._silence_threshold,
        )

    async def _record(self, call: SipCall, route: VoicemailRoute) -> None:
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
            recording = await self._take(call, route, writer)
        except (CallEnded, OSError):
            writer.discard()
            raise
        if recording.ended_by is EndedBy.HANGUP and call.end_reason != "remote":
            # No BYE: the sender died mid-audio (RTP timeout), or sent the deposit again. It will
            # deposit again under the same name; keeping this part would make that one the duplicate.
            writer.discard()
            log.warning("deposit for %s cut short (%s): dropped", mask(call.callee), call.end_reason)
            return
        # Kept whole: a deposit's trailing silence is part of the sender's audio.
        entry = await asyncio.to_thread(writer.close, EndedBy.FINISH_KEY)  # fsyncs: off the loop
        self.received += 1
        log.info(
            "deposit received for %s (%s, %d ms)",
            mask(call.callee),
            recording.ended_by.value,
            recording.duration_ms,
        )
        self._spool_worker.submit(entry)
