"""Message-waiting units: the `message-summary` body, and `MwiNotifier`'s coalescing, no-repeat,
forcing and SUBSCRIBE handling over an in-memory store and a recording sender (the SIP-level
behaviour is in tests/e2e/test_message_waiting.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from afterbeep.domain.mwi import (
    DeviceContact,
    Subscription,
    WaitingCounts,
    parse_summary,
    summary_body,
)
from afterbeep.telephony.mwi import MwiNotifier, MwiRelay, contact_hop, subscription_dialog
from afterbeep.telephony.sip.dialog import Hop
from afterbeep.telephony.sip.registrar import Answer, DeviceSecret

ACC, VM, OTHER_VM = "acc_1", "vm_1", "vm_2"
NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


class Clock:
    def now(self) -> datetime:
        return NOW


def device(device_id: str = "dev_1") -> DeviceSecret:
    return DeviceSecret(device_id, ACC, "usr_1", "desk", "x", "y")


def contact(
    device_id: str = "dev_1", port: int = 5070, path: tuple[str, ...] = ()
) -> DeviceContact:
    return DeviceContact(
        ACC, device_id, VM, "201", f"sip:desk@10.0.0.9:{port}", path, "127.0.0.1", port, "udp"
    )


@dataclass
class Store:
    counts_of: dict[tuple[str, str], WaitingCounts] = field(default_factory=dict)
    contacts: list[DeviceContact] = field(default_factory=list)
    subs: dict[str, Subscription] = field(default_factory=dict)
    device_mailboxes: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    recounts: int = 0
    target_reads: int = 0

    async def counts(self, account_id: str, mailbox_id: str) -> WaitingCounts:
        self.recounts += 1
        return self.counts_of.get((account_id, mailbox_id), WaitingCounts())

    async def contacts_of_mailbox(
        self, account_id: str, mailbox_id: str, now: datetime
    ) -> list[DeviceContact]:
        return [
            c for c in self.contacts if (c.account_id, c.mailbox_id) == (account_id, mailbox_id)
        ]

    async def contacts_of_device(self, device_id: str, now: datetime) -> list[DeviceContact]:
        return [c for c in self.contacts if c.device_id == device_id]

    async def watched_mailboxes(self, now: datetime) -> set[tuple[str, str]]:
        found = {(c.account_id, c.mailbox_id) for c in self.contacts}
        return found | {(s.account_id, s.mailbox_id) for s in self.subs.values()}

    async def device_mailbox(self, device_id: str) -> tuple[str, str, str] | None:
        return self.device_mailboxes.get(device_id)

    async def subscriptions_of_mailbox(
        self, account_id: str, mailbox_id: str, now: datetime
    ) -> list[Subscription]:
        return [
            s
            for s in self.subs.values()
            if (s.account_id, s.mailbox_id) == (account_id, mailbox_id) and s.expires_at > now
        ]

    async def targets_of_mailbox(
        self, account_id: str, mailbox_id: str, now: datetime, *, contacts: bool = True
    ) -> tuple[list[Subscription], list[DeviceContact]]:
        self.target_reads += 1
        found = await self.contacts_of_mailbox(account_id, mailbox_id, now) if contacts else []
        return await self.subscriptions_of_mailbox(account_id, mailbox_id, now), found

    async def subscription(self, call_id: str, local_tag: str) -> Subscription | None:
        return next(
            (s for s in self.subs.values() if (s.call_id, s.local_tag) == (call_id, local_tag)),
            None,
        )

    async def add(self, sub: Subscription) -> None:
        self.subs[sub.id] = sub

    async def refresh(
        self,
        sub_id: str,
        *,
        expires_at: datetime,
        remote_seq: int,
        remote_target: str,
        source: tuple[str, int, str],
        now: datetime,
    ) -> None:
        self.subs[sub_id] = replace(
            self.subs[sub_id],
            expires_at=expires_at,
            remote_seq=remote_seq,
            remote_target=remote_target,
        )

    async def next_seq(self, sub_id: str) -> int | None:
        sub = self.subs.get(sub_id)
        if sub is None:
            return None
        self.subs[sub_id] = replace(sub, local_seq=sub.local_seq + 1)
        return sub.local_seq + 1

    async def remove(self, sub_id: str) -> None:
        self.subs.pop(sub_id, None)

    async def reap(self, now: datetime) -> int:
        return 0


@dataclass
class Sent:
    target: str  # "sub:<id>" or the contact URI
    body: bytes
    state: str
    seq: int = 0


@dataclass
class Sender:
    sent: list[Sent] = field(default_factory=list)
    status: int = 200
    gate: asyncio.Event | None = None  # when set, every NOTIFY waits for it

    async def _wait(self) -> None:
        if self.gate is not None:
            await self.gate.wait()

    async def to_subscription(self, sub: Subscription, seq: int, state: str, body: bytes) -> int:
        await self._wait()
        self.sent.append(Sent(f"sub:{sub.id}", body, state, seq))
        return self.status

    async def to_contact(self, contact: DeviceContact, account: str, body: bytes) -> int:
        await self._wait()
        self.sent.append(Sent(contact.contact, body, "terminated"))
        return self.status


@dataclass
class Auth:
    device: DeviceSecret | None = field(default_factory=device)

    async def authenticate(
        self,
        method: str,
        authorizations: Sequence[str],
        host: str,
        now: datetime,
        *,
        proxy: bool = False,
    ) -> DeviceSecret | Answer:
        if self.device is None or not authorizations:
            return 401, None, [("WWW-Authenticate", 'Digest realm="afterbeep"')]
        return self.device


@dataclass
class Request:
    headers_of: dict[str, list[str]]
    answered: list[tuple[int, str | None, list[tuple[str, str]], str | None]] = field(
        default_factory=list
    )
    uri: str = "sip:201@127.0.0.1"
    source: tuple[str, int] = ("127.0.0.1", 5070)
    transport: str = "UDP"
    contact: str = "<sip:afterbeep@127.0.0.1:5060>"

    def headers(self, name: str) -> list[str]:
        return self.headers_of.get(name.lower(), [])

    @property
    def client_host(self) -> str:
        return self.source[0]

    def respond(
        self,
        code: int,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        *,
        to_tag: str | None = None,
    ) -> None:
        self.answered.append((code, reason, list(headers), to_tag))


def subscribe(
    *, event: str = "message-summary", expires: str | None = "600", to_tag: str = "", cseq: int = 1
) -> Request:
    headers = {
        "event": [event],
        "call-id": ["sub-1@10.0.0.9"],
        "from": ["<sip:desk@127.0.0.1>;tag=phone"],
        "to": ["<sip:desk@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")],
        "contact": ["<sip:desk@10.0.0.9:5070>"],
        "cseq": [f"{cseq} SUBSCRIBE"],
        "authorization": ['Digest username="desk"'],
    }
    if expires is not None:
        headers["expires"] = [expires]
    return Request(headers)


def notifier(store: Store, sender: Sender, auth: Auth | None = None) -> MwiNotifier:
    return MwiNotifier(store, sender, Clock(), "pbx.example", authenticator=auth or Auth())


def counts_in(sent: Sent) -> WaitingCounts:
    parsed = parse_summary(sent.body.decode())
    assert parsed is not None
    return parsed[1]


# --- the body ------------------------------------------------------------------------------


def test_the_body_says_waiting_account_and_voice_counts() -> None:
    body = summary_body(WaitingCounts(2, 1, 1, 0), "sip:201@pbx.example")
    assert body == (
        b"Messages-Waiting: yes\r\n"
        b"Message-Account: sip:201@pbx.example\r\n"
        b"Voice-Message: 2/1 (1/0)\r\n"
    )
    assert summary_body(WaitingCounts(0, 3, 0, 1), "sip:vm@h").startswith(
        b"Messages-Waiting: no\r\n"
    )
    assert parse_summary(body.decode()) == (True, WaitingCounts(2, 1, 1, 0))
    # as phones (baresip) log it: LF only, no urgent part
    assert parse_summary("Messages-Waiting: no\nVoice-Message: 0/4\n") == (
        False,
        WaitingCounts(0, 4),
    )
    assert parse_summary("Messages-Waiting: yes\n") is None


def test_where_notifies_go() -> None:
    assert contact_hop(contact()) == Hop("127.0.0.1", 5070, "UDP")
    edge = replace(contact(path=("<sip:edge.example:5080;lr>",)), source_host="")
    assert contact_hop(edge) == Hop("edge.example", 5080, "UDP")
    sub = Subscription(
        "mwi_1", ACC, "dev_1", VM, "sip:201@h", "c1", "ours", "theirs", "<sip:201@h>",
        "<sip:desk@h>", "sip:desk@10.0.0.9:5070", ("<sip:p1;lr>",), 4, 1, "127.0.0.1", 5070,
        "udp", NOW, NOW, NOW,
    )  # fmt: skip
    request = subscription_dialog(sub, 5).create_request(
        "NOTIFY", via="SIP/2.0/UDP h;branch=z9hG4bKx"
    )
    assert request.headers.get_first("cseq") == "5 NOTIFY"
    assert request.headers.get_first("from") == "<sip:201@h>;tag=ours"
    assert request.headers.get_first("to") == "<sip:desk@h>;tag=theirs"
    assert request.headers.get("route") == ["<sip:p1;lr>"]


# --- coalescing and no repeat --------------------------------------------------------------


async def test_changes_coalesce_into_one_recount_and_notify_only_what_changed() -> None:
    store = Store(contacts=[contact()], counts_of={(ACC, VM): WaitingCounts(1, 0)})
    sender = Sender()
    mwi = notifier(store, sender)
    for _ in range(5):
        mwi.mailbox_changed(ACC, VM)
    await mwi.idle()
    assert mwi.rounds == 1 and store.recounts == 1
    assert [counts_in(s) for s in sender.sent] == [WaitingCounts(1, 0)]

    mwi.mailbox_changed(ACC, VM)  # nothing changed: recounted, not repeated
    await mwi.idle()
    assert mwi.rounds == 2 and len(sender.sent) == 1

    store.counts_of[(ACC, VM)] = WaitingCounts(0, 1)
    mwi.mailbox_changed(ACC, VM)
    mwi.mailbox_changed(ACC, OTHER_VM)  # a mailbox nobody shows: counted, nothing sent
    await mwi.idle()
    assert [counts_in(s) for s in sender.sent] == [WaitingCounts(1, 0), WaitingCounts(0, 1)]
    assert sender.sent[-1].target == "sip:desk@10.0.0.9:5070"


async def test_a_round_reads_its_targets_once_and_counts_only_a_watched_mailbox() -> None:
    store = Store(contacts=[contact()], counts_of={(ACC, VM): WaitingCounts(1, 0)})
    mwi = notifier(store, Sender())
    mwi.mailbox_changed(ACC, OTHER_VM)  # a deposit into a mailbox nobody shows
    await mwi.idle()
    assert (mwi.rounds, store.target_reads, store.recounts) == (1, 1, 0)
    mwi.mailbox_changed(ACC, VM)
    await mwi.idle()
    assert (mwi.rounds, store.target_reads, store.recounts) == (2, 2, 1)


async def test_subscriptions_only_leave_registered_contacts_untold() -> None:
    store = Store(contacts=[contact()], counts_of={(ACC, VM): WaitingCounts(1, 0)})
    sender = Sender()
    mwi = notifier(store, sender)
    mwi.unsolicited = False
    mwi.mailbox_changed(ACC, VM)
    await mwi.idle()
    assert (store.target_reads, store.recounts, sender.sent) == (1, 0, [])


async def test_changes_during_a_round_make_exactly_one_more() -> None:
    store = Store(contacts=[contact()], counts_of={(ACC, VM): WaitingCounts(1, 0)})
    sender = Sender(gate=asyncio.Event())
    mwi = notifier(store, sender)
    mwi.mailbox_changed(ACC, VM)
    async with asyncio.timeout(5):
        while store.recounts == 0:  # noqa: ASYNC110 (the round's first step)
            await asyncio.sleep(0)
    store.counts_of[(ACC, VM)] = WaitingCounts(3, 0)
    for _ in range(3):
        mwi.mailbox_changed(ACC, VM)
    assert sender.gate is not None
    sender.gate.set()
    await mwi.idle()
    assert mwi.rounds == 2
    assert [counts_in(s) for s in sender.sent] == [WaitingCounts(1, 0), WaitingCounts(3, 0)]


async def test_a_notify_not_answered_is_sent_again_at_the_next_change() -> None:
    store = Store(contacts=[contact()], counts_of={(ACC, VM): WaitingCounts(1, 0)})
    sender = Sender(status=408)
    mwi = notifier(store, sender)
    mwi.mailbox_changed(ACC, VM)
    await mwi.idle()
    sender.status = 200
    mwi.mailbox_changed(ACC, VM)
    await mwi.idle()
    mwi.mailbox_changed(ACC, VM)
    await mwi.idle()
    assert len(sender.sent) == 2  # the failed one, its repeat; then nothing new


async def test_register_and_start_notify_whatever_was_sent_before() -> None:
    store = Store(
        contacts=[contact("dev_1", 5070), contact("dev_2", 5072)],
        counts_of={(ACC, VM): WaitingCounts(1, 0)},
        device_mailboxes={"dev_1": (ACC, VM, "201")},
    )
    sender = Sender()
    mwi = notifier(store, sender)
    mwi.mailbox_changed(ACC, VM)
    await mwi.idle()
    assert len(sender.sent) == 2
    mwi.device_registered(device("dev_1"))  # a REGISTER refresh: that device only
    await mwi.idle()
    assert [s.target for s in sender.sent[2:]] == ["sip:desk@10.0.0.9:5070"]
    mwi.device_registered(device("dev_9"))  # a device without a mailbox: nothing
    await mwi.idle()
    assert len(sender.sent) == 3

    restarted = notifier(store, sender)  # a new process: every registered device told
    await restarted.start()
    await restarted.idle()
    await restarted.stop()
    assert sorted(s.target for s in sender.sent[3:]) == [
        "sip:desk@10.0.0.9:5070",
        "sip:desk@10.0.0.9:5072",
    ]


async def test_the_relay_passes_changes_on_once_it_has_a_target() -> None:
    relay = MwiRelay()
    relay.mailbox_changed(ACC, VM)  # no target yet: dropped (start() recounts everything)
    seen: list[tuple[str, str]] = []
    relay.target = lambda a, m: seen.append((a, m))
    relay.extra.append(lambda a, m: seen.append((m, a)))
    relay.mailbox_changed(ACC, VM)
    assert seen == [(ACC, VM), (VM, ACC)]


# --- SUBSCRIBE -----------------------------------------------------------------------------


async def test_subscribe_refresh_and_unsubscribe() -> None:
    store = Store(
        contacts=[contact("dev_1")],
        counts_of={(ACC, VM): WaitingCounts(2, 1)},
        device_mailboxes={"dev_1": (ACC, VM, "201")},
    )
    sender = Sender()
    mwi = notifier(store, sender)

    request = subscribe(expires="600")
    mwi.on_subscribe(request)
    await mwi.idle()
    [(code, _, headers, to_tag)] = request.answered
    assert code == 200 and to_tag
    assert ("Expires", "600") in headers and ("Contact", request.contact) in headers
    [sub] = store.subs.values()
    assert (sub.call_id, sub.local_tag, sub.remote_tag) == ("sub-1@10.0.0.9", to_tag, "phone")
    assert sub.message_account == "sip:201@pbx.example"
    [first] = sender.sent
    assert first.target == f"sub:{sub.id}" and first.state == "active;expires=600"
    assert first.seq == 1 and counts_in(first) == WaitingCounts(2, 1)
    assert b"Message-Account: sip:201@pbx.example" in first.body

    # subscribed: no unsolicited NOTIFY to that device; a change goes in the dialog
    store.counts_of[(ACC, VM)] = WaitingCounts(3, 1)
    mwi.mailbox_changed(ACC, VM)
    await mwi.idle()
    assert [(s.target, s.seq) for s in sender.sent[1:]] == [(f"sub:{sub.id}", 2)]

    refresh = subscribe(expires="7200", to_tag=to_tag, cseq=2)  # clamped to 3600
    mwi.on_subscribe(refresh)
    await mwi.idle()
    assert refresh.answered[0][0] == 200 and ("Expires", "3600") in refresh.answered[0][2]
    assert refresh.answered[0][3] == to_tag
    assert sender.sent[-1].state == "active;expires=3600" and sender.sent[-1].seq == 3
    assert store.subs[sub.id].expires_at == NOW + timedelta(seconds=3600)

    stale = subscribe(to_tag=to_tag, cseq=1)
    mwi.on_subscribe(stale)
    await mwi.idle()
    assert stale.answered[0][0] == 500

    bye = subscribe(expires="0", to_tag=to_tag, cseq=3)
    mwi.on_subscribe(bye)
    await mwi.idle()
    assert bye.answered[0][0] == 200 and ("Expires", "0") in bye.answered[0][2]
    assert sender.sent[-1].state == "terminated;reason=timeout" and sender.sent[-1].seq == 4
    assert store.subs == {}

    gone = subscribe(to_tag=to_tag, cseq=4)
    mwi.on_subscribe(gone)
    await mwi.idle()
    assert gone.answered[0][0] == 481


@pytest.mark.parametrize(
    ("request_kw", "auth", "code", "header"),
    [
        ({"event": "presence"}, Auth(), 489, ("Allow-Events", "message-summary")),
        ({"expires": "10"}, Auth(), 423, ("Min-Expires", "60")),
        ({"expires": "soon"}, Auth(), 400, None),
        ({}, Auth(device=None), 401, ("WWW-Authenticate", 'Digest realm="afterbeep"')),
    ],
)
async def test_subscribe_refusals(
    request_kw: dict[str, str], auth: Auth, code: int, header: tuple[str, str] | None
) -> None:
    store = Store(device_mailboxes={"dev_1": (ACC, VM, "201")})
    sender = Sender()
    mwi = notifier(store, sender, auth)
    request = subscribe(**request_kw)
    mwi.on_subscribe(request)
    await mwi.idle()
    [(answered, _, headers, _)] = request.answered
    assert answered == code
    if header is not None:
        assert header in headers
    assert store.subs == {} and sender.sent == []


async def test_a_device_without_a_mailbox_gets_404_and_a_481_notify_ends_the_subscription() -> None:
    store = Store(device_mailboxes={})
    sender = Sender()
    mwi = notifier(store, sender)
    request = subscribe()
    mwi.on_subscribe(request)
    await mwi.idle()
    assert request.answered[0][0] == 404

    store.device_mailboxes["dev_1"] = (ACC, VM, "201")
    sender.status = 481
    request = subscribe()
    mwi.on_subscribe(request)
    await mwi.idle()
    assert request.answered[0][0] == 200 and store.subs == {}


async def test_the_post_call_process_passes_its_mailbox_changes_to_the_parent() -> None:
    """The child (here a stand-in that reports two changes through `PipeMessageWaiting`, then
    waits for the end of its stdin) reaches the parent's callback over the pipe."""
    import sys

    from afterbeep.postcall import PostCallProcess

    child = (
        "import os, sys\n"
        "from afterbeep.postcall import MWI_FD_ENV, PipeMessageWaiting\n"
        "port = PipeMessageWaiting(int(os.environ[MWI_FD_ENV]))\n"
        "port.mailbox_changed('acc_1', 'vm_1')\n"
        "port.mailbox_changed('acc_2', 'vm_2')\n"
        "sys.stdin.read()\n"
    )
    seen: list[tuple[str, str]] = []
    got_both = asyncio.Event()

    def changed(account_id: str, mailbox_id: str) -> None:
        seen.append((account_id, mailbox_id))
        if len(seen) == 2:
            got_both.set()

    process = PostCallProcess([sys.executable, "-c", child], on_mailbox_changed=changed)
    await process.start()
    try:
        async with asyncio.timeout(30):
            await got_both.wait()
    finally:
        await process.stop()
    assert seen == [("acc_1", "vm_1"), ("acc_2", "vm_2")]
    assert process.returncode == 0


