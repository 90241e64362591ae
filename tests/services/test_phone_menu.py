"""PhoneMenuService on both backends with a fake clock: the PIN under the lockout (per caller,
growing, the owner emailed through a real SMTP server and `mailbox.pin_locked` published), and
what the menu does to messages and greetings through the services."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import pytest
from argon2 import PasswordHasher

from afterbeep.audio.rendition import read_wav_pcm
from afterbeep.domain.ids import new_id
from afterbeep.domain.mailboxes import Mailbox
from afterbeep.domain.messages import Folder
from afterbeep.domain.users import User
from afterbeep.services import mailboxes
from afterbeep.services.mailboxes import MailboxService
from afterbeep.services.phone_menu import PhoneMenuService, PinCheck
from afterbeep.services.ports.notifications import NotificationKind
from afterbeep.telephony.interface import EndedBy
from tests.conftest import Backend
from tests.fixtures.smtp import smtp_server
from tests.services.test_deposits import OWNER, Rig, open_rig, speech

PIN = "4826"
BOB = "bob@clinic.example"
CALLER = "tel:+12025550123"


@pytest.fixture(autouse=True)
def cheap_pin_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its smallest cost for this file's PINs: it checks one some sixty times, for
    the lockout's counting, and at the product's cost each check takes a quarter of a CPU
    second. A wrong PIN is still refused by Argon2 and the right one accepted; how the PIN is
    stored is tests/api/test_mailboxes.py's (with the product's hasher)."""
    monkeypatch.setattr(
        mailboxes, "PasswordHasher", partial(PasswordHasher, time_cost=1, memory_cost=8, parallelism=1)
    )


@dataclass
class Env:
    rig: Rig
    menu: PhoneMenuService
    mailbox: Mailbox


@contextlib.asynccontextmanager
async def open_env(backend: Backend, smtp_url: str) -> AsyncIterator[Env]:
    async with open_rig(backend, smtp_url) as rig:
        mailboxes = MailboxService(rig.rt.uow, rig.store, rig.clock)
        mailbox_id = await rig.mailbox()
        await mailboxes.set_pin(rig.account_id, mailbox_id, PIN)
        menu = rig.rt.phone_menu_service()
        mailbox = await menu.mailbox(rig.account_id, mailbox_id)
        assert mailbox is not None
        yield Env(rig, menu, mailbox)


async def test_wrong_pins_lock_per_caller_with_a_growing_delay_and_the_owner_is_told(
    backend: Backend,
) -> None:
    with smtp_server() as smtp:
        async with open_env(backend, smtp.url()) as env:
            rig, menu, box = env.rig, env.menu, env.mailbox
            await rig.webhook("mailbox.pin_locked")
            for _ in range(4):
                assert await menu.check_pin(box, CALLER, "1111") is PinCheck.WRONG
            assert await menu.check_pin(box, CALLER, "1111") is PinCheck.LOCKED
            # locked: even the right PIN is not checked, from this caller
            assert await menu.locked(box, CALLER)
            assert await menu.check_pin(box, CALLER, PIN) is PinCheck.LOCKED
            assert not await menu.locked(box, "tel:+33100000000")

            [notice] = [n for n in await rig.outbox() if n.kind is NotificationKind.PIN_LOCKED]
            assert notice.to_addr == OWNER and notice.mailbox_id == box.id
            assert await rig.emails.run_once() == 1
            [mail] = smtp.messages()
            assert "locked" in str(mail.message["Subject"]) and mail.rcpt_tos == [OWNER]
            [(event, data)] = await rig.webhook_events()
            assert event == "mailbox.pin_locked" and data["mailbox_id"] == box.id

            # the first lock lasts 5 minutes (the default); the next one 10
            rig.clock.advance(299)
            assert await menu.locked(box, CALLER)
            rig.clock.advance(1)
            for _ in range(4):
                assert await menu.check_pin(box, CALLER, "2222") is PinCheck.WRONG
            assert await menu.check_pin(box, CALLER, "2222") is PinCheck.LOCKED
            rig.clock.advance(599)
            assert await menu.locked(box, CALLER)
            rig.clock.advance(1)
            assert await menu.check_pin(box, CALLER, PIN) is PinCheck.OK
            # a right PIN starts over
            assert await menu.check_pin(box, CALLER, "3333") is PinCheck.WRONG
            assert len([n for n in await rig.outbox() if n.kind is NotificationKind.PIN_LOCKED]) == 2


