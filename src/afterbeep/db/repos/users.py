"""SQL repositories for users, devices, registrations and failed SIP authentications."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from afterbeep.db import tables as t
from afterbeep.db.repos._paging import page_query, split_page
from afterbeep.domain.users import (
    AuthFailures,
    Device,
    Forward,
    FwdKind,
    Registration,
    RingStrategy,
    Transport,
    User,
    UserStatus,
)
from afterbeep.services.ports import Page

_U = t.users
_EXTENSION_OF = (  # built once: every deposit's greeting
    select(_U.c.username)
    .where(
        _U.c.account_id == bindparam("account_id"), _U.c.voicemail_id == bindparam("mailbox_id")
    )
    .order_by(_U.c.username)
    .limit(1)
)
_D = t.devices
_R = t.registrations
_F = t.sip_auth_failures


def _forward(kind: str | None, dest_id: str | None) -> Forward | None:
    return None if kind is None else Forward(FwdKind(kind), dest_id)


def _user(row: Any) -> User:
    return User(
        id=row.id,
        account_id=row.account_id,
        username=row.username,
        display_name=row.display_name,
        created_at=row.created_at,
        updated_at=row.updated_at,
        voicemail_id=row.voicemail_id,
        ring_timeout_sec=row.ring_timeout_sec,
        ring_strategy=RingStrategy(row.ring_strategy),
        dnd=bool(row.dnd),
        fwd_always=_forward(row.fwd_always_kind, row.fwd_always_id),
        fwd_busy=_forward(row.fwd_busy_kind, row.fwd_busy_id),
        fwd_noanswer=_forward(row.fwd_noanswer_kind, row.fwd_noanswer_id),
        max_simultaneous=row.max_simultaneous,
        is_agent=bool(row.is_agent),
        status=UserStatus(row.status),
        out_cid_number=getattr(row, "out_cid_number", None),
    )


def _user_values(user: User) -> dict[str, Any]:
    values: dict[str, Any] = {
        "username": user.username,
        "display_name": user.display_name,
        "voicemail_id": user.voicemail_id,
        "ring_timeout_sec": user.ring_timeout_sec,
        "ring_strategy": user.ring_strategy.value,
        "dnd": user.dnd,
        "max_simultaneous": user.max_simultaneous,
        "is_agent": user.is_agent,
        "status": user.status.value,
        "updated_at": user.updated_at,
        "out_cid_number": user.out_cid_number,
    }
    for name in ("fwd_always", "fwd_busy", "fwd_noanswer"):
        fwd: Forward | None = getattr(user, name)
        values[f"{name}_kind"] = fwd.kind.value if fwd is not None else None
        values[f"{name}_id"] = fwd.id if fwd is not None else None
    return values


class SqlUserRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, user: User) -> None:
        await self._conn.execute(
            insert(_U).values(
                **_user_values(user),
                id=user.id,
                account_id=user.account_id,
                created_at=user.created_at,
            )
        )

    async def get(self, account_id: str, user_id: str) -> User | None:
        query = select(_U).where(_U.c.id == user_id, _U.c.account_id == account_id)
        row = (await self._conn.execute(query)).first()
        return _user(row) if row else None

    async def by_username(self, account_id: str, username: str) -> User | None:
        query = select(_U).where(_U.c.username == username, _U.c.account_id == account_id)
        row = (await self._conn.execute(query)).first()
        return _user(row) if row else None

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[User]:
        query = page_query(select(_U).where(_U.c.account_id == account_id), _U.c.id, cursor, limit)
        rows, next_cursor = split_page((await self._conn.execute(query)).all(), limit)
        return Page([_user(r) for r in rows], next_cursor)

    async def update(self, user: User) -> bool:
        result = await self._conn.execute(
            update(_U)
            .where(_U.c.id == user.id, _U.c.account_id == user.account_id)
            .values(**_user_values(user))
        )
        return bool(result.rowcount)

    async def delete(self, account_id: str, user_id: str) -> bool:
        result = await self._conn.execute(
            delete(_U).where(_U.c.id == user_id, _U.c.account_id == account_id)
        )
        return bool(result.rowcount)

    async def forwarding_to(self, account_id: str, kind: str, dest_id: str) -> builtins.list[str]:
        """Ids of the account's users with a forward to (`kind`, `dest_id`)."""
        conditions = [
            (_U.c[f"{name}_kind"] == kind) & (_U.c[f"{name}_id"] == dest_id)
            for name in ("fwd_always", "fwd_busy", "fwd_noanswer")
        ]
        query = (
            select(_U.c.id)
            .where(_U.c.account_id == account_id, or_(*conditions))
            .order_by(_U.c.id)
        )
        return [r.id for r in (await self._conn.execute(query)).all()]


    async def with_mailbox(self, account_id: str, mailbox_id: str) -> builtins.list[str]:
        """Ids of the account's users whose mailbox it is, or who forward to it."""
        forwarding = await self.forwarding_to(account_id, "voicemail", mailbox_id)
        query = select(_U.c.id).where(
            _U.c.account_id == account_id, _U.c.voicemail_id == mailbox_id
        )
        owners = [r.id for r in (await self._conn.execute(query)).all()]
        return sorted(set(owners) | set(forwarding))

    async def extension_of(self, account_id: str, mailbox_id: str) -> str | None:
        """The extension of the account's user whose mailbox it is (the lowest, if several)."""
        params = {"account_id": account_id, "mailbox_id": mailbox_id}
        return (await self._conn.execute(_EXTENSION_OF, params)).scalar()