async def test_without_unsolicited_notifies_only_subscriptions_are_told() -> None:
    store = Store(contacts=[contact()], counts_of={(ACC, VM): WaitingCounts(1, 0)})
    sender = Sender()
    mwi = MwiNotifier(store, sender, Clock(), "pbx.example", unsolicited=False)
    mwi.mailbox_changed(ACC, VM)
    await mwi.idle()
    assert mwi.rounds == 1 and sender.sent == []


# --- NOTIFY over the transaction layer -----------------------------------------------------


async def test_a_notify_is_retransmitted_until_answered_and_times_out_unanswered() -> None:
    """A real user agent (T1 50 ms) NOTIFYs a raw UDP phone: the phone ignores the first copy
    and answers the retransmission (same branch): 200. A phone that never answers: 408 once
    timer F fires, after several copies."""
    from afterbeep.telephony.mwi import SipNotifySender
    from afterbeep.telephony.sip.ua import UserAgent
    from tests.sip.conftest import make_config
    from tests.sip.peer import RawPeer, header

    async with UserAgent(make_config(t1=0.05)) as ua:
        sender = SipNotifySender(ua)
        peer = await RawPeer.open()
        try:
            target = replace(contact(port=peer.port), contact=f"sip:desk@127.0.0.1:{peer.port}")
            sending = asyncio.create_task(
                sender.to_contact(
                    target, "sip:201@h", summary_body(WaitingCounts(1, 0), "sip:201@h")
                )
            )
            copies = await peer.wait_for(lambda _: len(peer.received) >= 2, timeout=5)
            assert copies is not None
            first, second = peer.received[:2]
            assert first == second and first.startswith(f"NOTIFY {target.contact} SIP/2.0".encode())
            assert header(first, "Event") == "message-summary"
            assert header(first, "Content-Type") == "application/simple-message-summary"
            assert header(first, "Subscription-State") == "terminated;reason=noresource"
            assert b"Voice-Message: 1/0 (0/0)" in first
            head = first.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
            keep = [
                h
                for h in head[1:]
                if h.split(":")[0].lower() in ("via", "from", "to", "call-id", "cseq")
            ]
            answer = "\r\n".join(["SIP/2.0 200 OK", *keep, "Content-Length: 0", "", ""])
            assert ua.udp_port is not None
            peer.send(answer.encode(), ua.udp_port)
            assert await asyncio.wait_for(sending, 5) == 200

            peer.received.clear()
            unanswered = await asyncio.wait_for(
                sender.to_contact(target, "sip:201@h", summary_body(WaitingCounts(), "sip:201@h")),
                10,
            )
            assert unanswered == 408 and len(peer.received) >= 5
        finally:
            peer.close()
