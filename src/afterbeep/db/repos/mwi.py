"""Message-waiting SQL: a mailbox's counts, the registered contacts that show them, and the
`message-summary` subscriptions. One short transaction per call.

`targets_of_mailbox` runs at every deposit (on the call process's loop): its two selects are
built once with bound parameters and share one direct read (`Database.begin_direct`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, insert, select, update

from afterbeep.db import tables as t
from afterbeep.db.engine import Database
from afterbeep.domain.messages import Folder
from afterbeep.domain.mwi import DeviceContact, Subscription, WaitingCounts

_M = t.messages.c
_U = t.users.c
_R = t.registrations.c
_D = t.devices.c
_S = t.mwi_subscriptions.c


def _subscription(row: Any) -> Subscription:
    return Subscription(
        id=row.id,
        account_id=row.account_id,
        device_id=row.device_id,
        mailbox_id=row.mailbox_id,
        message_account=row.message_account,
        call_id=row.call_id,
        local_tag=row.local_tag,
        remote_tag=row.remote_tag,
        local_uri=row.local_uri,
        remote_uri=row.remote_uri,
        remote_target=row.remote_target,
        route_set=tuple(row.route_set or ()),
        local_seq=row.local_seq,
        remote_seq=row.remote_seq,
        source_host=row.source_host,
        source_port=row.source_port,
        transport=row.transport,
        expires_at=row.expires_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _contacts_select() -> Any:
    return (
        select(
            _R.account_id,
            _R.device_id,
            _U.voicemail_id,
            _U.username,
            _R.contact,
            _R.path,
            _R.source_host,
            _R.source_port,
            _R.transport,
        )
        .join(t.users, _U.id == _R.user_id)
        .where(_R.expires_at > bindparam("now"), _U.voicemail_id.is_not(None))
        .order_by(_R.device_id, _R.contact)
    )


_CONTACTS_OF_MAILBOX = _contacts_select().where(
    _R.account_id == bindparam("account_id"), _U.voicemail_id == bindparam("mailbox_id")
)
_SUBSCRIPTIONS_OF_MAILBOX = (
    select(t.mwi_subscriptions)
    .where(
        _S.account_id == bindparam("account_id"),
        _S.mailbox_id == bindparam("mailbox_id"),
        _S.expires_at > bindparam("now"),
    )
    .order_by(_S.id)
)


class SqlMwiStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def counts(self, account_id: str, mailbox_id: str) -> WaitingCounts:
        urgent = _M.folder == Folder.URGENT.value
        query = select(
            func.coalesce(func.sum(case((_M.read.is_(False), 1), else_=0)), 0),
            func.coalesce(func.sum(case((_M.read.is_(True), 1), else_=0)), 0),
            func.coalesce(func.sum(case((and_(urgent, _M.read.is_(False)), 1), else_=0)), 0),
            func.coalesce(func.sum(case((and_(urgent, _M.read.is_(True)), 1), else_=0)), 0),
        ).where(_M.account_id == account_id, _M.mailbox_id == mailbox_id, _M.deleted_at.is_(None))
        async with self._db.begin(readonly=True) as conn:
            new, old, urgent_new, urgent_old = (await conn.execute(query)).one()
        return WaitingCounts(int(new), int(old), int(urgent_new), int(urgent_old))

    def _contacts_query(self, now: datetime) -> Any:
        return _contacts_select().params(now=now)

    @staticmethod
    def _contact(row: Any) -> DeviceContact:
        return DeviceContact(
            account_id=row.account_id,
            device_id=row.device_id,
            mailbox_id=row.voicemail_id,
            username=row.username,
            contact=row.contact,
            path=tuple(row.path or ()),
            source_host=row.source_host,
            source_port=row.source_port,
            transport=row.transport,
        )

    async def contacts_of_mailbox(
        self, account_id: str, mailbox_id: str, now: datetime
    ) -> list[DeviceContact]:
        params = {"account_id": account_id, "mailbox_id": mailbox_id, "now": now}
        async with self._db.begin(readonly=True) as conn:
            rows = (await conn.execute(_CONTACTS_OF_MAILBOX, params)).all()
        return [self._contact(row) for row in rows]

    async def targets_of_mailbox(
        self, account_id: str, mailbox_id: str, now: datetime, *, contacts: bool = True
    ) -> tuple[list[Subscription], list[DeviceContact]]:
        """The live subscriptions to the mailbox and (`contacts`) the registered contacts of
        its user's devices, in one read."""
        params = {"account_id": account_id, "mailbox_id": mailbox_id, "now": now}
        async with self._db.begin_direct(readonly=True) as conn:
            sub_rows = (await conn.execute(_SUBSCRIPTIONS_OF_MAILBOX, params)).all()
            contact_rows = (
                (await conn.execute(_CONTACTS_OF_MAILBOX, params)).all() if contacts else []
            )
        return [_subscription(row) for row in sub_rows], [self._contact(r) for r in contact_rows]

    async def contacts_of_device(self, device_id: str, now: datetime) -> list[DeviceContact]:
        query = self._contacts_query(now).where(_R.device_id == device_id)
        async with self._db.begin(readonly=True) as conn:
            return [self._contact(row) for row in (await conn.execute(query)).all()]

    async def watched_mailboxes(self, now: datetime) -> set[tuple[str, str]]:
        """(account, mailbox) of every registered device's user and every live subscription."""
        registered = (
            select(_R.account_id, _U.voicemail_id)
            .join(t.users, _U.id == _R.user_id)
            .where(_R.expires_at > now, _U.voicemail_id.is_not(None))
            .distinct()
        )
        subscribed = select(_S.account_id, _S.mailbox_id).where(_S.expires_at > now).distinct()
        async with self._db.begin(readonly=True) as conn:
            found = {(a, m) for a, m in (await conn.execute(registered)).all()}
            found |= {(a, m) for a, m in (await conn.execute(subscribed)).all()}
        return found

    async def device_mailbox(self, device_id: str) -> tuple[str, str, str] | None:
        """(account, mailbox, username) of the device's user; None without a mailbox."""
        query = (
            select(_U.account_id, _U.voicemail_id, _U.username)
            .join(t.devices, _D.user_id == _U.id)
            .where(_D.id == device_id, _U.voicemail_id.is_not(None))
        )
        async with self._db.begin(readonly=True) as conn:
            row = (await conn.execute(query)).first()
        return (row[0], row[1], row[2]) if row is not None else None

    async def subscriptions_of_mailbox(
        self, account_id: str, mailbox_id: str, now: datetime
    ) -> list[Subscription]:
        params = {"account_id": account_id, "mailbox_id": mailbox_id, "now": now}
        async with self._db.begin(readonly=True) as conn:
            rows = (await conn.execute(_SUBSCRIPTIONS_OF_MAILBOX, params)).all()
        return [_subscription(row) for row in rows]

    async def subscribed_devices(self, device_ids: Sequence[str], now: datetime) -> set[str]:
        if not device_ids:
            return set()
        query = select(_S.device_id).where(_S.device_id.in_(list(device_ids)), _S.expires_at > now)
        async with self._db.begin(readonly=True) as conn:
            return {row[0] for row in (await conn.execute(query)).all()}

    async def subscription(self, call_id: str, local_tag: str) -> Subscription | None:
        query = select(t.mwi_subscriptions).where(_S.call_id == call_id, _S.local_tag == local_tag)
        async with self._db.begin(readonly=True) as conn:
            row = (await conn.execute(query)).first()
        return _subscription(row) if row is not None else None

    async def add(self, sub: Subscription) -> None:
        values = {
            "id": sub.id,
            "account_id": sub.account_id,
            "device_id": sub.device_id,
            "mailbox_id": sub.mailbox_id,
            "message_account": sub.message_account,
            "call_id": sub.call_id,
            "local_tag": sub.local_tag,
            "remote_tag": sub.remote_tag,
            "local_uri": sub.local_uri,
            "remote_uri": sub.remote_uri,
            "remote_target": sub.remote_target,
            "route_set": list(sub.route_set),
            "local_seq": sub.local_seq,
            "remote_seq": sub.remote_seq,
            "source_host": sub.source_host,
            "source_port": sub.source_port,
            "transport": sub.transport,
            "expires_at": sub.expires_at,
            "created_at": sub.created_at,
            "updated_at": sub.updated_at,
        }
        async with self._db.begin() as conn:
            await conn.execute(insert(t.mwi_subscriptions).values(values))

    async def refresh(
        self,
        sub_id: str,
        *,
        expires_at: datetime,
        remote_seq: int,
        remote_target: str,
        source: tuple[str, int, str],
        now: datetime,
    ) -> None:
        host, port, transport = source
        async with self._db.begin() as conn:
            await conn.execute(
                update(t.mwi_subscriptions)
                .where(_S.id == sub_id)
                .values(
                    expires_at=expires_at,
                    remote_seq=remote_seq,
                    remote_target=remote_target,
                    source_host=host,
                    source_port=port,
                    transport=transport,
                    updated_at=now,
                )
            )

    async def next_seq(self, sub_id: str) -> int | None:
        """Take the CSeq of the subscription's next NOTIFY; None when it is gone."""
        async with self._db.begin() as conn:
            await conn.execute(
                update(t.mwi_subscriptions)
                .where(_S.id == sub_id)
                .values(local_seq=_S.local_seq + 1)
            )
            row = (await conn.execute(select(_S.local_seq).where(_S.id == sub_id))).first()
        return int(row[0]) if row is not None else None

    async def remove(self, sub_id: str) -> None:
        async with self._db.begin() as conn:
            await conn.execute(delete(t.mwi_subscriptions).where(_S.id == sub_id))

    async def reap(self, now: datetime) -> int:
        async with self._db.begin() as conn:
            result = await conn.execute(delete(t.mwi_subscriptions).where(_S.expires_at <= now))
        return int(result.rowcount or 0)
