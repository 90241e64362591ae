"""The queue application on a FakeCall with a fake Ringer and Directory: who is offered the
caller, what the caller hears, and every way out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from afterbeep.domain.ids import new_id
from afterbeep.domain.numbers import Destination, DestKind
from afterbeep.domain.queues import (
    AgentState,
    AgentStatus,
    Queue,
    QueueExit,
    QueueMember,
    QueueSettings,
    QueueStrategy,
)
from afterbeep.domain.schedules import ScheduleState
from afterbeep.telephony.fake import FakeCall
from afterbeep.telephony.scripts.queue import default_hold_music, position_prompt, run_queue
from tests.telephony.pbx_fakes import FakeDirectory, FakeRinger, Routed, Timeline, engine, env

A, B = new_id("usr"), new_id("usr")
T0 = datetime(2026, 12, 7, tzinfo=UTC)
VM_TIMEOUT = Destination(DestKind.VOICEMAIL, new_id("vm"))
VM_NO_AGENTS = Destination(DestKind.VOICEMAIL, new_id("vm"))
VM_ABANDON = Destination(DestKind.VOICEMAIL, new_id("vm"))
FULL = Destination(DestKind.HANGUP, None)
CLOSED = Destination(DestKind.VOICEMAIL, new_id("vm"))
HOLIDAY = Destination(DestKind.FLOW, new_id("flow"))


def make_queue(*members: str, **settings: object) -> Queue:
    defaults: dict[str, object] = {
        "agent_ring_timeout_sec": 10,
        "max_wait_sec": 120,
        "wrap_up_sec": 5,
        "max_no_answer": 3,
        "announce_position": False,
    }
    return Queue(
        id=new_id("q"),
        account_id=new_id("acc"),
        name="support",
        settings=QueueSettings(**{**defaults, **settings}),  # type: ignore[arg-type]
        members=tuple(QueueMember(m) for m in members),
        created_at=T0,
        updated_at=T0,
        timeout_dest=VM_TIMEOUT,
        no_agents_dest=VM_NO_AGENTS,
        abandon_dest=VM_ABANDON,
        queue_full_dest=FULL,
        closed_dest=CLOSED,
        holiday_dest=HOLIDAY,
    )


class World:
    def __init__(self, queue: Queue, call: FakeCall | None = None) -> None:
        self.queue = queue
        self.call = call or FakeCall(hangup_at_ms=600_000)
        self.timeline = Timeline(self.call)
        self.engine, self.statuses = engine(self.timeline)
        self.ringer = FakeRinger()
        self.directory = FakeDirectory({A: ["a-desk", "a-soft"], B: ["b-desk"]})
        self.routed = Routed()

    def available(self, user_id: str, since: float = 0.0) -> None:
        self.statuses.stored[user_id] = AgentStatus.AVAILABLE
        self.engine.floor.agent(user_id).set_status(AgentStatus.AVAILABLE, since)

    async def run(self, **kw: object) -> QueueExit | None:
        return await run_queue(
            self.call,
            self.queue,
            env(self.ringer, self.directory, self.routed, **kw),
            self.engine,  # type: ignore[arg-type]
        )


def played(call: FakeCall, audio: np.ndarray) -> bool:
    return any(len(a) == len(audio) and np.array_equal(a, audio) for _, a in call.played)


async def test_longest_idle_agent_is_offered_and_answers() -> None:
    w = World(make_queue(A, B))
    w.available(A, since=-10.0)
    w.available(B, since=-50.0)  # idle longer
    w.ringer.answers = {"b-desk": 3.0}
    assert await w.run() is None
    assert [r.labels for r in w.ringer.rings] == [["b-desk"]]
    assert w.ringer.rings[0].ringback is False
    assert w.ringer.bridged == ["b-desk"]
    assert w.call.answered
    # The caller heard hold music while the agent rang, and the music stopped on the answer.
    assert w.call.played and all(start < w.ringer.rings[0].end_ms * 8 for start, _ in w.call.played)  # type: ignore[operator]
    agent = w.engine.floor.agents[B]
    assert agent.state_at(w.timeline()) is AgentState.WRAP_UP
    assert agent.calls == 1
    stats = w.engine.stats(w.queue)
    assert (stats.waiting, stats.answered, stats.abandoned) == (0, 1, 0)
    assert w.routed.calls == []


async def test_an_agent_who_does_not_answer_is_followed_by_the_next() -> None:
    w = World(make_queue(A, B))
    w.available(A, since=-50.0)
    w.available(B, since=-10.0)
    w.ringer.answers = {"b-desk": 2.0}
    assert await w.run() is None
    assert [r.labels for r in w.ringer.rings] == [["a-desk", "a-soft"], ["b-desk"]]
    first, second = w.ringer.rings
    assert first.outcome is not None and first.outcome.value == "no_answer"
    assert first.end_ms is not None and first.end_ms - first.start_ms >= 10_000
    assert second.start_ms >= first.end_ms
    assert w.engine.floor.agents[A].missed_in_row == 1
    assert w.engine.floor.agents[A].state is AgentState.WAITING
    assert w.ringer.bridged == ["b-desk"]


async def test_wrap_up_is_respected_before_the_next_offer() -> None:
    w = World(make_queue(A, wrap_up_sec=30))
    w.available(A)
    w.ringer.answers = {"a-desk": 1.0}
    assert await w.run() is None
    wrap_up_ends = w.engine.floor.agents[A].wrap_up_until
    second = FakeCall(call_id="call-2", hangup_at_ms=600_000)
    w.call = second
    w.timeline.next_call(second)
    started = w.timeline()
    assert await w.run() is None
    offer = w.ringer.rings[-1]
    offered_at = started + offer.start_ms / 1000
    assert offered_at >= wrap_up_ends
    assert offered_at - wrap_up_ends < 2.0  # offered as soon as the wrap-up ended
    assert w.ringer.bridged == ["a-desk", "a-desk"]


async def test_max_no_answer_puts_the_agent_on_break_then_no_agents() -> None:
    w = World(make_queue(A, max_no_answer=2))
    w.available(A)
    assert await w.run() is QueueExit.NO_AGENTS
    assert len(w.ringer.rings) == 2
    assert w.statuses.stored[A] is AgentStatus.ON_BREAK
    assert w.engine.floor.agents[A].status is AgentStatus.ON_BREAK
    assert [dest for _, dest in w.routed.calls] == [VM_NO_AGENTS]
    assert w.engine.stats(w.queue).waiting == 0


async def test_no_agent_logged_in_goes_to_no_agents_unanswered() -> None:
    w = World(make_queue(A, B))
    w.statuses.stored[B] = AgentStatus.ON_BREAK
    assert await w.run() is QueueExit.NO_AGENTS
    assert not w.call.answered
    assert w.ringer.rings == []
    assert [dest for _, dest in w.routed.calls] == [VM_NO_AGENTS]


async def test_an_agent_without_a_registered_device_is_not_reachable() -> None:
    w = World(make_queue(A))
    w.available(A)
    w.directory.users = {}
    assert await w.run() is QueueExit.NO_AGENTS
    assert w.ringer.rings == []


async def test_waiting_past_max_wait_goes_to_the_timeout_destination() -> None:
    w = World(make_queue(A, max_wait_sec=25, max_no_answer=0))
    w.available(A)
    assert await w.run() is QueueExit.TIMEOUT
    when, dest = w.routed.calls[0]
    assert dest == VM_TIMEOUT
    assert 25_000 <= when < 25_000 + 10_000 + 1_000  # after max_wait, at most one offer later
    assert w.engine.stats(w.queue).timed_out == 1
    assert w.engine.floor.agents[A].state is AgentState.WAITING


async def test_a_caller_who_hangs_up_is_counted_abandoned_and_leaves_nothing() -> None:
    w = World(make_queue(A, B), FakeCall(hangup_at_ms=4_000))
    w.available(A, since=-50.0)
    w.available(B)
    assert await w.run() is QueueExit.ABANDON
    assert w.ringer.rings[0].cancelled  # the ringing offer was cancelled
    stats = w.engine.stats(w.queue)
    assert (stats.waiting, stats.abandoned) == (0, 1)
    assert w.engine.floor.agents[A].state is AgentState.WAITING
    assert w.engine.floor.agents[A].missed_in_row == 0
    assert w.engine.floor.lines[w.queue.id].callers == []  # nothing of the caller is left
    assert all(a.offered_ticket is None for a in w.engine.floor.agents.values())
    assert w.routed.calls == []


async def test_the_abandon_key_leaves_for_the_abandon_destination() -> None:
    w = World(make_queue(A), FakeCall(keys=[(3_500, "*")], hangup_at_ms=600_000))
    w.available(A)
    assert await w.run() is QueueExit.ABANDON
    assert [dest for _, dest in w.routed.calls] == [VM_ABANDON]
    assert w.ringer.rings[0].cancelled
    assert w.engine.stats(w.queue).abandoned == 1


async def test_a_full_queue_refuses_the_caller() -> None:
    w = World(make_queue(A, max_queued=1))
    w.available(A)
    assert await w.engine.join(w.queue, "someone-else") is None
    assert await w.run() is QueueExit.QUEUE_FULL
    assert [dest for _, dest in w.routed.calls] == [FULL]
    assert not w.call.answered


async def test_closed_and_holiday_schedules() -> None:
    for state, exit, dest in (
        (ScheduleState.OUT_OF_HOURS, QueueExit.CLOSED, CLOSED),
        (ScheduleState.HOLIDAY, QueueExit.HOLIDAY, HOLIDAY),
    ):
        w = World(replace(make_queue(A), schedule_id=new_id("sch")))
        w.available(A)
        assert await w.run(state=state) is exit
        assert [d for _, d in w.routed.calls] == [dest]
        assert w.ringer.rings == [] and not w.call.answered


async def test_position_is_announced_first_then_every_interval() -> None:
    w = World(
        make_queue(
            A,
            announce_position=True,
            announce_first_sec=3,
            announce_interval_sec=10,
            max_wait_sec=30,
            max_no_answer=0,
        )
    )
    w.available(A)
    await w.engine.join(w.queue, "ahead")  # one caller ahead, offered first
    assert await w.run() is QueueExit.TIMEOUT
    second = position_prompt(2, "en", True)
    first = position_prompt(1, "en", True)
    starts = [start for start, audio in w.call.played if len(audio) in (len(first), len(second))]
    assert len(starts) == 3  # at about 3, 13 and 23 s
    assert played(w.call, second)
    assert all(
        abs(start / 8000 - want) < 2.5 for start, want in zip(starts, (3, 13, 23), strict=True)
    )


async def test_hold_music_is_the_queues_media_else_a_tone() -> None:
    music = (np.arange(24_000) % 200).astype(np.int16)
    media_id = new_id("media")
    w = World(replace(make_queue(A, max_wait_sec=5, max_no_answer=0), moh_media_id=media_id))
    w.available(A)
    await w.run(media={media_id: music})
    assert played(w.call, music[:8000]) and played(w.call, music[8000:16000])
    plain = World(make_queue(A, max_wait_sec=5, max_no_answer=0))
    plain.available(A)
    await plain.run()
    assert played(plain.call, default_hold_music()[:8000])


async def test_ring_all_rings_every_free_agent_and_frees_the_others() -> None:
    w = World(make_queue(A, B, strategy=QueueStrategy.RING_ALL))
    w.available(A)
    w.available(B)
    w.ringer.answers = {"a-soft": 4.0, "b-desk": 2.0}
    assert await w.run() is None
    assert [sorted(r.labels) for r in w.ringer.rings] == [["a-desk", "a-soft", "b-desk"]]
    assert w.ringer.bridged == ["b-desk"]
    assert w.engine.floor.agents[A].state is AgentState.WAITING
    assert w.engine.floor.agents[A].missed_in_row == 0


async def test_an_agent_busy_in_another_call_is_skipped_not_counted() -> None:
    w = World(make_queue(A, B))
    w.available(A, since=-50.0)
    w.available(B)
    w.ringer.busy = {"a-desk", "a-soft"}
    w.ringer.answers = {"b-desk": 1.0}
    assert await w.run() is None
    assert [r.labels for r in w.ringer.rings] == [["a-desk", "a-soft"], ["b-desk"]]
    assert w.engine.floor.agents[A].missed_in_row == 0
    assert w.ringer.bridged == ["b-desk"]


async def test_an_agent_in_a_call_bridged_on_this_node_is_not_offered() -> None:
    """A user called through the user application (or a ring group) is in a bridged call here:
    not rung at all, not counted as a miss."""
    w = World(make_queue(A, B))
    w.available(A, since=-50.0)
    w.available(B)
    w.ringer.answers = {"b-desk": 1.0}
    assert await w.run(in_call=lambda user_id: user_id == A) is None
    assert [r.labels for r in w.ringer.rings] == [["b-desk"]]
    assert w.engine.floor.agents[A].missed_in_row == 0
    assert w.ringer.bridged == ["b-desk"]
