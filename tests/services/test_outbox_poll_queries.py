"""The outbox poll (claim due rows, load them, release, when next) runs statements built once with
bound parameters, as the per-call look-ups do (`test_per_call_queries.py`): the same statement
objects from one poll to the next, each answering for its own poll's values, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection

from afterbeep.app import Runtime
from afterbeep.domain.ids import new_id
from afterbeep.services.ports.notifications import (
    Notification,
    NotificationKind,
    NotificationStatus,
)
from tests.services.test_per_call_queries import account_and_mailbox


@contextmanager
def executed(rt: Runtime) -> Iterator[list[Any]]:
    """The statement objects run on the runtime's engine meanwhile."""
    seen: list[Any] = []

    def before_execute(conn: Connection, clause: Any, *args: Any) -> None:
        seen.append(clause)

    engine = rt.db.engine.sync_engine
    event.listen(engine, "before_execute", before_execute)
    try:
        yield seen
    finally:
        event.remove(engine, "before_execute", before_execute)


def notice(account_id: str, mailbox_id: str, due: datetime) -> Notification:
    return Notification(
        id=new_id("ntf"), account_id=account_id, kind=NotificationKind.MAILBOX_FULL,
        mailbox_id=mailbox_id, message_id=None, dedupe_key=new_id("ntf"), to_addr="a@example.com",
        status=NotificationStatus.PENDING, attempts=0, next_attempt_at=due, last_error=None,
        created_at=due, updated_at=due,
    )  # fmt: skip


async def poll(rt: Runtime, now: datetime, lease: timedelta) -> tuple[list[str], datetime | None]:
    async with rt.uow() as uow:
        claimed = await uow.notifications.claim_due(now, now + lease, 10)
        await uow.notifications.release(claimed[1:])  # all but the first go back
        await uow.webhooks.claim_due(now, now + lease, 10)
        return [c.notification.id for c in claimed], await uow.notifications.next_wakeup()


async def test_each_poll_runs_the_same_statements_for_its_own_values(runtime: Runtime) -> None:
    rt = runtime
    now = rt.clock.now()
    account_id, mailbox_id = await account_and_mailbox(rt)
    due = [now - timedelta(seconds=30), now - timedelta(seconds=20), now + timedelta(seconds=60)]
    rows = [notice(account_id, mailbox_id, at) for at in due]
    async with rt.uow() as uow:
        for row in rows:
            assert await uow.notifications.enqueue(row)
    lease = timedelta(seconds=5)

    with executed(rt) as first:
        claimed, wake = await poll(rt, now, lease)
    assert claimed == [rows[0].id, rows[1].id]  # due, oldest first; the third is not yet
    assert wake == due[1]  # the second was released: claimable again at once

    with executed(rt) as second:
        claimed, wake = await poll(rt, now + timedelta(seconds=1), lease)
    assert claimed == [rows[1].id]  # the first is still leased
    assert wake == now + lease  # the first one's lease ends first

    with executed(rt) as third:
        claimed, _ = await poll(rt, now + timedelta(seconds=61), lease)
    assert claimed == [rows[0].id, rows[1].id, rows[2].id]  # leases over, the third due

    # later polls ran the very statement objects of the first (the lists keep them alive)
    assert len(first) == 6  # claim (select, update), load, release, webhooks' claim, next
    assert all(any(s is f for f in first) for s in second + third)
