"""NumberService: the account's phone numbers, where their calls go, and the router's lookup."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import TypeVar

from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import Conflict, InvalidInput, NotFound
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.numbers import (
    DEST_ID_PREFIX,
    DestKind,
    Number,
    NumberStatus,
    check_number,
    dialed_to_e164,
    parse_number,
)
from afterbeep.services.ports import Page, UnitOfWork, UnitOfWorkFactory


class Unset(enum.Enum):
    """Marks a field a PATCH did not mention (None means "set to null")."""

    UNSET = 0


UNSET = Unset.UNSET
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NumberChanges:
    e164: str | Unset = UNSET
    dest_kind: DestKind | Unset = UNSET
    dest_id: str | Unset | None = UNSET
    schedule_id: str | Unset | None = UNSET
    closed_dest_kind: DestKind | Unset | None = UNSET
    closed_dest_id: str | Unset | None = UNSET
    holiday_dest_kind: DestKind | Unset | None = UNSET
    holiday_dest_id: str | Unset | None = UNSET
    status: NumberStatus | Unset = UNSET
    allow_anonymous: bool | Unset = UNSET


class NumberService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, default_region: str) -> None:
        self._uow = uow
        self._clock = clock
        self._region = default_region

    async def create(
        self,
        account_id: str,
        e164: str,
        dest_kind: DestKind,
        dest_id: str | None,
        schedule_id: str | None = None,
        closed_dest_kind: DestKind | None = None,
        closed_dest_id: str | None = None,
        holiday_dest_kind: DestKind | None = None,
        holiday_dest_id: str | None = None,
        status: NumberStatus = NumberStatus.ACTIVE,
        allow_anonymous: bool = True,
    ) -> Number:
        now = self._clock.now()
        number = Number(
            id=new_id("num"),
            account_id=account_id,
            e164=parse_number(e164, self._region),
            dest_kind=dest_kind,
            dest_id=dest_id,
            schedule_id=schedule_id,
            closed_dest_kind=closed_dest_kind,
            closed_dest_id=closed_dest_id,
            created_at=now,
            updated_at=now,
            holiday_dest_kind=holiday_dest_kind,
            holiday_dest_id=holiday_dest_id,
            status=status,
            allow_anonymous=allow_anonymous,
        )
        check_number(number)
        async with self._uow() as uow:
            await _check_references(uow, number)
            if not await uow.numbers.add(number):
                raise _taken()
        return number

    async def get(self, account_id: str, number_id: str) -> Number:
        _check_id(number_id)
        async with self._uow() as uow:
            found = await uow.numbers.get(account_id, number_id)
        if found is None:
            raise NotFound("number", number_id)
        return found

    async def list(
        self, account_id: str, cursor: str | None = None, limit: int = 50
    ) -> Page[Number]:
        async with self._uow() as uow:
            return await uow.numbers.list(account_id, cursor, limit)

    async def update(self, account_id: str, number_id: str, changes: NumberChanges) -> Number:
        _check_id(number_id)
        async with self._uow() as uow:
            current = await uow.numbers.get(account_id, number_id)
            if current is None:
                raise NotFound("number", number_id)
            number = replace(
                current,
                e164=current.e164
                if isinstance(changes.e164, Unset)
                else parse_number(changes.e164, self._region),
                dest_kind=_pick(changes.dest_kind, current.dest_kind),
                dest_id=_pick(changes.dest_id, current.dest_id),
                schedule_id=_pick(changes.schedule_id, current.schedule_id),
                closed_dest_kind=_pick(changes.closed_dest_kind, current.closed_dest_kind),
                closed_dest_id=_pick(changes.closed_dest_id, current.closed_dest_id),
                holiday_dest_kind=_pick(changes.holiday_dest_kind, current.holiday_dest_kind),
                holiday_dest_id=_pick(changes.holiday_dest_id, current.holiday_dest_id),
                status=_pick(changes.status, current.status),
                allow_anonymous=_pick(changes.allow_anonymous, current.allow_anonymous),
                updated_at=self._clock.now(),
            )
            check_number(number)
            await _check_references(uow, number)
            if not await uow.numbers.update(number):
                raise _taken()
        return number

    async def delete(self, account_id: str, number_id: str) -> None:
        _check_id(number_id)
        async with self._uow() as uow:
            if not await uow.numbers.delete(account_id, number_id):
                raise NotFound("number", number_id)

    async def resolve(self, dialed: str) -> Number | None:
        """The number a call was placed to, in any account: national, international (`+`, `00`,
        or the region's own prefix) or a SIP user part (`12025550123`); None when not held."""
        e164 = dialed_to_e164(dialed, self._region)
        if e164 is None:
            return None
        async with self._uow() as uow:
            return await uow.numbers.by_e164(e164)


async def _check_references(uow: UnitOfWork, number: Number) -> None:
    """Every object `number` names exists in its account; else `InvalidInput` naming the field."""
    for field, dest in number.destinations():
        if dest.id is not None and not await _exists(uow, number.account_id, dest.kind, dest.id):
            raise _unknown_reference(field, dest.kind.value)
    schedule_id = number.schedule_id
    if schedule_id is not None and (
        not is_id(schedule_id, "sch")
        or await uow.schedules.get(number.account_id, schedule_id) is None
    ):
        raise _unknown_reference("schedule_id", "schedule")


MAX_NAMED = 10


def name_users(what: str, ids: list[str]) -> str:
    """`numbers num_a, num_b` (at most MAX_NAMED named, then how many more)."""
    named = ", ".join(ids[:MAX_NAMED])
    more = f" and {len(ids) - MAX_NAMED} more" if len(ids) > MAX_NAMED else ""
    return f"{what} {named}{more}"


def _pick(change: T | Unset, current: T) -> T:
    return current if isinstance(change, Unset) else change


def _check_id(number_id: str) -> None:
    # Not a number id at all: it cannot exist, and must not reach a query.
    if not is_id(number_id, "num"):
        raise NotFound("number", number_id[:40])


async def _exists(uow: UnitOfWork, account_id: str, kind: DestKind, dest_id: str) -> bool:
    prefix = DEST_ID_PREFIX.get(kind)
    return (
        prefix is not None
        and is_id(dest_id, prefix)
        and await uow.numbers.destination_exists(account_id, kind, dest_id)
    )


def _taken() -> Conflict:
    return Conflict("this phone number is already held by an account", error_id="number-taken")


def _unknown_reference(field: str, what: str) -> InvalidInput:
    return InvalidInput(
        field, f"no {what} with this id in your account", error_id="unknown-reference"
    )
