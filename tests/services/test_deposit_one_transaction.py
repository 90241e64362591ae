"""A deposit's row, its `message.created` event and its owner's email are written in one
transaction; when queueing the email fails, the message is stored alone all the same, and the
retry queues its one email."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from afterbeep.db import tables as t
from afterbeep.db.repos.notifications import SqlNotificationRepo
from afterbeep.services.ports.notifications import NotificationKind
from afterbeep.telephony.interface import EndedBy
from tests.services.test_deposits import Rig, rig, said_then_silence, smtp  # noqa: F401


class OutboxDown(Exception):
    pass


async def test_a_failed_email_queue_keeps_the_message_and_the_retry_queues_one_email(
    rig: Rig,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mailbox_id = await rig.mailbox()
    await rig.webhook("message.created")
    entry = rig.entry(mailbox_id, said_then_silence(2.0, 1.0), EndedBy.HANGUP)
    real = SqlNotificationRepo.enqueue

    async def failing(self: SqlNotificationRepo, *args: Any, **kwargs: Any) -> bool:
        raise OutboxDown

    monkeypatch.setattr(SqlNotificationRepo, "enqueue", failing)
    with pytest.raises(OutboxDown):
        await rig.finalize(entry)  # the spool entry stays for a retry...
    [kept] = await rig.messages()  # ...but the message is there
    assert await rig.outbox() == []
    assert [event for event, _ in await rig.webhook_events()] == ["message.created"]

    monkeypatch.setattr(SqlNotificationRepo, "enqueue", real)
    message = await rig.finalize(entry)
    assert message == kept
    assert [m.id for m in await rig.messages()] == [message.id]
    assert [(n.kind, n.message_id) for n in await rig.outbox()] == [
        (NotificationKind.NEW_MESSAGE, message.id)
    ]
    assert [event for event, _ in await rig.webhook_events()] == ["message.created"]
    assert await rig.finalize(entry) == message  # and again: nothing more
    assert len(await rig.outbox()) == 1


async def test_the_email_is_queued_in_the_transaction_that_adds_the_row(
    rig: Rig,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mailbox_id = await rig.mailbox()
    entry = rig.entry(mailbox_id, said_then_silence(2.0, 1.0), EndedBy.HANGUP)
    seen: list[tuple[int, int]] = []  # (messages, emails) visible to the enqueueing transaction
    real = SqlNotificationRepo.enqueue

    async def watching(self: SqlNotificationRepo, *args: Any, **kwargs: Any) -> bool:
        # Another connection, reading: it sees only committed rows.
        async with rig.rt.db.begin(readonly=True) as conn:
            messages = (await conn.execute(select(func.count()).select_from(t.messages))).scalar()
            emails = (await conn.execute(select(func.count()).select_from(t.email_outbox))).scalar()
        seen.append((int(messages or 0), int(emails or 0)))
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(SqlNotificationRepo, "enqueue", watching)
    message = await rig.finalize(entry)
    assert message is not None
    assert seen == [(0, 0)]  # the row was not committed before its email was queued
    assert len(await rig.outbox()) == 1 and len(await rig.messages()) == 1
