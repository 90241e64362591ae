"""The work router over a real database (SQLite) with an injected clock: offer, decline,
timeout, all-declined, fallback queue, TTL, capacity and weight, capacity shared with a live
queue call, priority, events committed to the webhook outbox, and a restart that re-offers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from afterbeep.app import Runtime
from afterbeep.config import Settings
from afterbeep.db import tables as t
from afterbeep.domain.ids import new_id
from afterbeep.domain.queues import AgentState, AgentStatus, QueueMember, QueueSettings
from afterbeep.domain.work_items import OfferStatus, WorkItemState
from afterbeep.services.contact_center import Channel, WorkRequest
from afterbeep.services.work_items import WorkItemService
from tests.api.test_ring_groups import add_users

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
A, B = sorted([new_id("usr"), new_id("usr")])


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        secret_key="test-secret-" + "x" * 32,
        allow_private_networks="127.0.0.0/8",
        transcribe=False,
    )


@pytest.fixture
async def rt(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Runtime]:
    runtime = Runtime(_settings(tmp_path), clock=clock)
    await runtime.start(workers=False)
    await runtime.work_items.load()
    try:
        yield runtime
    finally:
        await runtime.stop()


class Rig:
    def __init__(self, rt: Runtime, clock: FakeClock, account_id: str) -> None:
        self.rt, self.clock, self.account_id = rt, clock, account_id
        self.svc = rt.api_services()
        self.work: WorkItemService = rt.work_items

    async def queue(self, *members: str, **settings: object) -> str:
        queue = await self.svc.queues.create(
            self.account_id,
            "Reps",
            QueueSettings(**settings),  # type: ignore[arg-type]
            [QueueMember(m) for m in members],
        )
        return queue.id

    async def available(self, *users: str) -> None:
        for user in users:
            self.clock.advance(1)  # A becomes available first: idle longest
            await self.svc.queues.set_status(self.account_id, user, AgentStatus.AVAILABLE)

    async def place(
        self, queue_id: str, channel: Channel = Channel.VOICEMAIL, priority: int = 5
    ) -> str:
        placed = await self.work.place(
            WorkRequest(self.account_id, new_id("vc"), queue_id, channel, priority)
        )
        return placed.work_item_id

    async def item(self, item_id: str):  # type: ignore[no-untyped-def]
        found, offers = await self.work.get(self.account_id, item_id)
        return found, offers

    async def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.work.run_due()

    async def webhook_events(self) -> list[str]:
        async with self.rt.db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(t.webhook_deliveries.c.event).order_by(t.webhook_deliveries.c.created_at)
                )
            ).all()
        return [r.event for r in rows]


@pytest.fixture
async def rig(rt: Runtime, clock: FakeClock) -> Rig:
    issued = await rt.accounts.create_account("Acme")
    await add_users(rt, issued.account_id, A, B)
    svc = rt.api_services()
    await svc.webhooks.create(
        issued.account_id,
        "http://127.0.0.1:9/hook",
        [
            e
            for e in (
                "work_item.offered",
                "work_item.accepted",
                "work_item.declined",
                "work_item.timed_out",
                "work_item.completed",
                "work_item.canceled",
            )
        ],
    )
    return Rig(rt, clock, issued.account_id)


async def test_offer_accept_complete_and_events_in_the_outbox(rig: Rig) -> None:
    q = await rig.queue(A, B)
    await rig.available(A, B)
    item_id = await rig.place(q)
    item, offers = await rig.item(item_id)
    assert item.state is WorkItemState.RESERVED and item.agent_id == A  # idle longest
    assert [o.status for o in offers] == [OfferStatus.PENDING]
    again = await rig.work.place(WorkRequest(rig.account_id, item.voice_call_id, q))
    assert again.work_item_id == item_id and not again.created  # idempotent
    accepted = await rig.work.accept(rig.account_id, A, offers[0].id)
    assert accepted.state is WorkItemState.ASSIGNED
    done = await rig.work.complete(rig.account_id, A, item_id, "called back")
    assert done.state is WorkItemState.COMPLETED
    assert await rig.webhook_events() == [
        "work_item.offered",
        "work_item.accepted",
        "work_item.completed",
    ]


async def test_decline_timeout_and_all_declined(rig: Rig) -> None:
    q = await rig.queue(A, B, work_offer_timeout_sec=30)
    await rig.available(A, B)
    item_id = await rig.place(q)
    item, offers = await rig.item(item_id)
    await rig.work.decline(rig.account_id, A, offers[0].id)
    item, offers = await rig.item(item_id)
    assert item.agent_id == B and item.declined_by == (A,)
    await rig.tick(29)
    assert (await rig.item(item_id))[0].agent_id == B
    await rig.tick(1)  # B let it time out: everyone declined, A again
    item, offers = await rig.item(item_id)
    assert item.state is WorkItemState.RESERVED and item.agent_id == A and item.declined_by == ()
    assert [(o.agent_id, o.status) for o in offers] == [
        (A, OfferStatus.DECLINED),
        (B, OfferStatus.TIMED_OUT),
        (A, OfferStatus.PENDING),
    ]
    assert (await rig.webhook_events()).count("work_item.timed_out") == 1


async def test_nobody_available_waits_then_overflows_then_ttl(rig: Rig) -> None:
    fallback = await rig.queue(B)
    q = await rig.queue(A, work_overflow_sec=60, work_fallback_queue_id=fallback, work_ttl_sec=600)
    item_id = await rig.place(q)
    assert (await rig.item(item_id))[0].state is WorkItemState.PENDING  # nobody available
    assert rig.work.next_deadline() == T0 + timedelta(seconds=60)
    await rig.tick(60)
    item, _ = await rig.item(item_id)
    assert item.queue_id == fallback and item.state is WorkItemState.PENDING
    await rig.tick(540)
    item, _ = await rig.item(item_id)
    assert item.state is WorkItemState.CANCELED and item.reason == "TTL exceeded"
    assert await rig.webhook_events() == ["work_item.canceled"]


async def test_fallback_queue_delivers_to_its_agent(rig: Rig) -> None:
    fallback = await rig.queue(B)
    q = await rig.queue(A, work_overflow_sec=30, work_fallback_queue_id=fallback)
    await rig.available(B)
    item_id = await rig.place(q)
    await rig.tick(30)
    item, _ = await rig.item(item_id)
    assert item.queue_id == fallback and item.agent_id == B


async def test_capacity_weight_and_priority(rig: Rig) -> None:
    q = await rig.queue(A)
    await rig.work.set_capacity(rig.account_id, A, 10)
    await rig.available(A)
    first = [await rig.place(q) for _ in range(3)]  # 3 voicemails of 3
    fourth = await rig.place(q, priority=9)
    urgent = await rig.place(q, priority=1)
    for item_id in first:
        assert (await rig.item(item_id))[0].state is WorkItemState.RESERVED
    assert (await rig.item(fourth))[0].state is WorkItemState.PENDING
    offer = rig.work.agent_offers(rig.account_id, A)[0]
    await rig.work.accept(rig.account_id, A, offer.id)
    await rig.work.complete(rig.account_id, A, offer.work_item_id, None)
    assert (await rig.item(urgent))[
        0
    ].state is WorkItemState.RESERVED  # priority 1 before the older 9
    assert (await rig.item(fourth))[0].state is WorkItemState.PENDING


async def test_capacity_is_shared_with_a_live_call(rig: Rig) -> None:
    q = await rig.queue(A, B)
    await rig.available(A, B)
    engine = rig.rt.queue_engine
    engine.floor.agent(A).state = AgentState.IN_CALL  # A is in a live queue call
    item_id = await rig.place(q)
    item, _ = await rig.item(item_id)
    assert item.agent_id == B
    assert engine.floor.agent(B).work_blocked  # B's voicemail leaves less than a call free
    assert not engine.floor.agent(B).can_take(engine.monotonic())
    await rig.work.accept(rig.account_id, B, item.offer_id or "")
    await rig.work.complete(rig.account_id, B, item_id, None)
    assert not engine.floor.agent(B).work_blocked


async def test_clear_cancels_and_voice_call_changed_updates_the_agent(rig: Rig) -> None:
    q = await rig.queue(A)
    await rig.available(A)
    item_id = await rig.place(q)
    item, _ = await rig.item(item_id)
    feed = rig.work.subscribe(rig.account_id, A)
    await rig.work.voice_call_changed(rig.account_id, item.voice_call_id)
    assert feed.get_nowait() is not None
    assert await rig.work.clear(rig.account_id, item.voice_call_id, "abandoned")
    event = feed.get_nowait()
    assert event is not None and event.event == "work_item.canceled"
    item, offers = await rig.item(item_id)
    assert item.reason == "abandoned" and offers[0].status is OfferStatus.RESCINDED
    assert not await rig.work.clear(rig.account_id, item.voice_call_id, "again")


async def test_restart_keeps_items_and_re_offers_the_one_in_flight(
    rig: Rig, tmp_path: Path, clock: FakeClock
) -> None:
    q = await rig.queue(A)
    await rig.work.set_capacity(rig.account_id, A, 3)
    await rig.available(A)
    ringing = await rig.place(q)
    waiting = await rig.place(q)
    # a second service on the same database, as after kill -9 (the first never stopped)
    after = WorkItemService(rig.rt.uow, clock)
    await after.load()
    item, offers = await after.get(rig.account_id, ringing)
    assert item.state is WorkItemState.RESERVED and item.agent_id == A
    assert [o.status for o in offers] == [OfferStatus.RESCINDED, OfferStatus.PENDING]
    assert (await after.get(rig.account_id, waiting))[0].state is WorkItemState.PENDING
    async with rig.rt.db.engine.connect() as conn:
        total = (await conn.execute(select(func.count()).select_from(t.work_items))).scalar_one()
    assert total == 2
    await after.stop()