def _device(row: Any) -> Device:
    return Device(
        id=row.id,
        account_id=row.account_id,
        user_id=row.user_id,
        auth_username=row.auth_username,
        realm=row.realm,
        ha1_md5=row.ha1_md5,
        ha1_sha256=row.ha1_sha256,
        created_at=row.created_at,
        updated_at=row.updated_at,
        transport=Transport(row.transport),
        ring_order=row.ring_order,
    )


def _device_values(device: Device) -> dict[str, Any]:
    return {
        "user_id": device.user_id,
        "auth_username": device.auth_username,
        "realm": device.realm,
        "ha1_md5": device.ha1_md5,
        "ha1_sha256": device.ha1_sha256,
        "transport": device.transport.value,
        "ring_order": device.ring_order,
        "updated_at": device.updated_at,
    }


class SqlDeviceRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, device: Device) -> None:
        await self._conn.execute(
            insert(_D).values(
                **_device_values(device),
                id=device.id,
                account_id=device.account_id,
                created_at=device.created_at,
            )
        )

    async def get(self, account_id: str, device_id: str) -> Device | None:
        query = select(_D).where(_D.c.id == device_id, _D.c.account_id == account_id)
        row = (await self._conn.execute(query)).first()
        return _device(row) if row else None

    async def by_auth_username(self, auth_username: str) -> Device | None:
        row = (await self._conn.execute(select(_D).where(_D.c.auth_username == auth_username))).first()
        return _device(row) if row else None

    async def list(
        self, account_id: str, cursor: str | None, limit: int, user_id: str | None = None
    ) -> Page[Device]:
        base = select(_D).where(_D.c.account_id == account_id)
        if user_id is not None:
            base = base.where(_D.c.user_id == user_id)
        rows, next_cursor = split_page(
            (await self._conn.execute(page_query(base, _D.c.id, cursor, limit))).all(), limit
        )
        return Page([_device(r) for r in rows], next_cursor)

    async def of_user(self, account_id: str, user_id: str) -> builtins.list[Device]:
        query = (
            select(_D)
            .where(_D.c.account_id == account_id, _D.c.user_id == user_id)
            .order_by(_D.c.ring_order, _D.c.id)
        )
        return [_device(r) for r in (await self._conn.execute(query)).all()]

    async def update(self, device: Device) -> bool:
        result = await self._conn.execute(
            update(_D)
            .where(_D.c.id == device.id, _D.c.account_id == device.account_id)
            .values(**_device_values(device))
        )
        return bool(result.rowcount)

    async def delete(self, account_id: str, device_id: str) -> bool:
        await self._conn.execute(delete(_R).where(_R.c.device_id == device_id))
        result = await self._conn.execute(
            delete(_D).where(_D.c.id == device_id, _D.c.account_id == account_id)
        )
        return bool(result.rowcount)


