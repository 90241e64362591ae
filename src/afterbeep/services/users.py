"""UserService: an account's users (extensions) and their devices (SIP phones)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import Conflict, InvalidInput, NotFound
from afterbeep.domain.flows import RefKind
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.numbers import DestKind
from afterbeep.domain.phone import to_e164
from afterbeep.domain.users import (
    FORWARDS,
    Device,
    Forward,
    FwdKind,
    Registration,
    RingStrategy,
    Transport,
    User,
    UserStatus,
    check_password,
    ha1,
    parse_auth_username,
    parse_forward,
    parse_ring_timeout,
    parse_username,
)
from afterbeep.services.mailboxes import find_mailbox
from afterbeep.services.numbers import name_users
from afterbeep.services.ports import Page, UnitOfWork, UnitOfWorkFactory
from afterbeep.services.ring_groups import destination_users

USER_FIELDS = frozenset(
    {
        "username", "display_name", "voicemail_id", "ring_timeout_sec", "ring_strategy", "dnd",
        "max_simultaneous", "is_agent", "status", "out_cid_number",
        *(f"{name}_{part}" for name in FORWARDS for part in ("kind", "id")),
    }
)  # fmt: skip
DEVICE_FIELDS = frozenset({"user_id", "auth_username", "password", "transport", "ring_order"})


class UserService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, realm: str) -> None:
        self._uow = uow
        self._clock = clock
        self._realm = realm

    # --- users -------------------------------------------------------------------------------

    async def create_user(self, account_id: str, fields: Mapping[str, Any]) -> User:
        now = self._clock.now()
        blank = User(
            id=new_id("usr"),
            account_id=account_id,
            username="",
            display_name="",
            created_at=now,
            updated_at=now,
        )
        if "username" not in fields:
            raise InvalidInput("username", "is required")
        user = _apply_user(blank, fields)
        async with self._uow() as uow:
            await _check_user(uow, user)
            await uow.users.add(user)
        return user

    async def get_user(self, account_id: str, user_id: str) -> User:
        _check_id(user_id, "usr", "user")
        async with self._uow() as uow:
            found = await uow.users.get(account_id, user_id)
        if found is None:
            raise NotFound("user", user_id)
        return found

    async def list_users(
        self, account_id: str, cursor: str | None = None, limit: int = 50
    ) -> Page[User]:
        async with self._uow() as uow:
            return await uow.users.list(account_id, cursor, limit)

    async def update_user(self, account_id: str, user_id: str, fields: Mapping[str, Any]) -> User:
        _check_id(user_id, "usr", "user")
        async with self._uow() as uow:
            current = await uow.users.get(account_id, user_id)
            if current is None:
                raise NotFound("user", user_id)
            user = replace(_apply_user(current, fields), updated_at=self._clock.now())
            await _check_user(uow, user)
            await uow.users.update(user)
        return user

    async def delete_user(self, account_id: str, user_id: str) -> None:
        """Remove the user with its devices; refused (`Conflict`) while a number or another
        user's forward leads to it."""
        _check_id(user_id, "usr", "user")
        async with self._uow() as uow:
            if await uow.users.get(account_id, user_id) is None:
                raise NotFound("user", user_id)
            users = await destination_users(
                uow, account_id, DestKind.USER, RefKind.USER, user_id
            )
            forwarding = [
                u for u in await uow.users.forwarding_to(account_id, "user", user_id) if u != user_id
            ]
            if forwarding:
                users.append(name_users("users", forwarding))
            if users:
                raise Conflict(
                    f"user {user_id!r} is used by {' and '.join(users)}", "user-in-use"
                )
            await uow.registrations.remove_user(user_id)
            for device in await uow.devices.of_user(account_id, user_id):
                await uow.devices.delete(account_id, device.id)
            await uow.users.delete(account_id, user_id)

    async def registrations(self, account_id: str, user_id: str) -> list[Registration]:
        _check_id(user_id, "usr", "user")
        async with self._uow() as uow:
            if await uow.users.get(account_id, user_id) is None:
                raise NotFound("user", user_id)
            return await uow.registrations.of_user(account_id, user_id, self._clock.now())

    # --- devices -----------------------------------------------------------------------------

    async def create_device(self, account_id: str, fields: Mapping[str, Any]) -> Device:
        for required in ("user_id", "auth_username", "password"):
            if fields.get(required) is None:
                raise InvalidInput(required, "is required")
        now = self._clock.now()
        blank = Device(
            id=new_id("dev"),
            account_id=account_id,
            user_id="",
            auth_username="",
            realm=self._realm,
            ha1_md5="",
            ha1_sha256="",
            created_at=now,
            updated_at=now,
        )
        device = self._apply_device(blank, fields)
        async with self._uow() as uow:
            await _check_device(uow, device)
            await uow.devices.add(device)
        return device

    async def get_device(self, account_id: str, device_id: str) -> Device:
        _check_id(device_id, "dev", "device")
        async with self._uow() as uow:
            found = await uow.devices.get(account_id, device_id)
        if found is None:
            raise NotFound("device", device_id)
        return found

    async def list_devices(
        self,
        account_id: str,
        cursor: str | None = None,
        limit: int = 50,
        user_id: str | None = None,
    ) -> Page[Device]:
        async with self._uow() as uow:
            return await uow.devices.list(account_id, cursor, limit, user_id)

    async def update_device(
        self, account_id: str, device_id: str, fields: Mapping[str, Any]
    ) -> Device:
        _check_id(device_id, "dev", "device")
        async with self._uow() as uow:
            current = await uow.devices.get(account_id, device_id)
            if current is None:
                raise NotFound("device", device_id)
            renamed = fields.get("auth_username", current.auth_username) != current.auth_username
            if renamed and "password" not in fields:
                # the stored hashes include the name: a new name needs the password again
                raise InvalidInput("password", "is required to change auth_username")
            device = replace(self._apply_device(current, fields), updated_at=self._clock.now())
            await _check_device(uow, device)
            await uow.devices.update(device)
            if device.user_id != current.user_id or device.auth_username != current.auth_username:
                await uow.registrations.remove(device_id, None)
        return device

    async def delete_device(self, account_id: str, device_id: str) -> None:
        _check_id(device_id, "dev", "device")
        async with self._uow() as uow:
            if not await uow.devices.delete(account_id, device_id):
                raise NotFound("device", device_id)

    def _apply_device(self, device: Device, fields: Mapping[str, Any]) -> Device:
        for name in fields:
            if name not in DEVICE_FIELDS:
                raise InvalidInput(name, "is not a device setting that can be set")
        changes: dict[str, Any] = {}
        if "user_id" in fields:
            user_id = fields["user_id"]
            if not isinstance(user_id, str) or not is_id(user_id, "usr"):
                raise InvalidInput("user_id", "must be a user id (usr_...)")
            changes["user_id"] = user_id
        if "auth_username" in fields:
            changes["auth_username"] = parse_auth_username(fields["auth_username"])
        if "transport" in fields:
            try:
                changes["transport"] = Transport(fields["transport"])
            except ValueError:
                raise InvalidInput("transport", "must be udp or tcp") from None
        if "ring_order" in fields:
            order = fields["ring_order"]
            if isinstance(order, bool) or not isinstance(order, int) or not 0 <= order <= 1000:
                raise InvalidInput("ring_order", "must be an integer from 0 to 1000")
            changes["ring_order"] = order
        device = replace(device, **changes)
        if "password" in fields:
            password = check_password(fields["password"], device.auth_username)
            device = replace(
                device,
                realm=self._realm,
                ha1_md5=ha1("MD5", device.auth_username, self._realm, password),
                ha1_sha256=ha1("SHA-256", device.auth_username, self._realm, password),
            )
        return device


