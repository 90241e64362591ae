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
    check_closed_pair,
    check_dest_kind,
    check_schedule,
    dialed_to_e164,
    parse_number,
)
from afterbeep.services.ports import Page, UnitOfWorkFactory
from afterbeep.services.ports.numbers import NumberRepo


class Unset(enum.Enum):
    """Marks a field a PATCH did not mention (None means "set to null")."""

    UNSET = 0


UNSET = Unset.UNSET
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NumberChanges:
    e164: str | Unset = UNSET
    dest_kind: DestKind | Unset = UNSET
    dest_id: str | Unset = UNSET
    schedule_id: str | Unset | None = UNSET
    closed_dest_kind: DestKind | Unset | None = UNSET
    closed_dest_id: str | Unset | None = UNSET


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
        dest_id: str,
        schedule_id: str | None = None,
        closed_dest_kind: DestKind | None = None,
        closed_dest_id: str | None = None,
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
        )
        self._check(number)
        async with self._uow() as uow:
            await self._check_references(uow.numbers, number)
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
                updated_at=self._clock.now(),
            )
            self._check(number)
            await self._check_references(uow.numbers, number)
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

    @staticmethod
    def _check(number: Number) -> None:
        check_dest_kind(number.dest_kind, "dest_kind")
        check_closed_pair(number.closed_dest_kind, number.closed_dest_id)
        if number.closed_dest_kind is not None:
            check_dest_kind(number.closed_dest_kind, "closed_dest_kind")
        check_schedule(number.schedule_id)

    @staticmethod
    async def _check_references(repo: NumberRepo, number: Number) -> None:
        if not await _exists(repo, number.account_id, number.dest_kind, number.dest_id):
            raise _unknown_reference("dest_id", number.dest_kind)
        kind, dest_id = number.closed_dest_kind, number.closed_dest_id
        if (
            kind is not None
            and dest_id is not None
            and not await _exists(repo, number.account_id, kind, dest_id)
        ):
            raise _unknown_reference("closed_dest_id", kind)


def _pick(change: T | Unset, current: T) -> T:
    return current if isinstance(change, Unset) else change


def _check_id(number_id: str) -> None:
    # Not a number id at all: it cannot exist, and must not reach a query.
    if not is_id(number_id, "num"):
        raise NotFound("number", number_id[:40])


async def _exists(repo: NumberRepo, account_id: str, kind: DestKind, dest_id: str) -> bool:
    prefix = DEST_ID_PREFIX.get(kind)
    return (
        prefix is not None
        and is_id(dest_id, prefix)
        and await repo.destination_exists(account_id, kind, dest_id)
    )


def _taken() -> Conflict:
    return Conflict("this phone number is already held by an account", error_id="number-taken")


def _unknown_reference(field: str, kind: DestKind) -> InvalidInput:
    return InvalidInput(
        field, f"no {kind.value} with this id in your account", error_id="unknown-reference"
    )
