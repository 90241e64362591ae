"""Work item rules with an injected time: offer, decline, timeout, all-declined, fallback, TTL,
capacity and weight, priority then age, the strategies, the live-call hook."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from afterbeep.domain import work_items as w
from afterbeep.domain.errors import Conflict, InvalidInput
from afterbeep.domain.queues import (
    Agent,
    AgentStatus,
    QueueMember,
    QueueSettings,
    QueueStrategy,
    check_settings,
)

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
A, B, C = "usr_a", "usr_b", "usr_c"
SETTINGS = QueueSettings(work_offer_timeout_sec=30, work_ttl_sec=3600)
MEMBERS = (QueueMember(A), QueueMember(B), QueueMember(C))


def item(
    n: int = 1,
    *,
    channel: str = "voicemail",
    priority: int = 5,
    at: datetime = T0,
    queue: str = "q1",
    weight: int | None = None,
) -> w.WorkItem:
    return w.new_item(
        f"wi_{n}",
        "acc",
        f"vc_{n}",
        queue,
        SETTINGS,
        at,
        channel=channel,
        priority=priority,
        weight=weight,
    )


def agents(
    *ids: str, status: AgentStatus = AgentStatus.AVAILABLE, **kw: object
) -> dict[str, w.AgentLoad]:
    return {
        a: w.AgentLoad(a, status, idle_since=T0 - timedelta(minutes=10 - n), **kw)  # type: ignore[arg-type]
        for n, a in enumerate(ids)
    }


def test_weights_default_by_channel_voicemail_lighter_than_a_call() -> None:
    assert item(channel="voicemail").weight == 3
    assert item(channel="callback").weight == 5
    assert item(channel="call").weight == w.LIVE_CALL_WEIGHT == 10
    assert item(weight=7).weight == 7
    with pytest.raises(InvalidInput):
        item(priority=0)


def test_offer_accept_wrap_up_complete() -> None:
    one = item()
    reserved, offer = w.offer(one, A, "wio_1", SETTINGS, T0, reset=False)
    assert reserved.state is w.WorkItemState.RESERVED and reserved.agent_id == A
    assert offer.expires_at == T0 + timedelta(seconds=30)
    assert w.due(reserved, SETTINGS, T0 + timedelta(seconds=29)) is None
    assigned, accepted = w.accept(reserved, offer, T0 + timedelta(seconds=5))
    assert assigned.state is w.WorkItemState.ASSIGNED and accepted.status is w.OfferStatus.ACCEPTED
    wrapping = w.wrap_up(assigned, T0)
    done = w.complete(wrapping, "called back", T0 + timedelta(minutes=1))
    assert done.state is w.WorkItemState.COMPLETED and done.notes == "called back"
    assert done.holds == 0 and assigned.holds == 3 and wrapping.holds == 3
    with pytest.raises(Conflict):
        w.accept(assigned, offer, T0)


def test_an_expired_offer_cannot_be_accepted_and_times_out() -> None:
    reserved, offer = w.offer(item(), A, "wio_1", SETTINGS, T0, reset=False)
    late = T0 + timedelta(seconds=30)
    with pytest.raises(Conflict):
        w.accept(reserved, offer, late)
    assert w.due(reserved, SETTINGS, late) is w.Due.OFFER_TIMEOUT
    back, timed_out = w.time_out(reserved, offer, late)
    assert back.state is w.WorkItemState.PENDING and back.declined_by == (A,)
    assert timed_out.status is w.OfferStatus.TIMED_OUT


def test_decline_goes_to_the_next_agent_then_everyone_again() -> None:
    pool = agents(A, B)
    one = item()
    first = w.choose_agent(one, QueueStrategy.LONGEST_IDLE, MEMBERS[:2], pool)
    assert first == w.Choice(A, False)  # idle longest
    reserved, offer = w.offer(one, A, "wio_1", SETTINGS, T0, reset=False)
    back, _ = w.decline(reserved, offer, T0)
    assert w.choose_agent(back, QueueStrategy.LONGEST_IDLE, MEMBERS[:2], pool).agent_id == B
    reserved, offer = w.offer(back, B, "wio_2", SETTINGS, T0, reset=False)
    back, _ = w.decline(reserved, offer, T0)
    assert back.declined_by == (A, B)
    again = w.choose_agent(back, QueueStrategy.LONGEST_IDLE, MEMBERS[:2], pool)
    assert again == w.Choice(A, True)  # every eligible agent declined: the set resets
    reserved, _ = w.offer(back, A, "wio_3", SETTINGS, T0, reset=True)
    assert reserved.declined_by == ()


def test_a_decliner_waits_while_an_eligible_agent_has_no_room() -> None:
    pool = agents(A, B)
    pool[B].load = 9  # capacity 10: no room for 3
    one = replace(item(), declined_by=(A,))
    assert w.choose_agent(one, QueueStrategy.LONGEST_IDLE, MEMBERS[:2], pool) == w.Choice(
        None, False
    )


def test_only_available_members_are_eligible() -> None:
    pool = agents(A, B)
    pool[A].status = AgentStatus.ON_BREAK
    pool["usr_x"] = w.AgentLoad("usr_x", AgentStatus.AVAILABLE)
    assert w.choose_agent(item(), QueueStrategy.LONGEST_IDLE, MEMBERS[:2], pool).agent_id == B
    pool[B].status = AgentStatus.OFFLINE
    assert w.choose_agent(item(), QueueStrategy.LONGEST_IDLE, MEMBERS[:2], pool).agent_id is None


def test_capacity_and_weight_in_one_round() -> None:
    pool = agents(A)
    items = [item(n) for n in range(1, 6)]  # 5 voicemails of 3 in a capacity of 10: 3 fit
    chosen = w.dispatch(items, {"q1": (SETTINGS, MEMBERS[:1])}, pool, w.Round())
    assert [c.item_id for c in chosen] == ["wi_1", "wi_2", "wi_3"]
    assert pool[A].load == 9
    heavy = w.dispatch(
        [item(9, channel="call")], {"q1": (SETTINGS, MEMBERS[:1])}, agents(A), w.Round()
    )
    assert len(heavy) == 1
    small = agents(A, capacity=5)
    assert (
        w.dispatch([item(9, channel="call")], {"q1": (SETTINGS, MEMBERS[:1])}, small, w.Round())
        == []
    )
    # a heavier item that does not fit does not hold back a lighter one behind it
    loaded = agents(A)
    loaded[A].load = 6
    mixed = [item(1, channel="call", at=T0), item(2, at=T0 + timedelta(seconds=1))]
    assert [
        c.item_id for c in w.dispatch(mixed, {"q1": (SETTINGS, MEMBERS[:1])}, loaded, w.Round())
    ] == ["wi_2"]


def test_a_live_call_counts_against_capacity() -> None:
    pool = agents(A, B)
    pool[A].load = w.LIVE_CALL_WEIGHT  # in a live queue call
    assert w.choose_agent(item(), QueueStrategy.LONGEST_IDLE, MEMBERS[:2], pool).agent_id == B


def test_live_call_hook_blocks_the_live_engine() -> None:
    assert not w.live_call_blocked(10, 0)
    assert w.live_call_blocked(10, 3)
    assert not w.live_call_blocked(20, 10)
    agent = Agent(A, AgentStatus.AVAILABLE)
    assert agent.can_take(0.0)
    agent.work_blocked = True
    assert not agent.can_take(0.0) and agent.logged_in(0.0)


def test_priority_then_age() -> None:
    old_low = item(1, priority=5, at=T0)
    new_high = item(2, priority=1, at=T0 + timedelta(minutes=5))
    old_high = item(3, priority=1, at=T0 + timedelta(minutes=1))
    order = [i.id for i in w.by_priority_then_age([old_low, new_high, old_high])]
    assert order == ["wi_3", "wi_2", "wi_1"]
    pool = agents(A, capacity=3)  # room for one
    chosen = w.dispatch(
        [old_low, new_high, old_high], {"q1": (SETTINGS, MEMBERS[:1])}, pool, w.Round()
    )
    assert [c.item_id for c in chosen] == ["wi_3"]


def test_strategies_and_ties_to_idle_longest() -> None:
    pool = agents(A, B, C)  # A idle longest, then B, then C
    pool[A].handled, pool[B].handled, pool[C].handled = 5, 1, 1
    assert w.choose_agent(item(), QueueStrategy.LONGEST_IDLE, MEMBERS, pool).agent_id == A
    assert w.choose_agent(item(), QueueStrategy.RING_ALL, MEMBERS, pool).agent_id == A
    assert w.choose_agent(item(), QueueStrategy.FEWEST_CALLS, MEMBERS, pool).agent_id == B
    assert (
        w.choose_agent(item(), QueueStrategy.ROUND_ROBIN, MEMBERS, pool, last_offered=A).agent_id
        == B
    )
    assert (
        w.choose_agent(item(), QueueStrategy.ROUND_ROBIN, MEMBERS, pool, last_offered=C).agent_id
        == A
    )
    memory = w.Round()
    rr = QueueSettings(strategy=QueueStrategy.ROUND_ROBIN)
    chosen = w.dispatch(
        [item(n) for n in range(1, 5)], {"q1": (rr, MEMBERS)}, agents(A, B, C), memory
    )
    assert [c.agent_id for c in chosen] == [A, B, C, A]


def test_tiers_lower_first() -> None:
    members = (QueueMember(A, tier_level=2), QueueMember(B, tier_level=1))
    pool = agents(A, B)
    assert w.choose_agent(item(), QueueStrategy.LONGEST_IDLE, members, pool).agent_id == B
    pool[B].load = 10
    assert w.choose_agent(item(), QueueStrategy.LONGEST_IDLE, members, pool).agent_id == A


def test_fallback_queue_after_overflow_time() -> None:
    settings = replace(SETTINGS, work_overflow_sec=60, work_fallback_queue_id="q_2")
    one = item()
    assert w.next_deadline(one, settings) == T0 + timedelta(seconds=60)
    assert w.due(one, settings, T0 + timedelta(seconds=59)) is None
    assert w.due(one, settings, T0 + timedelta(seconds=60)) is w.Due.OVERFLOW
    moved = w.move(replace(one, declined_by=(A,)), "q_2", T0 + timedelta(seconds=60))
    assert (
        moved.queue_id == "q_2" and moved.declined_by == () and moved.expires_at == one.expires_at
    )
    assert w.due(one, SETTINGS, T0 + timedelta(hours=0.5)) is None  # no fallback: waits


def test_ttl_cancels_with_the_reason() -> None:
    one = item()
    reserved, _ = w.offer(
        one, A, "wio_1", SETTINGS, T0 + timedelta(minutes=59, seconds=50), reset=False
    )
    assert w.due(reserved, SETTINGS, T0 + timedelta(hours=1)) is w.Due.TTL
    canceled = w.cancel(one, w.TTL_REASON, T0 + timedelta(hours=1))
    assert canceled.state is w.WorkItemState.CANCELED and canceled.reason == "TTL exceeded"
    assert w.due(canceled, SETTINGS, T0 + timedelta(days=2)) is None
    with pytest.raises(Conflict):
        w.cancel(canceled, "again", T0)


def test_queue_settings_for_work_items_are_checked() -> None:
    check_settings(QueueSettings(work_fallback_queue_id="q_01jf0000000000000000000000"))
    for bad in (
        QueueSettings(work_offer_timeout_sec=0),
        QueueSettings(work_ttl_sec=10),
        QueueSettings(work_fallback_queue_id="usr_x"),
    ):
        with pytest.raises(InvalidInput):
            check_settings(bad)
