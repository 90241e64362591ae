"""Caller ids: which numbers an account may send from. Only the operator verifies them (the
`afterbeep numbers` commands and the admin API); a tenant lists numbers on its setups, and
those it was verified for are the ones its sends go out from."""

from __future__ import annotations

from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import Conflict, NotFound
from afterbeep.domain.numbers import parse_number
from afterbeep.services.ports import UnitOfWorkFactory


class SenderNumberService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, default_region: str) -> None:
        self._uow = uow
        self._clock = clock
        self._region = default_region

    async def verify(self, account_id: str, number: str) -> str:
        """Verify `number` for the account; its E.164 form. Verifying it again is a no-op."""
        e164 = parse_number(number, self._region, "number")
        async with self._uow() as uow:
            if await uow.accounts.get(account_id) is None:
                raise NotFound("account", account_id[:40])
            holder = await uow.verified_senders.holder(e164)
            if holder == account_id:
                return e164
            if holder is not None or not await uow.verified_senders.add(
                account_id, e164, self._clock.now()
            ):
                raise _taken()
            inbound = await uow.numbers.by_e164(e164)
            if inbound is not None and inbound.account_id != account_id:
                raise _taken()
        return e164

    async def unverify(self, account_id: str, number: str) -> str:
        e164 = parse_number(number, self._region, "number")
        async with self._uow() as uow:
            if not await uow.verified_senders.remove(account_id, e164):
                raise NotFound("verified number", e164)
        return e164


def _taken() -> Conflict:
    return Conflict(
        "this number is verified for, or held by, another account", error_id="number-taken"
    )
