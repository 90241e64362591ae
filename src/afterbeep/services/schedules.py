"""ScheduleService: an account's business hours, and what they say about an instant."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import Conflict, InvalidInput, NotFound
from afterbeep.domain.flows import RefKind, parse_graph, references
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.schedules import (
    ScheduleState,
    StoredSchedule,
    evaluate,
    parse_schedule,
)
from afterbeep.services.numbers import name_users
from afterbeep.services.ports import Page, UnitOfWork, UnitOfWorkFactory


class Unset(enum.Enum):
    """Marks a field a PATCH did not mention (None means "set to null")."""

    UNSET = 0


UNSET = Unset.UNSET


@dataclass(frozen=True, slots=True)
class ScheduleChanges:
    name: object = UNSET
    timezone: object = UNSET
    rules: object = UNSET


@dataclass(frozen=True, slots=True)
class Evaluation:
    state: ScheduleState
    at: datetime
    timezone: str  # the one used: the schedule's, else the account's


class ScheduleService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def create(
        self, account_id: str, name: object, timezone: object, rules: object
    ) -> StoredSchedule:
        now = self._clock.now()
        stored = StoredSchedule(
            id=new_id("sch"),
            account_id=account_id,
            schedule=parse_schedule(name, timezone, rules),
            created_at=now,
            updated_at=now,
        )
        async with self._uow() as uow:
            await uow.schedules.add(stored)
        return stored

    async def get(self, account_id: str, schedule_id: str) -> StoredSchedule:
        _check_id(schedule_id)
        async with self._uow() as uow:
            found = await uow.schedules.get(account_id, schedule_id)
        if found is None:
            raise NotFound("schedule", schedule_id)
        return found

    async def list(
        self, account_id: str, cursor: str | None = None, limit: int = 50
    ) -> Page[StoredSchedule]:
        async with self._uow() as uow:
            return await uow.schedules.list(account_id, cursor, limit)

    async def update(
        self, account_id: str, schedule_id: str, changes: ScheduleChanges
    ) -> StoredSchedule:
        _check_id(schedule_id)
        async with self._uow() as uow:
            current = await uow.schedules.get(account_id, schedule_id)
            if current is None:
                raise NotFound("schedule", schedule_id)
            old = current.schedule
            schedule = parse_schedule(
                old.name if changes.name is UNSET else changes.name,
                old.timezone if changes.timezone is UNSET else changes.timezone,
                [r.to_dict() for r in old.rules] if changes.rules is UNSET else changes.rules,
            )
            stored = replace(current, schedule=schedule, updated_at=self._clock.now())
            if not await uow.schedules.update(stored):
                raise NotFound("schedule", schedule_id)
        return stored

    async def delete(self, account_id: str, schedule_id: str) -> None:
        """Remove the schedule; refused (`Conflict`) while a number routes by it or the current
        version of a flow tests it (a timeCondition), naming them."""
        _check_id(schedule_id)
        async with self._uow() as uow:
            users = await _users(uow, account_id, schedule_id)
            if users:
                raise Conflict(
                    f"schedule {schedule_id!r} is used by {' and '.join(users)}",
                    "schedule-in-use",
                )
            if not await uow.schedules.delete(account_id, schedule_id):
                raise NotFound("schedule", schedule_id)

    async def state(
        self, account_id: str, schedule_id: str, at: datetime | None = None
    ) -> Evaluation:
        """The schedule's state at `at` (aware; default now), for operators checking rules."""
        _check_id(schedule_id)
        if at is not None and (at.tzinfo is None or at.utcoffset() is None):
            raise InvalidInput("at", "must be an ISO 8601 instant with a UTC offset or Z")
        async with self._uow() as uow:
            found = await uow.schedules.get(account_id, schedule_id)
            account = await uow.accounts.get(account_id)
        if found is None or account is None:
            raise NotFound("schedule", schedule_id)
        timezone = found.schedule.timezone or account.timezone
        try:
            when = self._clock.now() if at is None else at.astimezone(UTC)
            state = evaluate(found.schedule, when, account.timezone)
        except OverflowError:
            raise InvalidInput("at", "is out of the supported range of dates") from None
        return Evaluation(state, when, timezone)


async def _users(uow: UnitOfWork, account_id: str, schedule_id: str) -> list[str]:
    """What uses the schedule, as phrases naming them (empty: nothing)."""
    numbers = await uow.numbers.numbers_using_schedule(account_id, schedule_id)
    flows = [
        saved.flow.id
        for saved in await uow.flows.current_versions_mentioning(account_id, schedule_id)
        if schedule_id
        in references(parse_graph(saved.graph.get("nodes"), saved.graph.get("edges")))[
            RefKind.SCHEDULE
        ]
    ]
    users = []
    if numbers:
        users.append(name_users("numbers", [number.id for number in numbers]))
    if flows:
        users.append(name_users("flows", flows))
    return users


def _check_id(schedule_id: str) -> None:
    # Not a schedule id at all: it cannot exist, and must not reach a query.
    if not is_id(schedule_id, "sch"):
        raise NotFound("schedule", schedule_id[:40])
