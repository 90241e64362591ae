"""A deposit's row, its `message.created` event and its owner's email are written in one
transaction: when queueing the email fails, no message is listed, and the retry stores one
message with one email."""

from __future__ import annotations

from typing import Any

import pytest

from afterbeep.db.repos.notifications import SqlNotificationRepo
from afterbeep.services.ports.notifications import NotificationKind
from afterbeep.telephony.interface import EndedBy
from tests.services.test_deposits import Rig, rig, said_then_silence, smtp  # noqa: F401


class OutboxDown(Exception):
    pass


async def test_a_failed_email_queue_leaves_no_message_and_the_retry_makes_one(
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
        await rig.finalize(entry)
    assert await rig.messages() == []
    assert await rig.outbox() == []
    assert await rig.webhook_events() == []

    monkeypatch.setattr(SqlNotificationRepo, "enqueue", real)
    message = await rig.finalize(entry)
    assert message is not None
    assert [m.id for m in await rig.messages()] == [message.id]
    assert [(n.kind, n.message_id) for n in await rig.outbox()] == [
        (NotificationKind.NEW_MESSAGE, message.id)
    ]
    assert [event for event, _ in await rig.webhook_events()] == ["message.created"]
    assert await rig.finalize(entry) == message  # and again: nothing more
    assert len(await rig.outbox()) == 1
