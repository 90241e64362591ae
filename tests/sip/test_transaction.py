"""RFC 3261 §17 transaction machines driven by a fake clock (no event loop, no sockets)."""

from __future__ import annotations

import pytest
from aiosipua.message import SipRequest, SipResponse

from afterbeep.telephony.sip.message import parse_message
from afterbeep.telephony.sip.transaction import (
    AckReceived,
    Action,
    InviteClientTransaction,
    InviteServerTransaction,
    NoAck,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    ResponseReceived,
    Send,
    StartTimer,
    State,
    StopTimer,
    Terminate,
    TimedOut,
    Timer,
    TimerConfig,
    ToTU,
    Transaction,
    TUEvent,
    client_key,
    response_key,
    server_key,
)

TIMERS = TimerConfig()


class FakeClock:
    """Runs one machine: records sends with their time, fires timers in time order."""

    def __init__(self, machine: Transaction) -> None:
        self.machine = machine
        self.now = 0.0
        self.timers: dict[Timer, float] = {}
        self.sent: list[tuple[float, bytes]] = []
        self.tu: list[TUEvent] = []
        self.terminated_at: float | None = None

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.sent.append((self.now, action.data))
            elif isinstance(action, StartTimer):
                self.timers[action.timer] = self.now + action.delay
            elif isinstance(action, StopTimer):
                self.timers.pop(action.timer, None)
            elif isinstance(action, ToTU):
                self.tu.append(action.event)
            elif isinstance(action, Terminate):
                self.terminated_at = self.now
                self.timers.clear()

    def advance(self, until: float) -> None:
        while self.timers:
            timer, due = min(self.timers.items(), key=lambda item: item[1])
            if due > until + 1e-9:
                break
            del self.timers[timer]
            self.now = due
            self.apply(self.machine.on_timer(timer))
        self.now = until

    def send_times(self) -> list[float]:
        return [round(t, 3) for t, _ in self.sent]


