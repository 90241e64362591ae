"""The call to a user, step by step, over FakeCall with a fake Ringer and a fake Directory:
fwd_always, do not disturb, busy, no answer, nothing registered, answered, caller gone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest

from afterbeep.domain.users import Forward, FwdKind, RingStrategy, User
from afterbeep.telephony.fake import FakeCall
from afterbeep.telephony.interface import Call
from afterbeep.telephony.scripts.ringer import (
    BridgeEnd,
    Leg,
    RingOutcome,
    RingResult,
    RingTarget,
)
from afterbeep.telephony.scripts.user import UserCallEnd, UserLines, call_user

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
BOX = "vm_01jg8asp59ps9rtt7azhrhvcre"
FLOW = "flow_01jg8asp59ps9rtt7azhrhvcre"
OTHER = "usr_01jg8asp59ps9rtt7azhrhvcrf"
DESK = RingTarget("sip:desk@192.0.2.1:5060", "usr_a/dev_desk")
MOBILE = RingTarget("sip:mobile@192.0.2.2:5060", "usr_a/dev_mobile")


def user(**fields: object) -> User:
    base = User(
        id="usr_01jg8asp59ps9rtt7azhrhvcre",
        account_id="acc_01jg8asp59ps9rtt7azhrhvcre",
        username="201",
        display_name="Alice",
        created_at=NOW,
        updated_at=NOW,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


@dataclass
class FakeLeg:
    call_id: str = "leg-1"
    hung_up: bool = False

    async def hangup(self) -> None:
        self.hung_up = True


@dataclass
class FakeRinger:
    outcome: RingOutcome
    rings: list[tuple[list[RingTarget], float, bool, str | None]] = field(default_factory=list)
    bridged: list[Leg] = field(default_factory=list)

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
        self.rings.append((list(targets), timeout, sequential, caller_id))
        if self.outcome is RingOutcome.ANSWERED:
            return RingResult(self.outcome, FakeLeg(), targets[0])
        return RingResult(self.outcome)

    async def bridge(self, call: Call, leg: Leg) -> BridgeEnd:
        self.bridged.append(leg)
        return BridgeEnd.CALLER_HUNG_UP


@dataclass
class FakeDirectory:
    targets: list[RingTarget]
    asked: list[tuple[str, str]] = field(default_factory=list)

    async def user_targets(self, account_id: str, user_id: str) -> list[RingTarget]:
        self.asked.append((account_id, user_id))
        return list(self.targets)

    async def device_targets(self, account_id: str, device_id: str) -> list[RingTarget]:
        raise AssertionError("a user's call asks for the user's targets")


@dataclass
class Runs:
    done: list[tuple[Forward, bool]] = field(default_factory=list)

    async def __call__(self, call: Call, forward: Forward, busy: bool) -> None:
        self.done.append((forward, busy))


async def run_app(
    u: User, outcome: RingOutcome = RingOutcome.NO_ANSWER, targets: Sequence[RingTarget] = (DESK, MOBILE)
) -> tuple[UserCallEnd, FakeCall, FakeRinger, FakeDirectory, Runs]:
    call, ringer, directory, runs = FakeCall(), FakeRinger(outcome), FakeDirectory(list(targets)), Runs()
    result = await call_user(call, u, ringer, directory, runs)
    return result.end, call, ringer, directory, runs


async def test_fwd_always_goes_there_without_ringing() -> None:
    fwd = Forward(FwdKind.FLOW, FLOW)
    end, _, ringer, directory, runs = await run_app(user(fwd_always=fwd, dnd=True, voicemail_id=BOX))
    assert end is UserCallEnd.FORWARDED and runs.done == [(fwd, False)]
    assert ringer.rings == [] and directory.asked == []


async def test_dnd_takes_the_busy_chain_fwd_busy_first() -> None:
    fwd = Forward(FwdKind.USER, OTHER)
    end, _, ringer, _, runs = await run_app(user(dnd=True, fwd_busy=fwd, voicemail_id=BOX))
    assert end is UserCallEnd.BUSY and runs.done == [(fwd, True)] and ringer.rings == []


async def test_dnd_without_fwd_busy_leaves_a_message_with_the_busy_greeting() -> None:
    end, _, ringer, _, runs = await run_app(
        user(dnd=True, voicemail_id=BOX, fwd_noanswer=Forward(FwdKind.HANGUP, None))
    )
    assert end is UserCallEnd.BUSY and ringer.rings == []
    assert runs.done == [(Forward(FwdKind.VOICEMAIL, BOX), True)]


async def test_dnd_with_nowhere_to_go_hangs_up() -> None:
    end, call, _, _, runs = await run_app(user(dnd=True))
    assert end is UserCallEnd.BUSY and runs.done == [] and call.hung_up_by_us


@pytest.mark.parametrize("strategy", [RingStrategy.SIMULTANEOUS, RingStrategy.SEQUENTIAL])
async def test_an_answer_is_bridged(strategy: RingStrategy) -> None:
    end, call, ringer, directory, runs = await run_app(
        user(ring_strategy=strategy, ring_timeout_sec=20, voicemail_id=BOX), RingOutcome.ANSWERED
    )
    assert end is UserCallEnd.BRIDGED and runs.done == [] and len(ringer.bridged) == 1
    [(targets, timeout, sequential, caller_id)] = ringer.rings
    assert caller_id == call.caller and directory.asked == [(user().account_id, user().id)]
    if strategy is RingStrategy.SEQUENTIAL:
        assert sequential and timeout == 40.0  # each device its 20 s, in ring_order
        assert [t.uri for t in targets] == [DESK.uri, MOBILE.uri]
        assert all(t.timeout_sec == 20.0 for t in targets)
    else:
        assert not sequential and timeout == 20.0 and targets == [DESK, MOBILE]


async def test_all_busy_takes_the_busy_chain() -> None:
    end, _, _, _, runs = await run_app(user(voicemail_id=BOX), RingOutcome.BUSY)
    assert end is UserCallEnd.BUSY and runs.done == [(Forward(FwdKind.VOICEMAIL, BOX), True)]


@pytest.mark.parametrize("outcome", [RingOutcome.NO_ANSWER, RingOutcome.FAILED])
async def test_no_answer_takes_fwd_noanswer_then_the_mailbox(outcome: RingOutcome) -> None:
    fwd = Forward(FwdKind.FLOW, FLOW)
    end, _, _, _, runs = await run_app(user(voicemail_id=BOX, fwd_noanswer=fwd), outcome)
    assert end is UserCallEnd.NO_ANSWER and runs.done == [(fwd, False)]
    end, _, _, _, runs = await run_app(user(voicemail_id=BOX), outcome)
    assert runs.done == [(Forward(FwdKind.VOICEMAIL, BOX), False)]  # the unavailable greeting
    end, call, _, _, runs = await run_app(user(), outcome)
    assert runs.done == [] and call.hung_up_by_us


async def test_nothing_registered_goes_to_voicemail_at_once() -> None:
    end, _, ringer, _, runs = await run_app(user(voicemail_id=BOX), targets=())
    assert end is UserCallEnd.NO_ANSWER and ringer.rings == []
    assert runs.done == [(Forward(FwdKind.VOICEMAIL, BOX), False)]


async def test_a_caller_who_hangs_up_while_it_rings_goes_nowhere() -> None:
    end, call, _, _, runs = await run_app(user(voicemail_id=BOX), RingOutcome.CALLER_GONE)
    assert end is UserCallEnd.CALLER_GONE and runs.done == [] and not call.hung_up_by_us


@dataclass
class HeldRinger(FakeRinger):
    """Answers, and keeps the bridge up until `release` is set."""

    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def bridge(self, call: Call, leg: Leg) -> BridgeEnd:
        self.bridged.append(leg)
        await self.release.wait()
        return BridgeEnd.CALLER_HUNG_UP


async def test_a_user_in_max_simultaneous_calls_takes_the_busy_chain() -> None:
    u = user(max_simultaneous=2, voicemail_id=BOX)
    lines, runs = UserLines(), Runs()
    ringer, directory = HeldRinger(RingOutcome.ANSWERED), FakeDirectory([DESK])
    with lines.held(u.id):  # a call dialled from one of the user's phones
        first = asyncio.ensure_future(call_user(FakeCall(), u, ringer, directory, runs, lines))
        async with asyncio.timeout(5):
            while not ringer.bridged:  # noqa: ASYNC110 (the fake bridge has no event of its own)
                await asyncio.sleep(0)
        assert lines.count(u.id) == 2
        third = await call_user(FakeCall(), u, ringer, directory, runs, lines)
        assert third.end is UserCallEnd.BUSY and len(ringer.rings) == 1  # not rung
        assert runs.done == [(Forward(FwdKind.VOICEMAIL, BOX), True)]  # the busy greeting
    ringer.release.set()
    assert (await first).end is UserCallEnd.BRIDGED
    assert lines.count(u.id) == 0
    again = asyncio.ensure_future(call_user(FakeCall(), u, ringer, directory, runs, lines))
    assert (await again).end is UserCallEnd.BRIDGED and len(ringer.rings) == 2


async def test_no_max_simultaneous_means_no_limit() -> None:
    u = user(voicemail_id=BOX)
    lines = UserLines()
    with lines.held(u.id), lines.held(u.id), lines.held(u.id):
        end, *_ = await run_app(u, RingOutcome.ANSWERED)
        result = await call_user(
            FakeCall(), u, FakeRinger(RingOutcome.ANSWERED), FakeDirectory([DESK]), Runs(), lines
        )
    assert end is UserCallEnd.BRIDGED and result.end is UserCallEnd.BRIDGED