def _apply_user(user: User, fields: Mapping[str, Any]) -> User:
    for name in fields:
        if name not in USER_FIELDS:
            raise InvalidInput(name, "is not a user setting that can be set")
    changes: dict[str, Any] = {}
    if "username" in fields:
        changes["username"] = parse_username(fields["username"])
    if "display_name" in fields:
        name = fields["display_name"]
        if not isinstance(name, str) or len(name) > 200:
            raise InvalidInput("display_name", "must be text of at most 200 characters")
        changes["display_name"] = name
    if "voicemail_id" in fields:
        box = fields["voicemail_id"]
        if box is not None and (not isinstance(box, str) or not is_id(box, "vm")):
            raise InvalidInput("voicemail_id", "must be a mailbox id (vm_...) or null")
        changes["voicemail_id"] = box
    if "ring_timeout_sec" in fields:
        changes["ring_timeout_sec"] = parse_ring_timeout(fields["ring_timeout_sec"])
    if "ring_strategy" in fields:
        try:
            changes["ring_strategy"] = RingStrategy(fields["ring_strategy"])
        except ValueError:
            raise InvalidInput("ring_strategy", "must be simultaneous or sequential") from None
    if "status" in fields:
        try:
            changes["status"] = UserStatus(fields["status"])
        except ValueError:
            raise InvalidInput("status", "must be offline, available or on_break") from None
    for flag in ("dnd", "is_agent"):
        if flag in fields:
            changes[flag] = _flag(fields[flag], flag)
    if "max_simultaneous" in fields:
        most = fields["max_simultaneous"]
        if most is not None and (
            isinstance(most, bool) or not isinstance(most, int) or not 1 <= most <= 100
        ):
            raise InvalidInput("max_simultaneous", "must be an integer from 1 to 100, or null")
        changes["max_simultaneous"] = most
    if "out_cid_number" in fields:
        changes["out_cid_number"] = _caller_id(fields["out_cid_number"])
    for name in FORWARDS:
        kind_field, id_field = f"{name}_kind", f"{name}_id"
        if kind_field in fields or id_field in fields:
            current: Forward | None = getattr(user, name)
            kind = fields.get(kind_field, current.kind.value if current else None)
            dest_id = fields.get(id_field, current.id if current else None)
            if kind_field in fields and id_field not in fields and kind != (
                current.kind.value if current else None
            ):
                dest_id = None  # a new kind does not keep the old kind's id
            changes[name] = parse_forward(kind, dest_id, name)
    return replace(user, **changes)


