"""RFC 3261 §17 transactions as pure state machines (with the RFC 6026 "Accepted" states).

Written here rather than taken from aiosipua because its transaction handling does not
answer retransmissions, never retransmits over UDP and never ACKs non-2xx finals
(issue 3). The machines do no I/O and read no clock: the caller feeds them events
(a retransmitted request, a response, a fired timer) and executes the actions they return
(`Send`, `StartTimer`, `StopTimer`, `ToTU`, `Terminate`). Timers are named by their RFC
letter; over a reliable transport the retransmission timers are never started.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aiosipua.headers import Via
from aiosipua.message import SipRequest, SipResponse

from afterbeep.telephony.sip.message import BRANCH_COOKIE, build_non2xx_ack, top_via

T1 = 0.5
T2 = 4.0
T4 = 5.0


@dataclass(frozen=True, slots=True)
class TimerConfig:
    t1: float = T1
    t2: float = T2
    t4: float = T4

    @property
    def timeout(self) -> float:
        """64*T1: timers B, F, H, J, M, and D (32 s at the default T1)."""
        return 64 * self.t1


class Timer(enum.Enum):
    A = "A"
    B = "B"
    D = "D"
    E = "E"
    F = "F"
    G = "G"
    H = "H"
    I = "I"  # noqa: E741
    J = "J"
    K = "K"
    M = "M"


class State(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


# --- what the machines tell the TU -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    response: SipResponse


@dataclass(frozen=True, slots=True)
class TimedOut:
    timer: Timer


@dataclass(frozen=True, slots=True)
class TransportFailed:
    pass


@dataclass(frozen=True, slots=True)
class AckReceived:
    """The ACK for our 2xx (server INVITE transaction in Accepted)."""

    request: SipRequest


@dataclass(frozen=True, slots=True)
class NoAck:
    """Timer H fired: our final response to an INVITE was never acknowledged."""

    status: int


TUEvent = ResponseReceived | TimedOut | TransportFailed | AckReceived | NoAck


# --- actions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class StartTimer:
    timer: Timer
    delay: float


@dataclass(frozen=True, slots=True)
class StopTimer:
    timer: Timer


@dataclass(frozen=True, slots=True)
class ToTU:
    event: TUEvent


@dataclass(frozen=True, slots=True)
class Terminate:
    pass


Action = Send | StartTimer | StopTimer | ToTU | Terminate

# (branch or RFC 2543 identity, sent-by, method); ACK is keyed as INVITE (§17.2.3).
TxnKey = tuple[str, str, str]


def _sent_by(via: Via) -> str:
    default = 5061 if via.transport.upper() == "TLS" else 5060
    return f"{via.host.lower()}:{via.port or default}"


def server_key(request: SipRequest, via: Via | None = None) -> TxnKey:
    """Server transaction key of a request (RFC 3261 §17.2.3, RFC 2543 fallback)."""
    via = via if via is not None else top_via(request)
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    if branch.startswith(BRANCH_COOKIE):
        return (branch, _sent_by(via), method)
    frm = request.headers.get_first("from") or ""
    from_tag = frm.rpartition("tag=")[2] if "tag=" in frm else ""
    seq = (request.headers.get_first("cseq") or "").split(" ", 1)[0]
    identity = f"2543|{request.headers.get_first('call-id')}|{from_tag}|{seq}|{branch}"
    return (identity, _sent_by(via), method)


def client_key(branch: str, method: str) -> TxnKey:
    return (branch, "", "INVITE" if method == "ACK" else method)


def response_key(response: SipResponse) -> TxnKey | None:
    """Client transaction key of a response: top Via branch + CSeq method (§17.1.3)."""
    vias = response.headers.get("via")
    cseq = response.headers.get_first("cseq")
    if not vias or cseq is None:
        return None
    branch = _branch_of(vias[0])
    method = cseq.strip().rpartition(" ")[2]
    return client_key(branch, method)


def _branch_of(raw_via: str) -> str:
    for part in raw_via.split(";")[1:]:
        name, _, value = part.partition("=")
        if name.strip().lower() == "branch":
            return value.strip()
    return ""


# --- server transactions -------------------------------------------------------------------


class InviteServerTransaction:
    """§17.2.1 plus RFC 6026: Proceeding → Completed/Accepted → Confirmed/Terminated.

    2xx is retransmitted on timer G until the ACK (passed in by the TU via `on_ack`,
    since the ACK for a 2xx carries its own branch) or timer H.
    """

    def __init__(self, key: TxnKey, *, reliable: bool, timers: TimerConfig) -> None:
        self.key = key
        self.reliable = reliable
        self.timers = timers
        self.state = State.PROCEEDING
        self.last_response: bytes | None = None
        self.final_status: int | None = None
        self.acked = False
        self._g_interval = timers.t1

    def respond(self, data: bytes, status: int) -> list[Action]:
        if self.state is not State.PROCEEDING:
            return []
        self.last_response = data
        actions: list[Action] = [Send(data)]
        if status < 200:
            return actions
        self.final_status = status
        self.state = State.ACCEPTED if status < 300 else State.COMPLETED
        if not self.reliable:
            self._g_interval = self.timers.t1
            actions.append(StartTimer(Timer.G, self._g_interval))
        actions.append(StartTimer(Timer.H, self.timers.timeout))
        return actions

    def on_retransmission(self) -> list[Action]:
        """The same INVITE again: answer with the last response sent."""
        if self.last_response is None:
            return []
        if self.state in (State.PROCEEDING, State.COMPLETED) or (
            self.state is State.ACCEPTED and not self.acked
        ):
            return [Send(self.last_response)]
        return []

    def on_ack(self, ack: SipRequest) -> list[Action]:
        if self.state is State.COMPLETED:
            self.state = State.CONFIRMED
            actions: list[Action] = [StopTimer(Timer.G), StopTimer(Timer.H)]
            if self.reliable:
                self.state = State.TERMINATED
                return [*actions, Terminate()]
            return [*actions, StartTimer(Timer.I, self.timers.t4)]
        if self.state is State.ACCEPTED and not self.acked:
            self.acked = True
            return [StopTimer(Timer.G), ToTU(AckReceived(ack))]
        return []

    def stop_retransmitting(self) -> list[Action]:
        """The dialog ended before the ACK (BYE crossed it): stop re-sending the 2xx."""
        if self.state is State.ACCEPTED and not self.acked:
            self.acked = True
            return [StopTimer(Timer.G)]
        return []

    def on_timer(self, timer: Timer) -> list[Action]:
        if timer is Timer.G and self.last_response is not None:
            if self.state is State.COMPLETED or (self.state is State.ACCEPTED and not self.acked):
                self._g_interval = min(2 * self._g_interval, self.timers.t2)
                return [Send(self.last_response), StartTimer(Timer.G, self._g_interval)]
            return []
        if timer is Timer.H and self.state in (State.COMPLETED, State.ACCEPTED):
            unacked = self.state is State.COMPLETED or not self.acked
            self.state = State.TERMINATED
            actions: list[Action] = [StopTimer(Timer.G)]
            if unacked:
                actions.append(ToTU(NoAck(self.final_status or 0)))
            return [*actions, Terminate()]
        if timer is Timer.I and self.state is State.CONFIRMED:
            self.state = State.TERMINATED
            return [Terminate()]
        return []

    def on_transport_error(self) -> list[Action]:
        if self.state is State.TERMINATED:
            return []
        self.state = State.TERMINATED
        return [StopTimer(Timer.G), StopTimer(Timer.H), ToTU(TransportFailed()), Terminate()]


class NonInviteServerTransaction:
    """§17.2.2: Trying → Proceeding → Completed (timer J) → Terminated."""

    def __init__(self, key: TxnKey, *, reliable: bool, timers: TimerConfig) -> None:
        self.key = key
        self.reliable = reliable
        self.timers = timers
        self.state = State.TRYING
        self.last_response: bytes | None = None
        self.final_status: int | None = None

    def respond(self, data: bytes, status: int) -> list[Action]:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return []
        self.last_response = data
        if status < 200:
            self.state = State.PROCEEDING
            return [Send(data)]
        self.final_status = status
        if self.reliable:
            self.state = State.TERMINATED
            return [Send(data), Terminate()]
        self.state = State.COMPLETED
        return [Send(data), StartTimer(Timer.J, self.timers.timeout)]

    def on_retransmission(self) -> list[Action]:
        if self.state in (State.PROCEEDING, State.COMPLETED) and self.last_response is not None:
            return [Send(self.last_response)]
        return []

    def on_timer(self, timer: Timer) -> list[Action]:
        if timer is Timer.J and self.state is State.COMPLETED:
            self.state = State.TERMINATED
            return [Terminate()]
        return []

    def on_transport_error(self) -> list[Action]:
        if self.state is State.TERMINATED:
            return []
        self.state = State.TERMINATED
        return [StopTimer(Timer.J), ToTU(TransportFailed()), Terminate()]


# --- client transactions -------------------------------------------------------------------


class InviteClientTransaction:
    """§17.1.1 plus RFC 6026: Calling → Proceeding → Completed (ACK, timer D) / Accepted (M)."""

    def __init__(
        self, key: TxnKey, request: SipRequest, data: bytes, *, reliable: bool, timers: TimerConfig
    ) -> None:
        self.key = key
        self.request = request
        self.data = data
        self.reliable = reliable
        self.timers = timers
        self.state = State.CALLING
        self.ack: bytes | None = None
        self._a_interval = timers.t1

    def start(self) -> list[Action]:
        actions: list[Action] = [Send(self.data)]
        if not self.reliable:
            actions.append(StartTimer(Timer.A, self._a_interval))
        actions.append(StartTimer(Timer.B, self.timers.timeout))
        return actions

    def on_response(self, response: SipResponse) -> list[Action]:
        code = response.status_code
        if self.state in (State.CALLING, State.PROCEEDING):
            stop: list[Action] = []
            if self.state is State.CALLING:
                stop = [StopTimer(Timer.A), StopTimer(Timer.B)]
            if code < 200:
                self.state = State.PROCEEDING
                return [*stop, ToTU(ResponseReceived(response))]
            if code < 300:
                self.state = State.ACCEPTED
                return [
                    *stop,
                    ToTU(ResponseReceived(response)),
                    StartTimer(Timer.M, self.timers.timeout),
                ]
            self.ack = bytes(build_non2xx_ack(self.request, response))
            actions: list[Action] = [*stop, Send(self.ack), ToTU(ResponseReceived(response))]
            if self.reliable:
                self.state = State.TERMINATED
                return [*actions, Terminate()]
            self.state = State.COMPLETED
            return [*actions, StartTimer(Timer.D, self.timers.timeout)]
        if self.state is State.COMPLETED and code >= 300 and self.ack is not None:
            return [Send(self.ack)]
        if self.state is State.ACCEPTED and 200 <= code < 300:
            return [ToTU(ResponseReceived(response))]
        return []

    def on_timer(self, timer: Timer) -> list[Action]:
        if timer is Timer.A and self.state is State.CALLING:
            self._a_interval *= 2
            return [Send(self.data), StartTimer(Timer.A, self._a_interval)]
        if timer is Timer.B and self.state is State.CALLING:
            self.state = State.TERMINATED
            return [StopTimer(Timer.A), ToTU(TimedOut(Timer.B)), Terminate()]
        if (timer is Timer.D and self.state is State.COMPLETED) or (
            timer is Timer.M and self.state is State.ACCEPTED
        ):
            self.state = State.TERMINATED
            return [Terminate()]
        return []

    def on_transport_error(self) -> list[Action]:
        if self.state is State.TERMINATED:
            return []
        notify = self.state in (State.CALLING, State.PROCEEDING)
        self.state = State.TERMINATED
        actions: list[Action] = [StopTimer(Timer.A), StopTimer(Timer.B)]
        if notify:
            actions.append(ToTU(TransportFailed()))
        return [*actions, Terminate()]


class NonInviteClientTransaction:
    """§17.1.2: Trying → Proceeding → Completed (timer K) → Terminated."""

    def __init__(
        self, key: TxnKey, request: SipRequest, data: bytes, *, reliable: bool, timers: TimerConfig
    ) -> None:
        self.key = key
        self.request = request
        self.data = data
        self.reliable = reliable
        self.timers = timers
        self.state = State.TRYING
        self._e_interval = timers.t1

    def start(self) -> list[Action]:
        actions: list[Action] = [Send(self.data)]
        if not self.reliable:
            actions.append(StartTimer(Timer.E, self._e_interval))
        actions.append(StartTimer(Timer.F, self.timers.timeout))
        return actions

    def on_response(self, response: SipResponse) -> list[Action]:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return []
        if response.status_code < 200:
            self.state = State.PROCEEDING
            return [ToTU(ResponseReceived(response))]
        actions: list[Action] = [
            StopTimer(Timer.E),
            StopTimer(Timer.F),
            ToTU(ResponseReceived(response)),
        ]
        if self.reliable:
            self.state = State.TERMINATED
            return [*actions, Terminate()]
        self.state = State.COMPLETED
        return [*actions, StartTimer(Timer.K, self.timers.t4)]

    def on_timer(self, timer: Timer) -> list[Action]:
        if timer is Timer.E and self.state in (State.TRYING, State.PROCEEDING):
            if self.state is State.TRYING:
                self._e_interval = min(2 * self._e_interval, self.timers.t2)
            else:
                self._e_interval = self.timers.t2
            return [Send(self.data), StartTimer(Timer.E, self._e_interval)]
        if timer is Timer.F and self.state in (State.TRYING, State.PROCEEDING):
            self.state = State.TERMINATED
            return [StopTimer(Timer.E), ToTU(TimedOut(Timer.F)), Terminate()]
        if timer is Timer.K and self.state is State.COMPLETED:
            self.state = State.TERMINATED
            return [Terminate()]
        return []

    def on_transport_error(self) -> list[Action]:
        if self.state is State.TERMINATED:
            return []
        notify = self.state in (State.TRYING, State.PROCEEDING)
        self.state = State.TERMINATED
        actions: list[Action] = [StopTimer(Timer.E), StopTimer(Timer.F)]
        if notify:
            actions.append(ToTU(TransportFailed()))
        return [*actions, Terminate()]


ServerTransaction = InviteServerTransaction | NonInviteServerTransaction
ClientTransaction = InviteClientTransaction | NonInviteClientTransaction
Transaction = ServerTransaction | ClientTransaction
