"""The look-ups every call or deposit makes, built once with bound parameters (issue 24: building
a select cost more than running it): each answers for the values of its own call, not for the
first call's, on both backends."""

from __future__ import annotations

from afterbeep.app import Runtime
from afterbeep.domain.ids import new_id
from afterbeep.domain.numbers import DestKind, Number
from afterbeep.domain.users import User
from afterbeep.services.mailboxes import MailboxService


async def account_and_mailbox(rt: Runtime) -> tuple[str, str]:
    issued = await rt.accounts.create_account("Acme")
    assert rt.store is not None
    view = await MailboxService(rt.uow, rt.store, rt.clock).create(
        issued.account_id, {"name": "Desk", "min_message_seconds": 1}
    )
    return issued.account_id, view.mailbox.id


async def test_each_look_up_answers_for_its_own_values(runtime: Runtime) -> None:
    rt = runtime
    now = rt.clock.now()
    boxes = [await account_and_mailbox(rt) for _ in range(2)]
    async with rt.uow() as uow:
        for n, (account_id, mailbox_id) in enumerate(boxes):
            number = Number(
                id=new_id("num"), account_id=account_id, e164=f"+1202555010{n}",
                dest_kind=DestKind.VOICEMAIL, dest_id=mailbox_id, schedule_id=None,
                closed_dest_kind=None, closed_dest_id=None, created_at=now, updated_at=now,
            )  # fmt: skip
            assert await uow.numbers.add(number)
            user = User(
                id=new_id("usr"), account_id=account_id, username=f"20{n}", display_name="Desk",
                created_at=now, updated_at=now, voicemail_id=mailbox_id,
            )  # fmt: skip
            await uow.users.add(user)
        assert await uow.notifications.mark_full_notified(*boxes[1], now)

    async with rt.uow() as uow:
        for n, (account_id, mailbox_id) in enumerate(boxes):
            found = await uow.numbers.by_e164(f"+1202555010{n}")
            assert found is not None and found.dest_id == mailbox_id
            assert await uow.users.extension_of(account_id, mailbox_id) == f"20{n}"
            mailbox = await uow.mailboxes.get(account_id, mailbox_id)
            assert mailbox is not None and mailbox.id == mailbox_id
            other_account = boxes[1 - n][0]
            assert await uow.mailboxes.get(other_account, mailbox_id) is None
            assert await uow.users.extension_of(other_account, mailbox_id) is None
        assert await uow.numbers.by_e164("+12025550199") is None
        assert not await uow.notifications.clear_full_notified(*boxes[0])  # never marked
        assert not await uow.notifications.clear_full_notified(boxes[0][0], boxes[1][1])
        assert await uow.notifications.clear_full_notified(*boxes[1])
        assert not await uow.notifications.clear_full_notified(*boxes[1])  # already cleared