def _caller_id(value: object) -> str | None:
    """An E.164 number (`+` and digits) or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("+"):
        raise InvalidInput("out_cid_number", "must be an E.164 number (+ and digits) or null")
    return to_e164(value, field="out_cid_number")


def _flag(value: object, field: str) -> bool:
    """true/false, and the product's 0/1."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise InvalidInput(field, "must be true or false (or 1 or 0)")


async def _check_user(uow: UnitOfWork, user: User) -> None:
    """The username is free in the account and every object the user names exists in it."""
    taken = await uow.users.by_username(user.account_id, user.username)
    if taken is not None and taken.id != user.id:
        raise Conflict(
            f"username {user.username!r} is already a user of this account", "username-taken"
        )
    if user.voicemail_id is not None and (
        await find_mailbox(uow, user.account_id, user.voicemail_id) is None
    ):
        raise _unknown_reference("voicemail_id", "mailbox")
    for name, fwd in user.forwards():
        if fwd.id is None:
            continue
        if fwd.kind is FwdKind.VOICEMAIL:
            found = await find_mailbox(uow, user.account_id, fwd.id) is not None
        elif fwd.kind is FwdKind.FLOW:
            found = await uow.flows.get(user.account_id, fwd.id) is not None
        elif fwd.kind is FwdKind.USER:
            found = fwd.id != user.id and await uow.users.get(user.account_id, fwd.id) is not None
        else:  # queues and ring groups: checked by their prefix only until they exist
            found = True
        if not found:
            raise _unknown_reference(f"{name}_id", fwd.kind.value)


async def _check_device(uow: UnitOfWork, device: Device) -> None:
    if await uow.users.get(device.account_id, device.user_id) is None:
        raise _unknown_reference("user_id", "user")
    taken = await uow.devices.by_auth_username(device.auth_username)
    if taken is not None and taken.id != device.id:
        # unique across the service: a REGISTER names no account
        raise Conflict("this auth_username is already taken", "auth-username-taken")


def _check_id(object_id: str, prefix: str, what: str) -> None:
    if not is_id(object_id, prefix):
        raise NotFound(what, object_id[:40])


def _unknown_reference(field: str, what: str) -> InvalidInput:
    return InvalidInput(
        field, f"no {what} with this id in your account", error_id="unknown-reference"
    )


class AccountUsers:
    """The `UserLookup` ring groups and queues check their members (and list agents) with;
    over read-only units (it is asked inside the caller's writing unit)."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def user_exists(self, account_id: str, user_id: str) -> bool:
        if not is_id(user_id, "usr"):
            return False
        async with self._uow() as uow:
            return await uow.users.get(account_id, user_id) is not None

    async def device_exists(self, account_id: str, device_id: str) -> bool:
        if not is_id(device_id, "dev"):
            return False
        async with self._uow() as uow:
            return await uow.devices.get(account_id, device_id) is not None

    async def is_agent(self, account_id: str, user_id: str) -> bool:
        if not is_id(user_id, "usr"):
            return False
        async with self._uow() as uow:
            user = await uow.users.get(account_id, user_id)
        return user is not None and user.is_agent

    async def agent_ids(self, account_id: str) -> list[str]:
        found: list[str] = []
        cursor = None
        async with self._uow() as uow:
            while True:
                page = await uow.users.list(account_id, cursor, 200)
                found.extend(user.id for user in page.items if user.is_agent)
                if page.next_cursor is None:
                    return found
                cursor = page.next_cursor
