"""Fakes for the applications that ring people: a Ringer and a Directory on a FakeCall's time,
and a queue store in memory. Unit tests of the applications only; the SIP ones are real."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from afterbeep.domain.clock import Clock
from afterbeep.domain.numbers import Destination
from afterbeep.domain.queues import AgentStatus
from afterbeep.domain.schedules import ScheduleState
from afterbeep.services.ports import UnitOfWorkFactory
from afterbeep.services.queues import QueueEngine
from afterbeep.telephony.fake import SAMPLES_PER_MS, FakeCall
from afterbeep.telephony.interface import Audio, Call
from afterbeep.telephony.scripts.pbx import PbxEnv
from afterbeep.telephony.scripts.ringer import (
    BridgeEnd,
    Leg,
    RingOutcome,
    RingResult,
    RingTarget,
)

MAX_STEPS = 1_000_000  # a fake ring that waits on a call whose time never moves fails loudly


@dataclass
class FakeLeg:
    call_id: str
    hung_up: bool = False

    async def hangup(self) -> None:
        self.hung_up = True


@dataclass
class Ring:
    start_ms: int
    labels: list[str]
    timeout: float
    delays: list[float]
    ringback: bool
    end_ms: int | None = None
    outcome: RingOutcome | None = None
    cancelled: bool = False


@dataclass
class FakeRinger:
    """Devices answer `answers[label]` seconds after they start ringing (absent: never).

    With ringback the caller only hears ringing, so the fake moves the call's time itself;
    without (a queue plays its music), it waits for the music to move it."""

    answers: dict[str, float] = field(default_factory=dict)
    busy: set[str] = field(default_factory=set)  # devices that answer 486 at once
    bridge_ms: int = 2000
    rings: list[Ring] = field(default_factory=list)
    bridged: list[str] = field(default_factory=list)

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
        fake = cast(FakeCall, call)
        ring = Ring(
            fake.now_ms,
            [t.label for t in targets],
            timeout,
            [t.delay_sec for t in targets],
            ringback,
        )
        self.rings.append(ring)
        if targets and all(t.label in self.busy for t in targets):
            ring.outcome = RingOutcome.BUSY
            ring.end_ms = fake.now_ms
            return RingResult(RingOutcome.BUSY)
        answered = [
            (t.delay_sec + self.answers[t.label], index, t)
            for index, t in enumerate(targets)
            if t.label in self.answers
            and self.answers[t.label] < (t.timeout_sec or timeout)
            and t.delay_sec + self.answers[t.label] < timeout
        ]
        winner = min(answered, key=lambda a: (a[0], a[1])) if answered else None
        end_ms = ring.start_ms + int((winner[0] if winner else timeout) * 1000)
        try:
            if ringback:
                gone_at = fake.hangup_at_ms
                if gone_at is not None and gone_at < end_ms:
                    fake.now = gone_at * SAMPLES_PER_MS
                    ring.outcome = RingOutcome.CALLER_GONE
                    return RingResult(RingOutcome.CALLER_GONE)
                fake.now = end_ms * SAMPLES_PER_MS
            else:
                for _ in range(MAX_STEPS):
                    if fake.now_ms >= end_ms:
                        break
                    await asyncio.sleep(0)
                else:
                    raise AssertionError("the call's time did not move while the agent rang")
        except asyncio.CancelledError:
            ring.cancelled = True
            raise
        ring.end_ms = fake.now_ms
        if winner is None:
            ring.outcome = RingOutcome.NO_ANSWER
            return RingResult(RingOutcome.NO_ANSWER)
        ring.outcome = RingOutcome.ANSWERED
        return RingResult(RingOutcome.ANSWERED, cast(Leg, FakeLeg(winner[2].label)), winner[2])

    async def bridge(self, call: Call, leg: Leg) -> BridgeEnd:
        fake = cast(FakeCall, call)
        self.bridged.append(leg.call_id)
        fake.now += self.bridge_ms * SAMPLES_PER_MS
        return BridgeEnd.CALLEE_HUNG_UP


@dataclass
class FakeDirectory:
    users: dict[str, list[str]] = field(default_factory=dict)  # user id -> device labels
    devices: dict[str, list[str]] = field(default_factory=dict)

    async def user_targets(self, account_id: str, user_id: str) -> list[RingTarget]:
        return [
            RingTarget(f"sip:{label}@127.0.0.1", label) for label in self.users.get(user_id, [])
        ]

    async def device_targets(self, account_id: str, device_id: str) -> list[RingTarget]:
        return [
            RingTarget(f"sip:{label}@127.0.0.1", label) for label in self.devices.get(device_id, [])
        ]


@dataclass
class Routed:
    """What `run_destination` was asked, and when."""

    calls: list[tuple[int, Destination | None]] = field(default_factory=list)

    async def __call__(self, call: Call, dest: Destination | None) -> None:
        self.calls.append((cast(FakeCall, call).now_ms, dest))


def env(
    ringer: FakeRinger,
    directory: FakeDirectory,
    routed: Routed,
    *,
    state: ScheduleState = ScheduleState.IN_HOURS,
    media: dict[str, Audio] | None = None,
    in_call: Callable[[str], bool] | None = None,
) -> PbxEnv:
    async def schedule_state(account_id: str, schedule_id: str) -> ScheduleState:
        return state

    async def media_of(account_id: str, media_id: str) -> Audio | None:
        return (media or {}).get(media_id)

    return PbxEnv(ringer, directory, routed, schedule_state, media_of, in_call=in_call)


class _Statuses:
    def __init__(self) -> None:
        self.stored: dict[str, AgentStatus] = {}

    async def statuses(
        self, account_id: str, user_ids: list[str] | None = None
    ) -> dict[str, AgentStatus]:
        return {u: s for u, s in self.stored.items() if user_ids is None or u in user_ids}

    async def set_status(
        self, account_id: str, user_id: str, status: AgentStatus, now: datetime
    ) -> None:
        self.stored[user_id] = status


class _Unit:
    def __init__(self, queues: _Statuses) -> None:
        self.queues = queues


class _FixedClock:
    def now(self) -> datetime:
        return datetime(2026, 12, 7, tzinfo=UTC)


@dataclass
class Timeline:
    """The engine's time: `offset` seconds plus the current call's time."""

    call: FakeCall
    offset: float = 0.0

    def __call__(self) -> float:
        return self.offset + self.call.now / 8000

    def next_call(self, call: FakeCall) -> None:
        self.offset = self()
        self.call = call


def engine(timeline: Timeline) -> tuple[QueueEngine, _Statuses]:
    statuses = _Statuses()

    @asynccontextmanager
    async def uow() -> AsyncIterator[Any]:
        yield _Unit(statuses)

    clock: Clock = _FixedClock()
    return QueueEngine(cast(UnitOfWorkFactory, uow), clock, timeline), statuses
