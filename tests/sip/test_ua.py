"""Our UAC against our UAS (and a raw peer) on 127.0.0.1: the API the call layer uses."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
import uvloop

from afterbeep.telephony.sip.ua import (
    Answered,
    Cancelled,
    Dialog,
    DialogAck,
    DtmfReceived,
    Failed,
    HangUp,
    IncomingInvite,
    OutgoingInvite,
    Provisional,
    UAConfig,
    UserAgent,
)

from .conftest import CANNED_SDP, free_udp_port, make_config
from .peer import RawPeer, header, status_of

HOLD_SDP = CANNED_SDP.replace(b"a=ptime:20", b"a=sendonly")


class Callee:
    """A UAS that hands each IncomingInvite to the test."""

    def __init__(self, config: UAConfig) -> None:
        self.ua = UserAgent(config, self.on_invite)
        self.invites: asyncio.Queue[IncomingInvite] = asyncio.Queue()

    def on_invite(self, invite: IncomingInvite) -> None:
        self.invites.put_nowait(invite)

    async def next_invite(self) -> IncomingInvite:
        async with asyncio.timeout(5):
            return await self.invites.get()


@pytest.fixture
async def pair() -> AsyncIterator[tuple[UserAgent, Callee]]:
    callee = Callee(make_config(t1=0.02))
    caller = UserAgent(make_config(t1=0.02))
    await callee.ua.start()
    await caller.start()
    try:
        yield caller, callee
    finally:
        await caller.close()
        await callee.ua.close()


async def _dial(caller: UserAgent, callee: Callee, answer_timeout: float = 60.0) -> OutgoingInvite:
    uri = f"sip:5551234@127.0.0.1:{callee.ua.udp_port}"
    return await caller.invite(
        uri,
        '"Afterbeep" <sip:afterbeep@127.0.0.1>',
        uri,
        CANNED_SDP,
        headers=(("P-Asserted-Identity", "<sip:+15550001@127.0.0.1>"),),
        answer_timeout=answer_timeout,
    )


async def _event(source: OutgoingInvite | Dialog | IncomingInvite) -> object:
    async with asyncio.timeout(5):
        return await source.next_event()


async def test_call_ring_answer_dtmf_info_hold_and_remote_hangup(
    pair: tuple[UserAgent, Callee],
) -> None:
    caller, callee = pair
    call = await _dial(caller, callee)
    incoming = await callee.next_invite()
    assert incoming.request_user == "5551234"
    assert incoming.p_asserted_identity == "sip:+15550001@127.0.0.1"
    assert incoming.sdp == CANNED_SDP
    assert incoming.from_uri == "sip:afterbeep@127.0.0.1"

    incoming.ringing()
    ringing = await _event(call)
    assert isinstance(ringing, Provisional) and ringing.code == 180
    incoming.progress(CANNED_SDP)
    early = await _event(call)
    assert isinstance(early, Provisional) and early.code == 183 and early.sdp == CANNED_SDP

    uas_dialog = incoming.accept(CANNED_SDP)
    assert uas_dialog is not None
    answered = await _event(call)
    assert isinstance(answered, Answered) and answered.sdp == CANNED_SDP
    assert isinstance(await _event(uas_dialog), DialogAck)
    uac_dialog = answered.dialog
    assert uac_dialog.id == (uas_dialog.call_id, uas_dialog.state.remote_tag, uas_dialog.id[1])

    assert await uac_dialog.info(b"Signal=5\r\nDuration=160\r\n", "application/dtmf-relay") == 200
    assert await _event(uas_dialog) == DtmfReceived("5", 160)
    assert await uac_dialog.info(b"#", "application/dtmf") == 200
    assert await _event(uas_dialog) == DtmfReceived("#", None)
    assert await uac_dialog.info(b"hello", "text/plain") == 415

    offers: list[bytes] = []

    def on_reinvite(offer: bytes) -> bytes:
        offers.append(offer)
        return HOLD_SDP

    uas_dialog.on_reinvite = on_reinvite
    assert await uac_dialog.reinvite(HOLD_SDP) == HOLD_SDP
    assert offers == [HOLD_SDP]
    assert isinstance(await _event(uas_dialog), DialogAck)

    await uas_dialog.bye()
    assert await _event(uac_dialog) == HangUp("remote")
    assert caller.dialog_count == 0 and callee.ua.dialog_count == 0


async def test_reinvite_without_handler_is_refused_488(pair: tuple[UserAgent, Callee]) -> None:
    caller, callee = pair
    call = await _dial(caller, callee)
    incoming = await callee.next_invite()
    assert incoming.accept(CANNED_SDP) is not None
    dialog = await call.wait_answered()
    with pytest.raises(Exception, match="488"):
        await dialog.reinvite(HOLD_SDP)
    await dialog.bye()


async def test_cancel_reaches_the_callee_and_late_accept_is_a_no_op(
    pair: tuple[UserAgent, Callee],
) -> None:
    caller, callee = pair
    call = await _dial(caller, callee)
    incoming = await callee.next_invite()
    incoming.ringing()
    assert isinstance(await _event(call), Provisional)
    call.cancel()
    assert await _event(call) == Failed(487, "Request Terminated")
    assert await _event(incoming) == Cancelled("CANCEL")
    assert incoming.accept(CANNED_SDP) is None
    assert callee.ua.dialog_count == 0


async def test_no_answer_timeout_cancels_with_408(pair: tuple[UserAgent, Callee]) -> None:
    caller, callee = pair
    call = await _dial(caller, callee, answer_timeout=0.3)
    incoming = await callee.next_invite()
    incoming.ringing()
    assert isinstance(await _event(call), Provisional)
    assert await _event(call) == Failed(408, "Request Timeout")
    assert await _event(incoming) == Cancelled("CANCEL")


async def test_reject_reports_the_code_and_transactions_drain(
    pair: tuple[UserAgent, Callee],
) -> None:
    caller, callee = pair
    call = await _dial(caller, callee)
    incoming = await callee.next_invite()
    incoming.reject(486, headers=(("Retry-After", "60"),))
    assert await _event(call) == Failed(486, "Busy Here")
    with pytest.raises(Exception, match="486"):
        await call.wait_answered()
    async with asyncio.timeout(5):
        while caller.transaction_count or callee.ua.transaction_count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_rport_and_received_answer_goes_to_the_source() -> None:
    async with UserAgent(make_config()) as ua:
        peer = await RawPeer.open()
        try:
            port = ua.udp_port
            assert port is not None
            peer.send(
                b"OPTIONS sip:vm@127.0.0.1 SIP/2.0\r\n"
                b"Via: SIP/2.0/UDP 192.0.2.77:5099;branch=z9hG4bK-rport;rport\r\n"
                b"Max-Forwards: 70\r\nFrom: <sip:a@192.0.2.77>;tag=1\r\nTo: <sip:vm@127.0.0.1>\r\n"
                b"Call-ID: rport@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                port,
            )
            answer = await peer.response("z9hG4bK-rport")
            assert status_of(answer) == 200
            assert answer is not None
            via = header(answer, "Via") or ""
            assert f"rport={peer.port}" in via and "received=127.0.0.1" in via
            assert "INVITE" in (header(answer, "Allow") or "")
            assert header(answer, "Accept") == "application/sdp"
        finally:
            peer.close()


async def test_unacknowledged_200_hangs_up_with_bye() -> None:
    async with UserAgent(make_config(t1=0.01)) as ua:
        dialogs: list[Dialog] = []

        def on_invite(invite: IncomingInvite) -> None:
            dialog = invite.accept(CANNED_SDP)
            assert dialog is not None
            dialogs.append(dialog)

        ua.on_invite = on_invite
        peer = await RawPeer.open()
        try:
            port = ua.udp_port
            assert port is not None
            peer.send(
                b"INVITE sip:vm@127.0.0.1 SIP/2.0\r\n"
                b"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-noack\r\n"
                b"Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:vm@127.0.0.1>\r\n"
                b"Call-ID: noack@test\r\nCSeq: 1 INVITE\r\n"
                b"Contact: <sip:a@127.0.0.1:%d>\r\nContent-Length: 0\r\n\r\n"
                % (peer.port, peer.port),
                port,
            )
            assert status_of(await peer.response("z9hG4bK-noack")) == 200
            assert await _event(dialogs[0]) == HangUp("no-ack")
            assert dialogs[0].terminated
            bye = await peer.wait_for(lambda d: d.startswith(b"BYE "), timeout=2)
            assert bye is not None
            retransmitted_200s = [d for d in peer.received if d.startswith(b"SIP/2.0 200")]
            assert len(retransmitted_200s) > 3  # timer G kept re-sending until timer H
        finally:
            peer.close()


def _raw_invite(peer: RawPeer, branch: str) -> bytes:
    return (
        b"INVITE sip:vm@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:vm@127.0.0.1>\r\n"
        b"Call-ID: %s@test\r\nCSeq: 1 INVITE\r\n"
        b"Contact: <sip:a@127.0.0.1:%d>\r\nContent-Length: 0\r\n\r\n"
        % (peer.port, branch.encode(), branch.encode(), peer.port)
    )


async def test_100_trying_only_for_an_invite_not_answered_at_once() -> None:
    # §17.2.1: the 100 is for an INVITE the TU does not answer within 200 ms. One answered at
    # once gets none, so that behind a proxy a node dying before its answer has said nothing
    # and the proxy fails the call over.
    async with UserAgent(make_config(t1=0.5)) as ua:
        held: list[IncomingInvite] = []

        def on_invite(invite: IncomingInvite) -> None:
            if b"at-once" in invite.request.headers.get_first("call-id").encode():
                invite.reject(486, "Busy Here")
            else:
                held.append(invite)

        ua.on_invite = on_invite
        peer = await RawPeer.open()
        try:
            port = ua.udp_port
            assert port is not None
            peer.send(_raw_invite(peer, "z9hG4bK-at-once"), port)
            assert status_of(await peer.response("z9hG4bK-at-once")) == 486
            peer.send(_raw_invite(peer, "z9hG4bK-held"), port)
            trying = await peer.response("z9hG4bK-held", timeout=5, final=False)
            assert status_of(trying) == 100
            assert held
            held[0].reject(486, "Busy Here")
            assert status_of(await peer.response("z9hG4bK-held")) == 486
            at_once = [d for d in peer.received if b"z9hG4bK-at-once" in d]
            assert [status_of(d) for d in at_once] == [486]  # no 100 before it
        finally:
            peer.close()


async def test_draining_rejects_new_invites_with_503_and_waits_for_calls() -> None:
    callee = Callee(dataclasses.replace(make_config(t1=0.02), retry_after=7))
    async with UserAgent(make_config(t1=0.02)) as caller:
        await callee.ua.start()
        call = await _dial(caller, callee)
        incoming = await callee.next_invite()
        assert incoming.accept(CANNED_SDP) is not None
        dialog = await call.wait_answered()

        closing = asyncio.ensure_future(callee.ua.close(drain_timeout=30))
        await asyncio.sleep(0.05)
        assert not closing.done()
        refused = await _dial(caller, callee)
        assert await _event(refused) == Failed(503, "Service Unavailable")

        await dialog.bye()  # the last call ends: close() finishes long before the deadline
        async with asyncio.timeout(5):
            await closing
        assert callee.ua.dialog_count == 0 and callee.ua.transaction_count == 0


async def test_unreachable_tcp_next_hop_fails_503() -> None:
    port = free_udp_port()  # nothing listens on this TCP port either
    async with UserAgent(make_config()) as ua:
        uri = f"sip:nobody@127.0.0.1:{port};transport=tcp"
        call = await ua.invite(uri, "sip:afterbeep@127.0.0.1", uri, CANNED_SDP)
        failed = await _event(call)
        assert isinstance(failed, Failed) and failed.code == 503
        assert ua.transaction_count == 0


def test_works_under_uvloop() -> None:
    async def scenario() -> None:
        callee = Callee(make_config(t1=0.02, tcp=True))
        async with UserAgent(make_config(t1=0.02)) as caller:
            await callee.ua.start()
            try:
                call = await _dial(caller, callee)
                incoming = await callee.next_invite()
                assert incoming.accept(CANNED_SDP) is not None
                dialog = await call.wait_answered()
                await dialog.bye()
            finally:
                await callee.ua.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(scenario(), 10))


def test_advertise_must_not_be_a_wildcard() -> None:
    with pytest.raises(ValueError, match="wildcard"):
        UAConfig(advertise="0.0.0.0")
    with pytest.raises(ValueError, match="wildcard"):
        UAConfig(advertise="[::]:5060")