INVITE = (
    b"INVITE sip:bob@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-abc;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:alice@127.0.0.1>;tag=a1\r\n"
    b"To: <sip:bob@127.0.0.1>\r\n"
    b"Call-ID: call-1@127.0.0.1\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"Route: <sip:proxy.example;lr>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def invite() -> SipRequest:
    msg = parse_message(INVITE)
    assert isinstance(msg, SipRequest)
    return msg


def response(code: int, method: str = "INVITE", to_tag: str | None = "b2") -> SipResponse:
    to = "<sip:bob@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    raw = (
        f"SIP/2.0 {code} Whatever\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-abc;rport=5070\r\n"
        "From: <sip:alice@127.0.0.1>;tag=a1\r\n"
        f"To: {to}\r\n"
        "Call-ID: call-1@127.0.0.1\r\n"
        f"CSeq: 7 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    msg = parse_message(raw)
    assert isinstance(msg, SipResponse)
    return msg


def ict(*, reliable: bool = False, timers: TimerConfig = TIMERS) -> FakeClock:
    machine = InviteClientTransaction(
        client_key("z9hG4bK-abc", "INVITE"), invite(), INVITE, reliable=reliable, timers=timers
    )
    clock = FakeClock(machine)
    clock.apply(machine.start())
    return clock


def nict(*, reliable: bool = False) -> FakeClock:
    machine = NonInviteClientTransaction(
        client_key("z9hG4bK-abc", "BYE"), invite(), b"BYE", reliable=reliable, timers=TIMERS
    )
    clock = FakeClock(machine)
    clock.apply(machine.start())
    return clock


# --- INVITE client -----------------------------------------------------------------------


def test_timer_a_doubles_until_timer_b_times_out() -> None:
    clock = ict()
    clock.advance(100)
    assert clock.send_times() == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert clock.tu == [TimedOut(Timer.B)]
    assert clock.terminated_at == 32.0  # 64*T1
    assert clock.machine.state is State.TERMINATED


def test_shortened_t1_scales_a_and_b() -> None:
    clock = ict(timers=TimerConfig(t1=0.01))
    clock.advance(10)
    assert clock.send_times() == [0, 0.01, 0.03, 0.07, 0.15, 0.31, 0.63]
    assert clock.terminated_at == pytest.approx(0.64)


def test_reliable_invite_client_never_retransmits() -> None:
    clock = ict(reliable=True)
    clock.advance(100)
    assert clock.send_times() == [0]
    assert clock.tu == [TimedOut(Timer.B)]


def test_provisional_stops_retransmission_and_timer_b() -> None:
    clock = ict()
    clock.advance(0.7)
    machine = clock.machine
    assert isinstance(machine, InviteClientTransaction)
    clock.apply(machine.on_response(response(180)))
    clock.advance(200)
    assert clock.send_times() == [0, 0.5]
    assert clock.terminated_at is None
    assert machine.state is State.PROCEEDING
    assert [type(e) for e in clock.tu] == [ResponseReceived]


def test_non2xx_final_is_acked_by_the_transaction_and_retransmissions_reacked() -> None:
    clock = ict()
    machine = clock.machine
    assert isinstance(machine, InviteClientTransaction)
    clock.apply(machine.on_response(response(486)))
    ack = parse_message(clock.sent[-1][1])
    assert isinstance(ack, SipRequest)
    assert ack.method == "ACK"
    assert ack.uri == "sip:bob@127.0.0.1:5060"
    assert ack.headers.get_first("cseq") == "7 ACK"
    assert "branch=z9hG4bK-abc" in (ack.headers.get_first("via") or "")
    assert ack.headers.get_first("to") == "<sip:bob@127.0.0.1>;tag=b2"
    assert ack.headers.get("route") == ["<sip:proxy.example;lr>"]
    assert len(clock.tu) == 1
    clock.now = 2.0
    clock.apply(machine.on_response(response(486)))  # the 486 retransmitted
    assert len(clock.sent) == 3 and clock.sent[-1][1] == clock.sent[-2][1]
    assert len(clock.tu) == 1  # not delivered twice
    clock.advance(100)
    assert clock.terminated_at == pytest.approx(32.0)  # timer D


def test_2xx_is_delivered_including_retransmissions_until_timer_m() -> None:
    clock = ict()
    machine = clock.machine
    assert isinstance(machine, InviteClientTransaction)
    clock.apply(machine.on_response(response(200)))
    clock.apply(machine.on_response(response(200)))
    clock.apply(machine.on_response(response(486)))  # stray non-2xx after 2xx: ignored
    assert [type(e) for e in clock.tu] == [ResponseReceived, ResponseReceived]
    assert len(clock.sent) == 1  # the TU, not the transaction, ACKs a 2xx
    clock.advance(100)
    assert clock.terminated_at == pytest.approx(32.0)


# --- non-INVITE client -------------------------------------------------------------------


def test_timer_e_doubles_to_t2_and_timer_f_times_out() -> None:
    clock = nict()
    clock.advance(100)
    assert clock.send_times() == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert clock.tu == [TimedOut(Timer.F)]
    assert clock.terminated_at == 32.0


def test_timer_e_uses_t2_in_proceeding_and_k_after_final() -> None:
    clock = nict()
    machine = clock.machine
    assert isinstance(machine, NonInviteClientTransaction)
    clock.advance(0.6)
    clock.apply(machine.on_response(response(100, "BYE")))
    clock.advance(10)
    assert clock.send_times() == [0, 0.5, 1.5, 5.5, 9.5]
    clock.apply(machine.on_response(response(200, "BYE")))
    clock.apply(machine.on_response(response(200, "BYE")))  # retransmission absorbed
    assert [type(e) for e in clock.tu] == [ResponseReceived, ResponseReceived]
    clock.advance(100)
    assert clock.send_times() == [0, 0.5, 1.5, 5.5, 9.5]
    assert clock.terminated_at == pytest.approx(15.0)  # K = T4 after the final at t=10


def test_reliable_non_invite_client_terminates_on_final() -> None:
    clock = nict(reliable=True)
    machine = clock.machine
    assert isinstance(machine, NonInviteClientTransaction)
    clock.advance(5)
    assert clock.send_times() == [0]
    clock.apply(machine.on_response(response(200, "BYE")))
    assert clock.terminated_at == 5


# --- INVITE server -----------------------------------------------------------------------


def ist(*, reliable: bool = False) -> tuple[FakeClock, InviteServerTransaction]:
    machine = InviteServerTransaction(("b", "h:1", "INVITE"), reliable=reliable, timers=TIMERS)
    return FakeClock(machine), machine


def test_invite_retransmission_gets_the_last_provisional() -> None:
    clock, machine = ist()
    clock.apply(machine.respond(b"100", 100))
    clock.apply(machine.on_retransmission())
    clock.apply(machine.respond(b"180", 180))
    clock.apply(machine.on_retransmission())
    assert [d for _, d in clock.sent] == [b"100", b"100", b"180", b"180"]


def test_non2xx_final_retransmitted_on_g_until_ack_then_absorbed_and_timer_i() -> None:
    clock, machine = ist()
    clock.apply(machine.respond(b"486", 486))
    clock.advance(8)
    assert clock.send_times() == [0, 0.5, 1.5, 3.5, 7.5]
    clock.apply(machine.on_retransmission())
    assert clock.sent[-1] == (8, b"486")
    clock.apply(machine.on_ack(invite()))
    assert machine.state is State.CONFIRMED
    clock.apply(machine.on_ack(invite()))  # retransmitted ACK absorbed
    clock.apply(machine.on_retransmission())  # and so is a late INVITE
    assert clock.tu == []
    clock.advance(100)
    assert len(clock.sent) == 6
    assert clock.terminated_at == pytest.approx(13.0)  # timer I = T4


def test_non2xx_without_ack_ends_on_timer_h() -> None:
    clock, machine = ist()
    clock.apply(machine.respond(b"487", 487))
    clock.advance(100)
    assert clock.send_times() == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert clock.tu == [NoAck(487)]
    assert clock.terminated_at == 32.0


def test_2xx_retransmitted_on_g_until_ack_delivered_once() -> None:
    clock, machine = ist()
    clock.apply(machine.respond(b"200", 200))
    clock.advance(2)
    clock.apply(machine.on_retransmission())  # INVITE again before the ACK: 200 again
    ack = invite()
    clock.apply(machine.on_ack(ack))
    clock.apply(machine.on_ack(ack))
    clock.apply(machine.on_retransmission())  # after the ACK: absorbed
    clock.advance(100)
    assert clock.send_times() == [0, 0.5, 1.5, 2]
    assert clock.tu == [AckReceived(ack)]
    assert clock.terminated_at == 32.0


def test_2xx_never_acked_reports_no_ack() -> None:
    clock, machine = ist()
    clock.apply(machine.respond(b"200", 200))
    clock.advance(100)
    assert clock.tu == [NoAck(200)]
    assert len(clock.sent) == 11


def test_reliable_invite_server_sends_once_and_ends_on_ack() -> None:
    clock, machine = ist(reliable=True)
    clock.apply(machine.respond(b"486", 486))
    clock.advance(10)
    assert clock.send_times() == [0]
    clock.apply(machine.on_ack(invite()))
    assert clock.terminated_at == 10


def test_response_after_final_is_refused() -> None:
    clock, machine = ist()
    clock.apply(machine.respond(b"487", 487))
    assert machine.respond(b"200", 200) == []


# --- non-INVITE server -------------------------------------------------------------------


def test_non_invite_server_repeats_final_until_timer_j() -> None:
    machine = NonInviteServerTransaction(("b", "h:1", "BYE"), reliable=False, timers=TIMERS)
    clock = FakeClock(machine)
    clock.apply(machine.on_retransmission())  # Trying, nothing to repeat yet
    assert clock.sent == []
    clock.apply(machine.respond(b"200", 200))
    clock.now = 5
    clock.apply(machine.on_retransmission())
    assert clock.sent == [(0, b"200"), (5, b"200")]
    clock.advance(100)
    assert clock.terminated_at == 32.0


def test_reliable_non_invite_server_ends_with_final() -> None:
    machine = NonInviteServerTransaction(("b", "h:1", "BYE"), reliable=True, timers=TIMERS)
    clock = FakeClock(machine)
    clock.apply(machine.respond(b"200", 200))
    assert clock.terminated_at == 0


# --- matching ----------------------------------------------------------------------------


def _req(method: str, branch: str = "z9hG4bK-abc", sent_by: str = "127.0.0.1:5070") -> SipRequest:
    raw = (
        f"{method} sip:bob@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sent_by};branch={branch}\r\n"
        "From: <sip:alice@127.0.0.1>;tag=a1\r\n"
        "To: <sip:bob@127.0.0.1>\r\n"
        "Call-ID: c@h\r\n"
        f"CSeq: 7 {method}\r\n\r\n"
    ).encode()
    msg = parse_message(raw)
    assert isinstance(msg, SipRequest)
    return msg


def test_server_keys_match_ack_to_invite_and_keep_cancel_apart() -> None:
    key = server_key(_req("INVITE"))
    assert server_key(_req("ACK")) == key
    assert server_key(_req("CANCEL")) == (key[0], key[1], "CANCEL")
    assert server_key(_req("INVITE", sent_by="127.0.0.2:5070")) != key
    assert server_key(_req("INVITE", branch="z9hG4bK-other")) != key
    assert server_key(_req("INVITE", sent_by="127.0.0.1")) == server_key(
        _req("INVITE", sent_by="127.0.0.1:5060")
    )


def test_rfc2543_requests_without_cookie_still_match() -> None:
    key = server_key(_req("INVITE", branch="old"))
    assert key[0].startswith("2543|")
    assert server_key(_req("ACK", branch="old")) == key


def test_response_key_uses_branch_and_cseq_method() -> None:
    assert response_key(response(200)) == client_key("z9hG4bK-abc", "INVITE")
    assert response_key(response(200, "CANCEL")) == client_key("z9hG4bK-abc", "CANCEL")
