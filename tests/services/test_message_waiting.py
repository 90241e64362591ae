"""Every service path that changes a mailbox's messages tells the message-waiting port (the
phone menu deletes, marks read and files through the same `MessageService` calls), and the SQL
behind the notifier (`SqlMwiStore`) on both backends: counts, the registered contacts of a
mailbox's users, subscriptions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from afterbeep.app import Runtime
from afterbeep.audio.rendition import write_wav
from afterbeep.db.repos.mwi import SqlMwiStore
from afterbeep.domain.ids import new_id
from afterbeep.domain.messages import Folder, RecordedCall
from afterbeep.domain.mwi import Subscription, WaitingCounts
from afterbeep.domain.users import Device, Registration, User
from afterbeep.services.deposits import DepositService
from afterbeep.services.mailboxes import MailboxService
from afterbeep.services.messages import UNDO_SECONDS, MessageService


class FakeClock:
    def __init__(self) -> None:
        self._now = datetime.now(UTC).replace(microsecond=0)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


@dataclass
class Recorder:
    changes: list[tuple[str, str]] = field(default_factory=list)

    def mailbox_changed(self, account_id: str, mailbox_id: str) -> None:
        self.changes.append((account_id, mailbox_id))


async def account_and_mailbox(rt: Runtime) -> tuple[str, str]:
    issued = await rt.accounts.create_account("Acme")
    assert rt.store is not None
    view = await MailboxService(rt.uow, rt.store, rt.clock).create(
        issued.account_id, {"name": "Desk", "min_message_seconds": 1}
    )
    return issued.account_id, view.mailbox.id


async def test_every_change_of_messages_tells_the_port(runtime: Runtime, tmp_path: Path) -> None:
    rt = runtime
    assert rt.store is not None
    account_id, mailbox_id = await account_and_mailbox(rt)
    port, clock, counts = Recorder(), FakeClock(), SqlMwiStore(rt.db)
    messages = MessageService(rt.uow, rt.store, clock, message_waiting=port)
    wav = tmp_path / "m.wav"
    write_wav(wav, np.full(8000, 500, dtype=np.int16))
    told = [(account_id, mailbox_id)]

    stored = []
    for n in range(2):
        stored.append(
            await messages.store_message(
                account_id=account_id, mailbox_id=mailbox_id, call_id=f"call-{n}", caller=None,
                caller_name=None, callee=None, wav_path=wav, duration_ms=1000,
            )
        )  # fmt: skip
    assert port.changes == told * 2
    assert await counts.counts(account_id, mailbox_id) == WaitingCounts(2, 0)

    first, second = stored
    await messages.update(account_id, first.id, read=True)  # listened to (API PATCH, menu 1)
    assert port.changes == told * 3
    assert await counts.counts(account_id, mailbox_id) == WaitingCounts(1, 1)
    await messages.update(account_id, first.id, read=True)  # no change: not told
    assert port.changes == told * 3
    await messages.update(account_id, second.id, folder=Folder.URGENT)  # filed (menu 9)
    assert port.changes == told * 4
    assert await counts.counts(account_id, mailbox_id) == WaitingCounts(1, 1, 1, 0)

    await messages.trash(account_id, second.id)  # deleted, undoable (web inbox, menu 7)
    assert port.changes == told * 5
    assert await counts.counts(account_id, mailbox_id) == WaitingCounts(0, 1)
    await messages.restore(account_id, second.id)
    assert port.changes == told * 6
    assert await counts.counts(account_id, mailbox_id) == WaitingCounts(1, 1, 1, 0)
    await messages.trash(account_id, second.id)
    clock.advance(UNDO_SECONDS + 1)
    assert await messages.purge_trashed() == 1  # expiry of the deleted ones
    assert port.changes == told * 8

    await messages.delete(account_id, first.id)  # API DELETE
    assert port.changes == told * 9
    assert await counts.counts(account_id, mailbox_id) == WaitingCounts(0, 0)


async def test_a_deposit_tells_the_port(runtime: Runtime, tmp_path: Path) -> None:
    rt = runtime
    assert rt.store is not None
    account_id, mailbox_id = await account_and_mailbox(rt)
    port = Recorder()
    deposits = DepositService(
        rt.uow, rt.store, rt.clock, public_url="http://afterbeep.test",
        secret_key=b"k" * 32, tmp_dir=tmp_path, message_waiting=port,
    )  # fmt: skip
    meta = RecordedCall(
        call_id="call-deposit", account_id=account_id, mailbox_id=mailbox_id,
        caller="+12025550123", caller_name=None, callee=None,
        started_at=rt.clock.now().isoformat(), ended_by="hangup",
    )  # fmt: skip
    pcm = np.full(16000, 3000, dtype=np.int16)
    assert await deposits.finalize(meta, pcm, recovered=False) is not None
    assert port.changes == [(account_id, mailbox_id)]


async def test_the_store_finds_contacts_and_keeps_subscriptions(runtime: Runtime) -> None:
    rt = runtime
    account_id, mailbox_id = await account_and_mailbox(rt)
    store, now = SqlMwiStore(rt.db), rt.clock.now()
    user = User(
        id=new_id("usr"), account_id=account_id, username="201", display_name="Desk",
        created_at=now, updated_at=now, voicemail_id=mailbox_id,
    )  # fmt: skip
    device = Device(
        id=new_id("dev"), account_id=account_id, user_id=user.id, auth_username="desk-201",
        realm="afterbeep", ha1_md5="0" * 32, ha1_sha256="0" * 64, created_at=now, updated_at=now,
    )  # fmt: skip
    async with rt.uow() as uow:
        await uow.users.add(user)
        await uow.devices.add(device)
        for port, expires in ((5070, 600), (5072, -1)):  # one live, one expired
            await uow.registrations.put(
                Registration(
                    id=new_id("reg"), account_id=account_id, device_id=device.id,
                    user_id=user.id, contact=f"sip:desk@10.0.0.9:{port}",
                    expires_at=now + timedelta(seconds=expires), source_host="127.0.0.1",
                    source_port=port, transport="udp", path=("<sip:edge;lr>",),
                    created_at=now, updated_at=now,
                )
            )  # fmt: skip

    [contact] = await store.contacts_of_mailbox(account_id, mailbox_id, now)
    assert (contact.device_id, contact.username, contact.contact) == (
        device.id, "201", "sip:desk@10.0.0.9:5070",
    )  # fmt: skip
    assert contact.path == ("<sip:edge;lr>",) and contact.source_port == 5070
    assert await store.contacts_of_device(device.id, now) == [contact]
    assert await store.device_mailbox(device.id) == (account_id, mailbox_id, "201")
    assert await store.watched_mailboxes(now) >= {(account_id, mailbox_id)}

    sub = Subscription(
        id=new_id("mwi"), account_id=account_id, device_id=device.id, mailbox_id=mailbox_id,
        message_account="sip:201@127.0.0.1", call_id="c1@10.0.0.9", local_tag="ours",
        remote_tag="theirs", local_uri="<sip:201@h>", remote_uri="<sip:desk@h>",
        remote_target="sip:desk@10.0.0.9:5070", route_set=("<sip:p1;lr>",), local_seq=0,
        remote_seq=1, source_host="127.0.0.1", source_port=5070, transport="udp",
        expires_at=now + timedelta(seconds=600), created_at=now, updated_at=now,
    )  # fmt: skip
    await store.add(sub)
    assert await store.subscription("c1@10.0.0.9", "ours") == sub
    assert await store.subscriptions_of_mailbox(account_id, mailbox_id, now) == [sub]
    assert await store.targets_of_mailbox(account_id, mailbox_id, now) == ([sub], [contact])
    assert await store.targets_of_mailbox(account_id, mailbox_id, now, contacts=False) == (
        [sub], [],
    )  # fmt: skip
    assert await store.targets_of_mailbox(account_id, "vm_other", now) == ([], [])
    later_still = now + timedelta(seconds=700)  # both expired
    assert await store.targets_of_mailbox(account_id, mailbox_id, later_still) == ([], [])
    assert [await store.next_seq(sub.id) for _ in range(2)] == [1, 2]
    later = now + timedelta(seconds=900)
    await store.refresh(
        sub.id, expires_at=later, remote_seq=2, remote_target="sip:desk@10.0.0.9:5080",
        source=("127.0.0.1", 5080, "udp"), now=now,
    )  # fmt: skip
    found = await store.subscription("c1@10.0.0.9", "ours")
    assert found is not None and found.expires_at == later and found.local_seq == 2
    assert (found.remote_seq, found.source_port) == (2, 5080)
    assert await store.reap(now) == 0
    assert await store.reap(later) == 1
    assert await store.next_seq(sub.id) is None
