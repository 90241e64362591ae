"""Message-waiting indication over SIP (RFC 3842 `message-summary`, RFC 6665 subscriptions).

`MwiNotifier` is the `services.message_waiting.MessageWaiting` port of the SIP side. Told that a
mailbox changed, it schedules one recount per mailbox (changes arriving while a recount or its
NOTIFYs are under way are coalesced into one more round), reads the counts from the database
and sends a NOTIFY to each target whose last NOTIFY showed other counts:

- every live subscription to the mailbox (an in-dialog NOTIFY, `Subscription-State: active`);
- every registered contact of a device whose user's `voicemail_id` is the mailbox and which has
  no subscription: an unsolicited NOTIFY (out of dialog, `Subscription-State: terminated`, as
  Asterisk sends them), to the address the REGISTER came from, through its Path.

A REGISTER (new binding or refresh) NOTIFYs that device whatever it was last sent; so does the
start of the service, for every registered device and every subscription. NOTIFYs go in a
non-INVITE client transaction each (retransmitted over UDP by timer E); a target's counts are
remembered only once it answered 2xx, so a lost NOTIFY is sent again at the next change.

Subscriptions live in the database (`mwi_subscriptions`): after a restart, or on another node,
the dialog goes on (a phone does not re-subscribe when its server restarts, and rejects a NOTIFY
outside its subscription). A NOTIFY answered 481, or never answered, ends the subscription
(RFC 6665 §4.2.2). Counts: unread messages are new, read ones old, those of the urgent folder
also urgent; trashed messages do not count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

from aiosipua.message import SipRequest

from afterbeep.domain.clock import Clock
from afterbeep.domain.ids import new_id
from afterbeep.domain.mwi import (
    CONTENT_TYPE,
    EVENT,
    DeviceContact,
    Subscription,
    WaitingCounts,
    account_uri,
    summary_body,
)
from afterbeep.telephony.sip.dialog import DialogState, Hop, hop_of, without_tag
from afterbeep.telephony.sip.errors import CallFailed, SipError
from afterbeep.telephony.sip.message import header_tag, new_call_id, new_tag, uri_of
from afterbeep.telephony.sip.registrar import (
    MAX_EXPIRES,
    MIN_EXPIRES,
    Answer,
    DeviceSecret,
)
from afterbeep.telephony.sip.ua import UserAgent

log = logging.getLogger(__name__)

DEFAULT_EXPIRES = 3600
REAP_SECONDS = 60.0
TargetKey = tuple[str, ...]


class MwiStore(Protocol):
    async def counts(self, account_id: str, mailbox_id: str) -> WaitingCounts: ...
    async def contacts_of_mailbox(
        self, account_id: str, mailbox_id: str, now: datetime
    ) -> list[DeviceContact]: ...
    async def contacts_of_device(self, device_id: str, now: datetime) -> list[DeviceContact]: ...
    async def watched_mailboxes(self, now: datetime) -> set[tuple[str, str]]: ...
    async def targets_of_mailbox(
        self, account_id: str, mailbox_id: str, now: datetime, *, contacts: bool = True
    ) -> tuple[list[Subscription], list[DeviceContact]]: ...
    async def device_mailbox(self, device_id: str) -> tuple[str, str, str] | None: ...
    async def subscriptions_of_mailbox(
        self, account_id: str, mailbox_id: str, now: datetime
    ) -> list[Subscription]: ...
    async def subscription(self, call_id: str, local_tag: str) -> Subscription | None: ...
    async def add(self, sub: Subscription) -> None: ...
    async def refresh(
        self,
        sub_id: str,
        *,
        expires_at: datetime,
        remote_seq: int,
        remote_target: str,
        source: tuple[str, int, str],
        now: datetime,
    ) -> None: ...
    async def next_seq(self, sub_id: str) -> int | None: ...
    async def remove(self, sub_id: str) -> None: ...
    async def reap(self, now: datetime) -> int: ...


class NotifySender(Protocol):
    """Sends one NOTIFY and returns the final status (408 when never answered, 503 when it
    could not be sent)."""

    async def to_subscription(
        self, sub: Subscription, seq: int, state: str, body: bytes
    ) -> int: ...
    async def to_contact(self, contact: DeviceContact, account: str, body: bytes) -> int: ...


class Authenticator(Protocol):
    async def authenticate(
        self,
        method: str,
        authorizations: Sequence[str],
        host: str,
        now: datetime,
        *,
        proxy: bool = False,
    ) -> DeviceSecret | Answer: ...


class SubscribeRequest(Protocol):
    """What the SIP layer hands over for a SUBSCRIBE (sip.ua.IncomingRequest)."""

    @property
    def uri(self) -> str: ...
    @property
    def source(self) -> tuple[str, int]: ...
    @property
    def transport(self) -> str: ...
    @property
    def contact(self) -> str: ...
    @property
    def client_host(self) -> str: ...  # source's host, or the client of a trusted proxy
    def headers(self, name: str) -> list[str]: ...
    def respond(
        self,
        code: int,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        *,
        to_tag: str | None = None,
    ) -> None: ...


# --- where NOTIFYs go ----------------------------------------------------------------------


def contact_hop(contact: DeviceContact) -> Hop:
    """The address the REGISTER came from (NAT); the hop of the contact otherwise."""
    transport = "TCP" if contact.transport.lower() == "tcp" else "UDP"
    if contact.source_host:
        return Hop(contact.source_host, contact.source_port, transport)
    if contact.path:
        return hop_of(uri_of(contact.path[0]))
    return hop_of(contact.contact)


def subscription_dialog(sub: Subscription, seq: int) -> DialogState:
    """The dialog state that makes the NOTIFY with CSeq `seq`."""
    return DialogState(
        call_id=sub.call_id,
        local_tag=sub.local_tag,
        remote_tag=sub.remote_tag,
        local_uri=sub.local_uri,
        remote_uri=sub.remote_uri,
        remote_target=sub.remote_target,
        route_set=list(sub.route_set),
        local_seq=seq - 1,
        remote_seq=sub.remote_seq,
        is_uac=False,
    )


class SipNotifySender:
    """NOTIFYs through the user agent (`UserAgent.send_request`)."""

    def __init__(self, ua: UserAgent, user_agent: str = "afterbeep") -> None:
        self._ua = ua
        self._user_agent = user_agent

    def _headers(self, state: str) -> tuple[tuple[str, str], ...]:
        return (
            ("Event", EVENT),
            ("Subscription-State", state),
            ("User-Agent", self._user_agent),
        )

    async def _send(self, build: Callable[[str, str], SipRequest], hop: Hop) -> int:
        try:
            response = await self._ua.send_request(build, hop)
        except CallFailed as exc:
            return exc.code
        except SipError as exc:
            log.info("NOTIFY not sent: %s", exc)
            return 503
        return response.status_code

    async def to_subscription(self, sub: Subscription, seq: int, state: str, body: bytes) -> int:
        dialog = subscription_dialog(sub, seq)
        transport = "TCP" if sub.transport.lower() == "tcp" else "UDP"

        def build(via: str, contact: str) -> SipRequest:
            return dialog.create_request(
                "NOTIFY",
                via=via,
                contact=contact,
                body=body,
                content_type=CONTENT_TYPE,
                headers=self._headers(state),
            )

        return await self._send(build, Hop(sub.source_host, sub.source_port, transport))

    async def to_contact(self, contact: DeviceContact, account: str, body: bytes) -> int:
        def build(via: str, our_contact: str) -> SipRequest:
            req = SipRequest(method="NOTIFY", uri=contact.contact, body=body)
            h = req.headers
            h.append("Via", via)
            h.set_single("Max-Forwards", "70")
            h.set_single("From", f"<{account}>;tag={new_tag()}")
            h.set_single("To", f"<{contact.contact}>")
            h.set_single("Call-ID", new_call_id(contact.source_host or "afterbeep"))
            h.set_single("CSeq", "1 NOTIFY")
            for route in contact.path:
                h.append("Route", route if "<" in route else f"<{route}>")
            h.set_single("Contact", our_contact)
            for name, value in self._headers("terminated;reason=noresource"):
                h.set_single(name, value)
            h.set_single("Content-Type", CONTENT_TYPE)
            return req

        return await self._send(build, contact_hop(contact))


# --- the notifier --------------------------------------------------------------------------


@dataclass(slots=True)
class _Due:
    """What a mailbox's next round must do beyond the targets whose counts changed."""

    force_all: bool = False
    force_devices: set[str] = field(default_factory=set)

    def forced(self, device_id: str) -> bool:
        return self.force_all or device_id in self.force_devices