async def test_many_callers_together_lock_the_mailbox(backend: Backend) -> None:
    async with open_env(backend, "smtp://127.0.0.1:9") as env:
        menu, box = env.menu, env.mailbox
        for caller in range(19):
            assert await menu.check_pin(box, f"tel:+1202555{caller:04d}", "1111") is PinCheck.WRONG
        assert await menu.check_pin(box, "tel:+12025559999", "1111") is PinCheck.LOCKED
        assert await menu.locked(box, "tel:+12025558888")  # every caller now


async def test_messages_greetings_and_pin_through_the_services(backend: Backend) -> None:
    async with open_env(backend, "smtp://127.0.0.1:9") as env:
        rig, menu, box = env.rig, env.menu, env.mailbox
        other_id = await rig.mailbox(name="Bob", notify_email=BOB)
        async with rig.rt.uow() as uow:
            now = rig.clock.now()
            bob = User(new_id("usr"), rig.account_id, "202", "Bob", now, now, other_id)
            await uow.users.add(bob)
        first = await rig.finalize(rig.entry(box.id, speech(2.0, seed=3), EndedBy.HANGUP))
        rig.clock.advance(5)
        second = await rig.finalize(rig.entry(box.id, speech(2.0, seed=4), EndedBy.HANGUP))
        assert first is not None and second is not None
        await menu.mark_read(rig.account_id, first.id)

        listed = await menu.messages(box)
        assert [m.id for m in listed] == [second.id, first.id]  # unread first
        audio = await menu.audio(rig.account_id, second.id)
        stored, _ = read_wav_pcm(await rig.store.get_bytes(second.audio_key))
        assert np.array_equal(audio, stored)

        await menu.move(rig.account_id, second.id, Folder.URGENT)
        assert await menu.forward(box, first.id, "202")
        assert not await menu.forward(box, first.id, "999")
        other = await menu.mailbox(rig.account_id, other_id)
        assert other is not None
        [copy] = await menu.messages(other)
        assert copy.duration_ms == first.duration_ms and copy.caller == first.caller
        # Bob is told of the copy as of a deposit: the new-message email, queued once
        [email] = [n for n in await rig.outbox() if n.to_addr == BOB]
        assert email.kind is NotificationKind.NEW_MESSAGE
        assert (email.mailbox_id, email.message_id) == (other_id, copy.id)
        assert await menu.forward(box, first.id, "202")  # the same copy again: no second email
        assert [n.message_id for n in await rig.outbox() if n.to_addr == BOB] == [copy.id]
        await menu.delete(rig.account_id, [first.id, "msg_gone"])
        left = {m.id: m for m in await menu.messages(box)}
        assert list(left) == [second.id] and left[second.id].folder is Folder.URGENT

        box = await menu.save_greeting(box, "busy_greeting_media_id", speech(1.5, seed=5))
        assert box.busy_greeting_media_id is not None
        box = await menu.save_greeting(box, "name_media_id", speech(0.8, seed=6))
        assert box.name_media_id is not None
        box = await menu.remove_greeting(box, "busy_greeting_media_id")
        assert box.busy_greeting_media_id is None and box.name_media_id is not None

        await menu.change_pin(box, "7391")
        assert await menu.check_pin(box, CALLER, "7391") is PinCheck.OK
        assert await menu.check_pin(box, CALLER, PIN) is PinCheck.WRONG