def _registration(row: Any) -> Registration:
    return Registration(
        id=row.id,
        account_id=row.account_id,
        device_id=row.device_id,
        user_id=row.user_id,
        contact=row.contact,
        expires_at=row.expires_at,
        source_host=row.source_host,
        source_port=row.source_port,
        transport=row.transport,
        path=tuple(row.path or ()),
        call_id=row.call_id,
        cseq=row.cseq,
        user_agent=row.user_agent,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class SqlRegistrationRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def of_device(self, device_id: str, now: datetime) -> builtins.list[Registration]:
        query = (
            select(_R)
            .where(_R.c.device_id == device_id, _R.c.expires_at > now)
            .order_by(_R.c.id)
        )
        return [_registration(r) for r in (await self._conn.execute(query)).all()]

    async def of_user(
        self, account_id: str, user_id: str, now: datetime
    ) -> builtins.list[Registration]:
        """Unexpired, in device `ring_order`."""
        query = (
            select(_R)
            .join(_D, _D.c.id == _R.c.device_id)
            .where(_R.c.account_id == account_id, _R.c.user_id == user_id, _R.c.expires_at > now)
            .order_by(_D.c.ring_order, _D.c.id, _R.c.id)
        )
        return [_registration(r) for r in (await self._conn.execute(query)).all()]

    async def put(self, registration: Registration) -> None:
        """Insert, or refresh the row of the same device and contact."""
        values = {
            "expires_at": registration.expires_at,
            "source_host": registration.source_host,
            "source_port": registration.source_port,
            "transport": registration.transport,
            "path": list(registration.path),
            "call_id": registration.call_id,
            "cseq": registration.cseq,
            "user_agent": registration.user_agent,
            "updated_at": registration.updated_at,
        }
        row = {
            **values,
            "id": registration.id,
            "account_id": registration.account_id,
            "device_id": registration.device_id,
            "user_id": registration.user_id,
            "contact": registration.contact,
            "created_at": registration.created_at,
        }
        # ON CONFLICT: two REGISTERs of one contact at once must not abort a transaction.
        key = [_R.c.device_id, _R.c.contact]
        dialect = postgresql if self._conn.dialect.name == "postgresql" else sqlite
        statement: Any = (
            dialect.insert(_R).values(row).on_conflict_do_update(index_elements=key, set_=values)
        )
        await self._conn.execute(statement)

    async def remove(self, device_id: str, contact: str | None) -> int:
        """Remove one contact of the device (None: all of them)."""
        query = delete(_R).where(_R.c.device_id == device_id)
        if contact is not None:
            query = query.where(_R.c.contact == contact)
        return int((await self._conn.execute(query)).rowcount or 0)

    async def reap(self, now: datetime) -> int:
        """Remove every expired registration."""
        result = await self._conn.execute(delete(_R).where(_R.c.expires_at <= now))
        return int(result.rowcount or 0)

    async def remove_user(self, user_id: str) -> None:
        await self._conn.execute(delete(_R).where(_R.c.user_id == user_id))


class SqlAuthFailureRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, subject: str) -> AuthFailures | None:
        row = (await self._conn.execute(select(_F).where(_F.c.subject == subject))).first()
        if row is None:
            return None
        return AuthFailures(subject, row.failures, row.window_start, row.locked_until)

    async def put(self, record: AuthFailures) -> None:
        values = {
            "failures": record.failures,
            "window_start": record.window_start,
            "locked_until": record.locked_until,
        }
        dialect = postgresql if self._conn.dialect.name == "postgresql" else sqlite
        statement: Any = (
            dialect.insert(_F)
            .values(subject=record.subject, **values)
            .on_conflict_do_update(index_elements=[_F.c.subject], set_=values)
        )
        await self._conn.execute(statement)

    async def clear(self, subject: str) -> None:
        await self._conn.execute(delete(_F).where(_F.c.subject == subject))