def _expires_of(values: Sequence[str]) -> int | str | None:
    """The Expires header: None when absent, 'bad' when not a number."""
    if not values:
        return None
    value = values[0].strip()
    return int(value) if value.isdigit() else "bad"


class MwiNotifier:
    """The `MessageWaiting` port over SIP; answers SUBSCRIBE for `message-summary` too."""

    def __init__(
        self,
        store: MwiStore,
        sender: NotifySender,
        clock: Clock,
        domain: str,
        *,
        authenticator: Authenticator | None = None,
        min_expires: int = MIN_EXPIRES,
        max_expires: int = MAX_EXPIRES,
        reap_every: float = REAP_SECONDS,
        unsolicited: bool = True,
        remember_sent: bool = True,
    ) -> None:
        self._store = store
        self._sender = sender
        self._clock = clock
        self.domain = domain
        self._auth = authenticator
        self.min_expires = min_expires
        self.max_expires = max_expires
        self._reap_every = reap_every
        self.unsolicited = unsolicited  # False: subscriptions only
        # False on a node of a cluster: another node may have sent other counts since, so every
        # round tells every target (`_last` stays empty).
        self.remember_sent = remember_sent
        self._due: dict[tuple[str, str], _Due] = {}
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._last: dict[TargetKey, WaitingCounts] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        self.rounds = 0  # recounts done (tests: coalescing)
        self.sent = 0  # NOTIFYs sent

    # --- the port ---

    def mailbox_changed(self, account_id: str, mailbox_id: str) -> None:
        self._schedule((account_id, mailbox_id))

    def device_registered(self, device: DeviceSecret) -> None:
        """A REGISTER succeeded: that device's phones are told the counts again."""
        self._spawn(self._device_registered(device.device_id))

    async def _device_registered(self, device_id: str) -> None:
        found = await self._store.device_mailbox(device_id)
        if found is not None:
            account_id, mailbox_id, _ = found
            self._schedule((account_id, mailbox_id), device=device_id)

    def _schedule(
        self, key: tuple[str, str], *, device: str | None = None, force_all: bool = False
    ) -> None:
        if self._closed:
            return
        due = self._due.setdefault(key, _Due())
        due.force_all |= force_all
        if device is not None:
            due.force_devices.add(device)
        if key not in self._running:
            task = asyncio.get_running_loop().create_task(self._drain(key), name="mwi")
            self._running[key] = task

    async def _drain(self, key: tuple[str, str]) -> None:
        try:
            while (due := self._due.pop(key, None)) is not None:
                try:
                    await self._round(key, due)
                except Exception:
                    log.exception("message waiting: NOTIFY round failed")
        finally:
            self._running.pop(key, None)

    async def _round(self, key: tuple[str, str], due: _Due) -> None:
        account_id, mailbox_id = key
        now = self._clock.now()
        self.rounds += 1
        subs, contacts = await self._store.targets_of_mailbox(
            account_id, mailbox_id, now, contacts=self.unsolicited
        )
        if not subs and not contacts:
            return  # nobody to tell: no count (a deposit's loop time, issue 24)
        counts = await self._store.counts(account_id, mailbox_id)
        subscribed = {sub.device_id for sub in subs}
        jobs: list[Awaitable[None]] = []
        for sub in subs:
            if due.forced(sub.device_id) or self._last.get(("sub", sub.id)) != counts:
                jobs.append(self._notify_subscription(sub, counts, now))
        for contact in contacts:
            if contact.device_id in subscribed:
                continue
            target = ("reg", contact.device_id, contact.contact)
            if due.forced(contact.device_id) or self._last.get(target) != counts:
                jobs.append(self._notify_contact(contact, counts))
        await asyncio.gather(*jobs)

    async def _notify_subscription(
        self, sub: Subscription, counts: WaitingCounts, now: datetime
    ) -> None:
        seq = await self._store.next_seq(sub.id)
        if seq is None:
            return
        remaining = int((sub.expires_at - now).total_seconds())
        state = f"active;expires={remaining}" if remaining > 0 else "terminated;reason=timeout"
        self.sent += 1
        status = await self._sender.to_subscription(
            sub, seq, state, summary_body(counts, sub.message_account)
        )
        if 200 <= status < 300 and self.remember_sent:
            self._last[("sub", sub.id)] = counts
        elif status in (408, 481):
            log.info("message waiting: subscription ended by its NOTIFY's %d", status)
            await self._store.remove(sub.id)
            self._last.pop(("sub", sub.id), None)

    async def _notify_contact(self, contact: DeviceContact, counts: WaitingCounts) -> None:
        account = account_uri(contact.username, self.domain)
        self.sent += 1
        status = await self._sender.to_contact(contact, account, summary_body(counts, account))
        if 200 <= status < 300 and self.remember_sent:
            self._last[("reg", contact.device_id, contact.contact)] = counts

    # --- start and stop ---

    async def start(self) -> None:
        """After a (re)start: every registered device and every subscription is NOTIFYed."""
        now = self._clock.now()
        await self._store.reap(now)
        for key in sorted(await self._store.watched_mailboxes(now)):
            self._schedule(key, force_all=True)
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap(), name="mwi-reaper")

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(self._reap_every)
            try:
                await self._store.reap(self._clock.now())
            except Exception:
                log.exception("message waiting: reaping subscriptions failed")

    async def idle(self) -> None:
        """Until no round and no SUBSCRIBE is under way (tests)."""
        while self._running or self._tasks:
            await asyncio.gather(*self._running.values(), *self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        self._closed = True
        tasks = [*self._running.values(), *self._tasks]
        if self._reaper is not None:
            tasks.append(self._reaper)
            self._reaper = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Awaitable[None]) -> None:
        if self._closed:
            if asyncio.iscoroutine(coro):
                coro.close()
            return

        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run(), name="mwi-subscribe")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("message waiting failed", exc_info=task.exception())

    # --- SUBSCRIBE ---

    def on_subscribe(self, request: SubscribeRequest) -> None:
        self._spawn(self._subscribe(request))

    async def _subscribe(self, request: SubscribeRequest) -> None:
        try:
            code, reason, headers, to_tag, after = await self.handle_subscribe(request)
        except Exception:
            request.respond(500, "Server Internal Error")
            raise
        request.respond(code, reason, headers, to_tag=to_tag)
        if after is not None:
            await after

    async def handle_subscribe(
        self, request: SubscribeRequest
    ) -> tuple[int, str | None, list[tuple[str, str]], str | None, Awaitable[None] | None]:
        """The answer to one SUBSCRIBE, its To tag, and the NOTIFY to send once answered."""
        event = (request.headers("event") or [""])[0].split(";", 1)[0].strip().lower()
        if event != EVENT:
            return 489, "Bad Event", [("Allow-Events", EVENT)], None, None
        accepted = [a.strip().lower() for v in request.headers("accept") for a in v.split(",")]
        if accepted and not any(a.split(";")[0] in (CONTENT_TYPE, "*/*") for a in accepted):
            return 406, "Not Acceptable", [("Accept", CONTENT_TYPE)], None, None
        wanted = _expires_of(request.headers("expires"))
        if wanted == "bad":
            return 400, "Bad Expires", [], None, None
        expires = DEFAULT_EXPIRES if wanted is None else int(wanted)
        if 0 < expires < self.min_expires:
            return 423, "Interval Too Brief", [("Min-Expires", str(self.min_expires))], None, None
        expires = min(expires, self.max_expires)
        now = self._clock.now()
        if self._auth is None:
            return 403, "Forbidden", [], None, None
        found = await self._auth.authenticate(
            "SUBSCRIBE", request.headers("authorization"), request.client_host, now
        )
        if not isinstance(found, DeviceSecret):
            code, reason, headers = found
            return code, reason, headers, None, None
        to_tag = header_tag((request.headers("to") or [""])[0])
        if to_tag:
            return await self._in_dialog(request, found, to_tag, expires, now)
        return await self._new_subscription(request, found, expires, now)

    def _answer_headers(self, request: SubscribeRequest, expires: int) -> list[tuple[str, str]]:
        return [("Contact", request.contact), ("Expires", str(expires))]

    @staticmethod
    def _cseq(request: SubscribeRequest) -> int:
        text = (request.headers("cseq") or ["0"])[0].split()[0]
        return int(text) if text.isdigit() else 0

    async def _new_subscription(
        self, request: SubscribeRequest, device: DeviceSecret, expires: int, now: datetime
    ) -> tuple[int, str | None, list[tuple[str, str]], str | None, Awaitable[None] | None]:
        found = await self._store.device_mailbox(device.device_id)
        if found is None:
            return 404, "No Mailbox", [], None, None
        account_id, mailbox_id, username = found
        call_id = (request.headers("call-id") or [""])[0].strip()
        from_header = (request.headers("from") or [""])[0]
        remote_tag = header_tag(from_header)
        contact = (request.headers("contact") or [""])[0]
        if not call_id or not remote_tag or not contact:
            return 400, "Missing Call-ID, From tag or Contact", [], None, None
        local_tag = new_tag()
        sub = Subscription(
            id=new_id("mwi"),
            account_id=account_id,
            device_id=device.device_id,
            mailbox_id=mailbox_id,
            message_account=account_uri(username, self.domain),
            call_id=call_id[:200],
            local_tag=local_tag,
            remote_tag=remote_tag[:128],
            local_uri=without_tag((request.headers("to") or [""])[0])[:500],
            remote_uri=without_tag(from_header)[:500],
            remote_target=uri_of(contact)[:500],
            route_set=tuple(request.headers("record-route")),
            local_seq=0,
            remote_seq=self._cseq(request),
            source_host=request.source[0],
            source_port=request.source[1],
            transport=request.transport.lower(),
            expires_at=now + timedelta(seconds=expires),
            created_at=now,
            updated_at=now,
        )
        headers = self._answer_headers(request, expires)
        if expires == 0:  # a fetch: one NOTIFY, and the subscription ends with it
            await self._store.add(sub)
            return 200, None, headers, local_tag, self._final_notify(sub, now)
        await self._store.add(sub)
        log.info("message waiting: subscribed", extra={"device_id": device.device_id})
        return 200, None, headers, local_tag, self._first_notify(sub, now)

    async def _in_dialog(
        self,
        request: SubscribeRequest,
        device: DeviceSecret,
        to_tag: str,
        expires: int,
        now: datetime,
    ) -> tuple[int, str | None, list[tuple[str, str]], str | None, Awaitable[None] | None]:
        call_id = (request.headers("call-id") or [""])[0].strip()
        sub = await self._store.subscription(call_id, to_tag)
        from_tag = header_tag((request.headers("from") or [""])[0])
        if sub is None or sub.device_id != device.device_id or sub.remote_tag != from_tag:
            return 481, "Subscription Does Not Exist", [], to_tag, None
        seq = self._cseq(request)
        if seq < sub.remote_seq:
            return 500, "CSeq Out of Order", [], to_tag, None
        contact = (request.headers("contact") or [""])[0]
        target = uri_of(contact) if contact else sub.remote_target
        source = (request.source[0], request.source[1], request.transport.lower())
        headers = self._answer_headers(request, expires)
        if expires == 0:
            return 200, None, headers, to_tag, self._final_notify(sub, now)
        expires_at = now + timedelta(seconds=expires)
        await self._store.refresh(
            sub.id,
            expires_at=expires_at,
            remote_seq=seq,
            remote_target=target[:500],
            source=source,
            now=now,
        )
        refreshed = replace(
            sub,
            expires_at=expires_at,
            remote_seq=seq,
            remote_target=target[:500],
            source_host=source[0],
            source_port=source[1],
            transport=source[2],
        )
        return 200, None, headers, to_tag, self._first_notify(refreshed, now)

    async def _first_notify(self, sub: Subscription, now: datetime) -> None:
        counts = await self._store.counts(sub.account_id, sub.mailbox_id)
        await self._notify_subscription(sub, counts, now)

    async def _final_notify(self, sub: Subscription, now: datetime) -> None:
        """The subscription ends before its last NOTIFY goes: a request crossing it is 481."""
        counts = await self._store.counts(sub.account_id, sub.mailbox_id)
        seq = await self._store.next_seq(sub.id)
        await self._store.remove(sub.id)
        self._last.pop(("sub", sub.id), None)
        log.info("message waiting: unsubscribed", extra={"device_id": sub.device_id})
        if seq is not None:
            self.sent += 1
            body = summary_body(counts, sub.message_account)
            await self._sender.to_subscription(sub, seq, "terminated;reason=timeout", body)


class MwiRelay:
    """The `MessageWaiting` the services are built with before the SIP side exists: it passes
    each change to `target` once set (none is lost: changes before that are replayed by the
    notifier's start, which NOTIFYs every registered device)."""

    def __init__(self) -> None:
        self.target: Callable[[str, str], None] | None = None
        self.extra: list[Callable[[str, str], None]] = []

    def mailbox_changed(self, account_id: str, mailbox_id: str) -> None:
        for tell in [*([self.target] if self.target else []), *self.extra]:
            with contextlib.suppress(Exception):
                tell(account_id, mailbox_id)
