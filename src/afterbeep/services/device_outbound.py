"""Calls from an account's phones to numbers outside afterbeep: may this device dial out, and how.

The rule a PBX user expects: the account allows its devices out (`allow_device_outbound`) and
names the telephony setup they dial through (`device_outbound_setup_id`, one of its own
setups); the dialled string is read as a phone number (E.164, national numbers in the
default region); the caller id is the calling user's `out_cid_number`, else the setup's first
verified number, else its first number, else none (anonymous). Anything missing refuses the
call with a reason the phone can show.
"""

from __future__ import annotations

from dataclasses import dataclass

from afterbeep.domain.numbers import dialed_to_e164
from afterbeep.domain.ringless import TelephonySetup
from afterbeep.services.ports import UnitOfWorkFactory

FORBIDDEN = 403
NOT_FOUND = 404
ADDRESS_INCOMPLETE = 484


@dataclass(frozen=True, slots=True)
class OutsideCall:
    """Where a device's call out goes: the setup's trunk, the number, the caller id."""

    setup: TelephonySetup
    password: str | None
    to_e164: str
    caller_id: str | None  # E.164; None: anonymous


@dataclass(frozen=True, slots=True)
class Refused:
    code: int
    reason: str


NOT_ALLOWED = Refused(FORBIDDEN, "Outside Calls Not Allowed")
NO_SETUP = Refused(FORBIDDEN, "No Telephony Setup For Outside Calls")


class DeviceOutbound:
    def __init__(self, lookups: UnitOfWorkFactory, default_region: str) -> None:
        self._lookups = lookups
        self._region = default_region

    async def plan(self, account_id: str, user_id: str, dialed: str) -> OutsideCall | Refused:
        """How the user's phone calls `dialed` out, or why it may not."""
        async with self._lookups() as uow:
            account = await uow.accounts.get(account_id)
            if account is None or not account.allow_device_outbound:
                return NOT_ALLOWED
            setup_id = account.device_outbound_setup_id
            setup = (
                None if setup_id is None else await uow.telephony_setups.get(account_id, setup_id)
            )
            if setup is None:
                return NO_SETUP
            to_e164 = dialed_to_e164(dialed, self._region)
            if to_e164 is None:
                digits = dialed.removeprefix("+")
                if digits.isdigit():
                    return Refused(ADDRESS_INCOMPLETE, "Address Incomplete")
                return Refused(NOT_FOUND, "Not A Phone Number")
            password = (
                await uow.secrets.get(account_id, setup.password_ref)
                if setup.password_ref
                else None
            )
            user = await uow.users.get(account_id, user_id)
        own = user.out_cid_number if user is not None else None
        return OutsideCall(setup, password, to_e164, caller_id_of(setup, own))


def caller_id_of(setup: TelephonySetup, out_cid_number: str | None) -> str | None:
    """The user's own caller id, else the setup's first verified number, else its first."""
    if out_cid_number:
        return out_cid_number
    verified = [n.e164 for n in setup.numbers if n.verified]
    if verified:
        return verified[0]
    return setup.numbers[0].e164 if setup.numbers else None
