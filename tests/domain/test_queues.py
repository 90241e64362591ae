"""Queue rules without an event loop: agent choice, agent states, admission, exits, announcements."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from afterbeep.domain.errors import InvalidInput
from afterbeep.domain.ids import new_id
from afterbeep.domain.numbers import Destination, DestKind
from afterbeep.domain.queues import (
    UNREACHABLE_RETRY_SEC,
    Agent,
    AgentState,
    AgentStatus,
    Floor,
    Queue,
    QueueExit,
    QueueMember,
    QueueSettings,
    QueueStrategy,
    WaitingCaller,
    check_members,
    check_settings,
    choose_agents,
    line_order,
    next_to_offer,
    position_in,
)

A = new_id("usr")
B = new_id("usr")
C = new_id("usr")
T0 = datetime(2026, 12, 7, tzinfo=UTC)


def queue(strategy: QueueStrategy = QueueStrategy.LONGEST_IDLE, **settings: object) -> Queue:
    members = settings.pop("members", (QueueMember(A), QueueMember(B)))
    return Queue(
        id=new_id("q"),
        account_id=new_id("acc"),
        name="support",
        settings=QueueSettings(strategy=strategy, **settings),  # type: ignore[arg-type]
        members=members,  # type: ignore[arg-type]
        created_at=T0,
        updated_at=T0,
        timeout_dest=Destination(DestKind.VOICEMAIL, new_id("vm")),
    )


def floor_with(q: Queue, available: dict[str, float]) -> Floor:
    """A floor whose agents in `available` logged in at the given times."""
    floor = Floor()
    floor.line(q)
    for user_id, since in available.items():
        floor.agent(user_id).set_status(AgentStatus.AVAILABLE, since)
    return floor


def test_longest_idle_picks_the_agent_idle_longest() -> None:
    q = queue()
    floor = floor_with(q, {A: 50.0, B: 10.0})
    assert choose_agents(q.settings, q.members, floor.agents, 100.0) == [B]
    floor.agent(B).offer("t", 100.0)
    floor.agent(B).answered()
    floor.call_ended(B, 120.0, 0)
    assert choose_agents(q.settings, q.members, floor.agents, 130.0) == [A]


def test_longest_idle_counts_from_the_end_of_wrap_up() -> None:
    q = queue(wrap_up_sec=30)
    floor = floor_with(q, {A: 0.0, B: 0.0})
    for agent, ended in ((A, 20.0), (B, 10.0)):
        floor.agent(agent).offer("t", 1.0)
        floor.agent(agent).answered()
        floor.call_ended(agent, ended, q.settings.wrap_up_sec)
    assert choose_agents(q.settings, q.members, floor.agents, 39.0) == []
    assert choose_agents(q.settings, q.members, floor.agents, 45.0) == [B]  # A wraps up until 50
    assert choose_agents(q.settings, q.members, floor.agents, 55.0) == [B]  # idle since 40, A 50
    assert floor.agents[A].state_at(55.0) is AgentState.WAITING
    assert floor.agents[A].idle_since == 50.0


def test_wrap_up_is_respected() -> None:
    q = queue(wrap_up_sec=10, members=(QueueMember(A),))
    floor = floor_with(q, {A: 0.0})
    agent = floor.agent(A)
    agent.offer("t", 1.0)
    agent.answered()
    agent.call_ended(5.0, 10)
    assert agent.state_at(14.9) is AgentState.WRAP_UP
    assert choose_agents(q.settings, q.members, floor.agents, 14.9) == []
    assert choose_agents(q.settings, q.members, floor.agents, 15.0) == [A]


def test_fewest_calls_then_idle_longest() -> None:
    q = queue(QueueStrategy.FEWEST_CALLS, members=(QueueMember(A), QueueMember(B), QueueMember(C)))
    floor = floor_with(q, {A: 0.0, B: 5.0, C: 1.0})
    floor.agent(A).calls = 3
    floor.agent(B).calls = 1
    floor.agent(C).calls = 1
    assert choose_agents(q.settings, q.members, floor.agents, 10.0) == [C]


def test_round_robin_turns_after_the_last_offered() -> None:
    q = queue(QueueStrategy.ROUND_ROBIN, members=(QueueMember(A), QueueMember(B), QueueMember(C)))
    floor = floor_with(q, {A: 0.0, B: 0.0, C: 0.0})
    pick = [
        choose_agents(q.settings, q.members, floor.agents, 1.0, last_offered=last)
        for last in (None, A, B, C)
    ]
    assert pick == [[A], [B], [C], [A]]
    floor.agent(B).set_status(AgentStatus.ON_BREAK, 1.0)
    assert choose_agents(q.settings, q.members, floor.agents, 1.0, last_offered=A) == [C]


def test_ring_all_offers_every_free_agent_of_the_lowest_tier() -> None:
    members = (QueueMember(A, tier_level=2), QueueMember(B, tier_level=1), QueueMember(C, 1))
    q = queue(QueueStrategy.RING_ALL, members=members)
    floor = floor_with(q, {A: 0.0, B: 0.0, C: 0.0})
    assert choose_agents(q.settings, q.members, floor.agents, 1.0) == [B, C]


def test_lower_tiers_are_offered_first_then_the_next_tier() -> None:
    members = (QueueMember(A, tier_level=2), QueueMember(B, tier_level=1))
    q = queue(members=members)
    floor = floor_with(q, {A: 0.0, B: 50.0})  # A idle longer but in a higher tier
    assert choose_agents(q.settings, q.members, floor.agents, 60.0) == [B]
    floor.agent(B).offer("t", 60.0)
    assert choose_agents(q.settings, q.members, floor.agents, 60.0) == [A]


def test_only_available_waiting_reachable_agents_are_offered() -> None:
    q = queue(members=(QueueMember(A), QueueMember(B), QueueMember(C)))
    floor = floor_with(q, {A: 0.0, B: 0.0})
    floor.agent(A).offer("t", 1.0)  # already offering
    floor.agent(B).unreachable(1.0)  # no registered device
    assert choose_agents(q.settings, q.members, floor.agents, 2.0) == []  # C is offline
    assert choose_agents(q.settings, q.members, floor.agents, 1.0 + UNREACHABLE_RETRY_SEC) == [B]


def test_no_answer_offers_the_next_agent_and_counts_the_miss() -> None:
    q = queue(max_no_answer=3)
    floor = floor_with(q, {A: 0.0, B: 10.0})
    line = floor.line(q)
    line.join("c1", 20.0)
    assert [(o.ticket, o.agents) for o in floor.dispatch(20.0)] == [("c1", (A,))]
    assert floor.agents[A].state is AgentState.OFFERING
    assert floor.missed(line, "c1", A) is False
    assert floor.agents[A].missed_in_row == 1
    assert [(o.ticket, o.agents) for o in floor.dispatch(35.0)] == [("c1", (B,))]


def test_an_agent_who_missed_is_offered_again_when_nobody_else_can_take() -> None:
    q = queue(members=(QueueMember(A),))
    floor = floor_with(q, {A: 0.0})
    line = floor.line(q)
    line.join("c1", 1.0)
    floor.dispatch(1.0)
    floor.missed(line, "c1", A)
    assert [o.agents for o in floor.dispatch(16.0)] == [(A,)]


def test_max_no_answer_in_a_row_puts_the_agent_on_break() -> None:
    q = queue(max_no_answer=2, members=(QueueMember(A),))
    floor = floor_with(q, {A: 0.0})
    line = floor.line(q)
    line.join("c1", 1.0)
    floor.dispatch(1.0)
    assert floor.missed(line, "c1", A) is False
    floor.dispatch(2.0)
    assert floor.missed(line, "c1", A) is True
    assert floor.agents[A].status is AgentStatus.ON_BREAK
    assert floor.dispatch(3.0) == []
    assert line.exit_due("c1", floor.agents, 3.0) is QueueExit.NO_AGENTS


def test_an_answer_resets_the_missed_count() -> None:
    agent = Agent(A, AgentStatus.AVAILABLE)
    agent.offer("t", 0.0)
    agent.missed(3)
    agent.offer("t", 1.0)
    agent.missed(3)
    agent.offer("t", 2.0)
    agent.answered()
    assert agent.missed_in_row == 0
    assert agent.calls == 1
    assert agent.state is AgentState.IN_CALL


def test_logging_in_again_clears_a_break() -> None:
    agent = Agent(A, AgentStatus.AVAILABLE, missed_in_row=3)
    agent.status = AgentStatus.ON_BREAK
    agent.set_status(AgentStatus.AVAILABLE, 40.0)
    assert agent.missed_in_row == 0
    assert agent.idle_since == 40.0
    with pytest.raises(ValueError):
        Agent(B).offer("t", 0.0)  # offline


def test_no_agents_logged_in_refuses_the_caller() -> None:
    q = queue()
    floor = floor_with(q, {})
    assert floor.line(q).admit(floor.agents, 0.0) is QueueExit.NO_AGENTS
    floor.agent(A).set_status(AgentStatus.ON_BREAK, 0.0)
    assert floor.line(q).admit(floor.agents, 0.0) is QueueExit.NO_AGENTS
    floor.agent(B).set_status(AgentStatus.AVAILABLE, 0.0)
    assert floor.line(q).admit(floor.agents, 0.0) is None
    floor.agent(B).unreachable(0.0)
    assert floor.line(q).admit(floor.agents, 0.0) is QueueExit.NO_AGENTS


def test_an_agent_in_a_call_counts_as_logged_in() -> None:
    q = queue(members=(QueueMember(A),))
    floor = floor_with(q, {A: 0.0})
    floor.agent(A).offer("other", 0.0)
    floor.agent(A).answered()
    line = floor.line(q)
    assert line.admit(floor.agents, 1.0) is None
    line.join("c1", 1.0)
    assert line.exit_due("c1", floor.agents, 2.0) is None


def test_max_queued_refuses_with_queue_full() -> None:
    q = queue(max_queued=2)
    floor = floor_with(q, {A: 0.0})
    line = floor.line(q)
    line.join("c1", 0.0)
    assert line.admit(floor.agents, 0.0) is None
    line.join("c2", 0.0)
    assert line.admit(floor.agents, 0.0) is QueueExit.QUEUE_FULL
    floor.left(line, "c1", None, hung_up=True)
    assert line.admit(floor.agents, 0.0) is None


def test_max_wait_exits_with_timeout_but_not_during_an_offer() -> None:
    q = queue(max_wait_sec=60, members=(QueueMember(A),))
    floor = floor_with(q, {A: 0.0})
    line = floor.line(q)
    line.join("c1", 10.0)
    assert line.exit_due("c1", floor.agents, 69.9) is None
    floor.dispatch(69.9)
    assert line.exit_due("c1", floor.agents, 75.0) is None  # the agent's phone rings
    floor.missed(line, "c1", A)
    assert line.exit_due("c1", floor.agents, 75.0) is QueueExit.TIMEOUT
    floor.left(line, "c1", QueueExit.TIMEOUT)
    assert line.stats(floor.agents, 75.0).timed_out == 1


def test_zero_max_wait_waits_forever() -> None:
    q = queue(max_wait_sec=0)
    floor = floor_with(q, {A: 0.0})
    line = floor.line(q)
    line.join("c1", 0.0)
    assert line.exit_due("c1", floor.agents, 10_000.0) is None


def test_abandon_and_hang_up_count_as_abandoned_and_free_the_agents() -> None:
    q = queue(QueueStrategy.RING_ALL)
    floor = floor_with(q, {A: 0.0, B: 0.0})
    line = floor.line(q)
    line.join("c1", 1.0)
    line.join("c2", 1.0)
    floor.dispatch(1.0)
    assert floor.agents[A].offered_ticket == "c1"
    floor.left(line, "c1", None, hung_up=True)
    assert floor.agents[A].state is AgentState.WAITING
    assert floor.agents[B].state is AgentState.WAITING
    assert floor.agents[A].missed_in_row == 0
    floor.left(line, "c2", QueueExit.ABANDON)
    stats = line.stats(floor.agents, 2.0)
    assert (stats.waiting, stats.abandoned) == (0, 2)
    floor.left(line, "c2", QueueExit.ABANDON)  # gone already: nothing counted twice
    assert line.stats(floor.agents, 2.0).abandoned == 2


def test_ring_all_answer_frees_the_other_agents() -> None:
    q = queue(QueueStrategy.RING_ALL)
    floor = floor_with(q, {A: 0.0, B: 0.0})
    line = floor.line(q)
    line.join("c1", 1.0)
    floor.dispatch(1.0)
    assert floor.answered(line, "c1", B) == [A]
    assert floor.agents[A].state is AgentState.WAITING
    assert floor.agents[B].state is AgentState.IN_CALL
    assert line.stats(floor.agents, 2.0).answered == 1


def test_callers_are_served_in_order() -> None:
    q = queue(members=(QueueMember(A),))
    floor = floor_with(q, {A: 0.0})
    line = floor.line(q)
    line.join("first", 1.0)
    line.join("second", 2.0)
    assert (line.position("first"), line.position("second")) == (1, 2)
    assert [o.ticket for o in floor.dispatch(3.0)] == ["first"]
    assert floor.dispatch(3.0) == []  # the only agent is offering
    floor.answered(line, "first", A)
    assert line.position("second") == 1


def test_position_announcements_first_then_every_interval() -> None:
    q = queue(announce_first_sec=30, announce_interval_sec=60)
    floor = floor_with(q, {A: 0.0})
    line = floor.line(q)
    line.join("c1", 100.0)
    due = [t for t in range(100, 300) if line.announcement_due("c1", float(t))]
    assert due == [130, 190, 250]


def test_a_late_tick_announces_once_and_keeps_the_schedule() -> None:
    q = queue(announce_first_sec=10, announce_interval_sec=20)
    floor = floor_with(q, {A: 0.0})
    line = floor.line(q)
    line.join("c1", 0.0)
    assert line.announcement_due("c1", 55.0) is True  # 10, 30 and 50 passed: one announcement
    assert line.announcement_due("c1", 69.0) is False
    assert line.announcement_due("c1", 70.0) is True


def test_announcements_off_or_once() -> None:
    floor = Floor()
    off = floor.line(queue(announce_position=False))
    off.join("c1", 0.0)
    assert not any(off.announcement_due("c1", float(t)) for t in range(1000))
    once = floor.line(queue(announce_first_sec=5, announce_interval_sec=0))
    once.join("c1", 0.0)
    assert [t for t in range(100) if once.announcement_due("c1", float(t))] == [5]


def test_stats_count_agents_by_state_and_the_longest_wait() -> None:
    q = queue(members=(QueueMember(A), QueueMember(B), QueueMember(C)), wrap_up_sec=5)
    floor = floor_with(q, {A: 0.0, B: 0.0})
    floor.agent(C).set_status(AgentStatus.ON_BREAK, 0.0)
    line = floor.line(q)
    line.join("c1", 10.0)
    floor.dispatch(10.0)  # A (listed first) is offered c1
    line.join("c2", 20.0)
    floor.agent(B).offer("elsewhere", 20.0)
    floor.agent(B).answered()
    stats = line.stats(floor.agents, 30.0)
    assert stats.waiting == 2
    assert stats.longest_wait_sec == 20.0
    assert stats.agents_by_state == {
        "offline": 0,
        "on_break": 1,
        "waiting": 0,
        "offering": 1,
        "in_call": 1,
        "wrap_up": 0,
    }
    assert sum(stats.agents_by_state.values()) == 3


def test_exit_destinations_holiday_falls_back_to_closed() -> None:
    closed = Destination(DestKind.VOICEMAIL, new_id("vm"))
    q = queue()
    from dataclasses import replace

    q = replace(q, closed_dest=closed)
    assert q.exit_dest(QueueExit.HOLIDAY) == closed
    assert q.exit_dest(QueueExit.ABANDON) is None
    assert q.exit_dest(QueueExit.TIMEOUT) == q.timeout_dest


def test_settings_and_members_are_checked() -> None:
    with pytest.raises(InvalidInput) as err:
        check_settings(QueueSettings(agent_ring_timeout_sec=0))
    assert err.value.field == "agent_ring_timeout_sec"
    with pytest.raises(InvalidInput) as err:
        check_settings(QueueSettings(max_wait_sec=-1))
    assert err.value.field == "max_wait_sec"
    with pytest.raises(InvalidInput) as err:
        check_members([QueueMember(A), QueueMember(A)])
    assert err.value.field == "members[1].user_id"
    with pytest.raises(InvalidInput) as err:
        check_members([QueueMember("dev_01jg8asp59ps9rtt7azhrhvcre")])
    assert err.value.field == "members[0].user_id"
    with pytest.raises(InvalidInput):
        check_members([QueueMember(A, tier_level=10)])


# --- the line and holds every node shares (issue 23) --------------------------------------------


def test_the_shared_line_is_first_come_first_served_across_nodes() -> None:
    t0 = datetime(2026, 6, 1, 16, 0, tzinfo=UTC)
    later = datetime(2026, 6, 1, 16, 0, 5, tzinfo=UTC)
    waiting = line_order(
        [
            WaitingCaller("c-late", later),
            WaitingCaller("b-same-instant", t0, offered=True),
            WaitingCaller("a-same-instant", t0, offered=True),
        ]
    )
    assert [w.ticket for w in waiting] == ["a-same-instant", "b-same-instant", "c-late"]
    assert position_in(waiting, "c-late") == 3
    assert position_in(waiting, "gone") is None
    assert next_to_offer(waiting) == "c-late"  # the two ahead have an offer ringing
    assert next_to_offer([]) is None


def test_an_agent_takes_the_state_every_node_sees() -> None:
    agent = Agent("usr_a")
    agent.sync(AgentStatus.AVAILABLE, AgentState.OFFERING, "call-1", 130.0, None, 100.0)
    assert (agent.state_at(100.0), agent.offered_ticket) == (AgentState.OFFERING, "call-1")
    assert not agent.can_take(100.0)
    # the hold ended (or expired): free again, idle since the stored time
    agent.sync(AgentStatus.AVAILABLE, None, None, None, 90.0, 101.0)
    assert agent.can_take(101.0) and agent.idle_since == 90.0 and agent.offered_ticket is None
    # wrap-up on another node: free when it ends
    agent.sync(AgentStatus.AVAILABLE, AgentState.WRAP_UP, "call-2", 110.0, 110.0, 102.0)
    assert not agent.can_take(105.0) and agent.can_take(110.0)
    # logged out elsewhere
    agent.sync(AgentStatus.OFFLINE, None, None, None, None, 111.0)
    assert not agent.logged_in(111.0)
