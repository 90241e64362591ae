"""RingGroupService: the account's ring groups, and the reference checks shared with queues.

Users and devices are named by id (`usr_...`, `dev_...`). With a `UserLookup` (the users
repository, wired by `app.py` once users exist) they must exist in the account; without one
only their form is checked.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import Conflict, InvalidInput, NotFound
from afterbeep.domain.flows import RefKind, parse_graph, references
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.numbers import Destination, DestKind
from afterbeep.domain.ring_groups import (
    DEFAULT_RING_TIMEOUT_SEC,
    RingGroup,
    RingGroupMember,
    RingStrategy,
    check_members,
    check_ring_timeout,
)
from afterbeep.services.numbers import name_users
from afterbeep.services.ports import Page, UnitOfWork, UnitOfWorkFactory
from afterbeep.services.ports.ring_groups import UserLookup

T = TypeVar("T")


class Unset(enum.Enum):
    """Marks a field a PATCH did not mention (None means "set to null")."""

    UNSET = 0


UNSET = Unset.UNSET


@dataclass(frozen=True, slots=True)
class RingGroupChanges:
    name: str | Unset = UNSET
    strategy: RingStrategy | Unset = UNSET
    ring_timeout_sec: int | Unset = UNSET
    moh_media_id: str | Unset | None = UNSET
    members: Sequence[RingGroupMember] | Unset = UNSET
    exit_dest: Destination | Unset | None = UNSET
    schedule_id: str | Unset | None = UNSET
    closed_dest: Destination | Unset | None = UNSET
    holiday_dest: Destination | Unset | None = UNSET


def pick(change: T | Unset, current: T) -> T:
    return current if isinstance(change, Unset) else change


class RingGroupService:
    def __init__(
        self, uow: UnitOfWorkFactory, clock: Clock, users: UserLookup | None = None
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._users = users

    async def create(
        self,
        account_id: str,
        name: str,
        members: Sequence[RingGroupMember] = (),
        strategy: RingStrategy = RingStrategy.RING_ALL,
        ring_timeout_sec: int = DEFAULT_RING_TIMEOUT_SEC,
        moh_media_id: str | None = None,
        exit_dest: Destination | None = None,
        schedule_id: str | None = None,
        closed_dest: Destination | None = None,
        holiday_dest: Destination | None = None,
    ) -> RingGroup:
        now = self._clock.now()
        group = RingGroup(
            id=new_id("rg"),
            account_id=account_id,
            name=name,
            strategy=strategy,
            ring_timeout_sec=ring_timeout_sec,
            members=tuple(members),
            created_at=now,
            updated_at=now,
            moh_media_id=moh_media_id,
            exit_dest=exit_dest,
            schedule_id=schedule_id,
            closed_dest=closed_dest,
            holiday_dest=holiday_dest,
        )
        async with self._uow() as uow:
            await self._check(uow, group)
            await uow.ring_groups.add(group)
        return group

    async def get(self, account_id: str, group_id: str) -> RingGroup:
        _check_id(group_id)
        async with self._uow() as uow:
            found = await uow.ring_groups.get(account_id, group_id)
        if found is None:
            raise NotFound("ring group", group_id)
        return found

    async def list(
        self, account_id: str, cursor: str | None = None, limit: int = 50
    ) -> Page[RingGroup]:
        async with self._uow() as uow:
            return await uow.ring_groups.list(account_id, cursor, limit)

    async def update(self, account_id: str, group_id: str, changes: RingGroupChanges) -> RingGroup:
        _check_id(group_id)
        async with self._uow() as uow:
            current = await uow.ring_groups.get(account_id, group_id)
            if current is None:
                raise NotFound("ring group", group_id)
            group = replace(
                current,
                name=pick(changes.name, current.name),
                strategy=pick(changes.strategy, current.strategy),
                ring_timeout_sec=pick(changes.ring_timeout_sec, current.ring_timeout_sec),
                moh_media_id=pick(changes.moh_media_id, current.moh_media_id),
                members=tuple(pick(changes.members, current.members)),
                exit_dest=pick(changes.exit_dest, current.exit_dest),
                schedule_id=pick(changes.schedule_id, current.schedule_id),
                closed_dest=pick(changes.closed_dest, current.closed_dest),
                holiday_dest=pick(changes.holiday_dest, current.holiday_dest),
                updated_at=self._clock.now(),
            )
            await self._check(uow, group)
            if not await uow.ring_groups.update(group):
                raise NotFound("ring group", group_id)
        return group

    async def delete(self, account_id: str, group_id: str) -> None:
        """Refused (`Conflict`, `ring-group-in-use`) while a number or a flow's current version
        leads to it, naming them."""
        _check_id(group_id)
        async with self._uow() as uow:
            users = await destination_users(
                uow, account_id, DestKind.RING_GROUP, RefKind.RING_GROUP, group_id
            )
            if users:
                raise Conflict(
                    f"ring group {group_id!r} is used by {' and '.join(users)}",
                    "ring-group-in-use",
                )
            if not await uow.ring_groups.delete(account_id, group_id):
                raise NotFound("ring group", group_id)

    async def _check(self, uow: UnitOfWork, group: RingGroup) -> None:
        if not group.name.strip():
            raise InvalidInput("name", "must not be empty")
        check_ring_timeout(group.ring_timeout_sec)
        check_members(group.members)
        account_id = group.account_id
        if self._users is not None:
            for index, member in enumerate(group.members):
                if member.user_id is not None and not await self._users.user_exists(
                    account_id, member.user_id
                ):
                    raise unknown_reference(f"members[{index}].user_id", "user")
                if member.device_id is not None and not await self._users.device_exists(
                    account_id, member.device_id
                ):
                    raise unknown_reference(f"members[{index}].device_id", "device")
        await check_common(
            uow,
            account_id,
            self._users,
            group.moh_media_id,
            group.schedule_id,
            {
                "exit_dest": group.exit_dest,
                "closed_dest": group.closed_dest,
                "holiday_dest": group.holiday_dest,
            },
        )


async def check_common(
    uow: UnitOfWork,
    account_id: str,
    users: UserLookup | None,
    moh_media_id: str | None,
    schedule_id: str | None,
    dests: dict[str, Destination | None],
) -> None:
    """Hold music, schedule and every destination name objects of the account."""
    if moh_media_id is not None and (
        not is_id(moh_media_id, "media") or await uow.media.get(account_id, moh_media_id) is None
    ):
        raise unknown_reference("moh_media_id", "media")
    if schedule_id is not None and (
        not is_id(schedule_id, "sch") or await uow.schedules.get(account_id, schedule_id) is None
    ):
        raise unknown_reference("schedule_id", "schedule")
    for prefix, dest in dests.items():
        if (
            dest is not None
            and dest.id is not None
            and not await destination_exists(uow, account_id, users, dest)
        ):
            raise unknown_reference(f"{prefix}_id", dest.kind.value.replace("_", " "))


async def destination_exists(
    uow: UnitOfWork, account_id: str, users: UserLookup | None, dest: Destination
) -> bool:
    """Whether the object `dest` names is in the account (its id form is already checked)."""
    dest_id = dest.id
    if dest_id is None:
        return dest.kind is DestKind.HANGUP
    if dest.kind in (DestKind.VOICEMAIL, DestKind.FLOW):
        return await uow.numbers.destination_exists(account_id, dest.kind, dest_id)
    if dest.kind is DestKind.RING_GROUP:
        return await uow.ring_groups.get(account_id, dest_id) is not None
    if dest.kind is DestKind.QUEUE:
        return await uow.queues.get(account_id, dest_id) is not None
    if dest.kind is DestKind.USER:
        return users is None or await users.user_exists(account_id, dest_id)
    return False


async def destination_users(
    uow: UnitOfWork, account_id: str, kind: DestKind, ref: RefKind, object_id: str
) -> list[str]:
    """What leads to the object: numbers (any of their destinations) and flows' current
    versions, as phrases naming them (empty: nothing)."""
    numbers = await uow.numbers.numbers_pointing_to(account_id, kind, object_id)
    flows = [
        saved.flow.id
        for saved in await uow.flows.current_versions_mentioning(account_id, object_id)
        if object_id
        in references(parse_graph(saved.graph.get("nodes"), saved.graph.get("edges")))[ref]
    ]
    users = []
    if numbers:
        users.append(name_users("numbers", [number.id for number in numbers]))
    if flows:
        users.append(name_users("flows", flows))
    return users


def unknown_reference(field: str, what: str) -> InvalidInput:
    return InvalidInput(
        field, f"no {what} with this id in your account", error_id="unknown-reference"
    )


def _check_id(group_id: str) -> None:
    # Not a ring group id at all: it cannot exist, and must not reach a query.
    if not is_id(group_id, "rg"):
        raise NotFound("ring group", group_id[:40])
