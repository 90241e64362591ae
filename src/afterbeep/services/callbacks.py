"""The agent's callback (issue 18): may this account call its customer back now, and through
what; how a callback ended, and where that is told.

A callback calls out the way the account's phones do (`services.device_outbound`): the account
allows its devices out and names the telephony setup they dial through, whose trunk must be an
address the operator's network policy permits (checked again here: the policy may have changed
since the setup was saved). The customer's number and the caller id (the number the call
center chose) are E.164 as they come; the agent is a user of the account. Whether the agent
has a registered phone is the telephony adapter's to check (`telephony.callback`).

`CallbackResults` is where a finished callback is told (the voice call's record); nothing of a
callback is stored by this module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from afterbeep.domain.errors import InvalidInput, InvalidPhoneNumber, Unavailable
from afterbeep.domain.ids import is_id
from afterbeep.domain.netpolicy import sip_uri_hosts
from afterbeep.domain.phone import to_e164
from afterbeep.services.contact_center import CallbackRequest, CallbackState
from afterbeep.services.device_outbound import OutsideCall
from afterbeep.services.netguard import HostGuard
from afterbeep.services.ports import UnitOfWorkFactory

__all__ = [
    "CallbackOutcome",
    "CallbackPlan",
    "CallbackPlanner",
    "CallbackResult",
    "CallbackResults",
    "state_of",
]


class CallbackOutcome(enum.StrEnum):
    COMPLETED = "completed"  # agent and customer talked; either hung up
    AGENT_NO_ANSWER = "agent_no_answer"  # no phone of the agent answered (busy, unreachable too)
    AGENT_HUNG_UP = "agent_hung_up"  # the agent hung up before the customer answered
    CUSTOMER_BUSY = "customer_busy"
    CUSTOMER_NO_ANSWER = "customer_no_answer"
    CUSTOMER_FAILED = "customer_failed"  # the trunk refused or failed, or no bridge could start
    CANCELED = "canceled"  # the service shut down during the callback


def state_of(outcome: CallbackOutcome) -> CallbackState:
    return CallbackState.COMPLETED if outcome is CallbackOutcome.COMPLETED else CallbackState.FAILED


@dataclass(frozen=True, slots=True)
class CallbackResult:
    callback_id: str  # cb_
    account_id: str
    voice_call_id: str
    work_item_id: str | None
    outcome: CallbackOutcome
    started_at: datetime  # the callback was asked for
    connected_at: datetime | None  # the customer answered and the bridge began
    ended_at: datetime
    duration: float  # seconds agent and customer were connected (0 when they never were)


@dataclass(frozen=True, slots=True)
class CallbackPlan:
    outside: OutsideCall  # the setup and its password, the customer's number, the caller id
    language: str  # the account's: the prompts the agent hears


class CallbackResults(Protocol):
    """Where each finished callback is told, once (the voice call's record)."""

    async def record(self, result: CallbackResult) -> None: ...


def _e164(value: str, field: str) -> str:
    message = "must be a phone number in E.164, such as +12025550123"
    if not value.startswith("+"):
        raise InvalidPhoneNumber(field, message)
    try:
        normalized = to_e164(value, field=field)
    except InvalidPhoneNumber as exc:
        raise InvalidPhoneNumber(field, message) from exc
    if normalized != value:
        raise InvalidPhoneNumber(field, message)
    return normalized


class CallbackPlanner:
    """How a callback reaches the customer, or why it cannot: InvalidInput for the request's
    values, Unavailable for the account's setup."""

    def __init__(self, lookups: UnitOfWorkFactory, guard: HostGuard) -> None:
        self._lookups = lookups
        self._guard = guard

    async def plan(self, request: CallbackRequest) -> CallbackPlan:
        customer = _e164(request.customer_number, "customer_number")
        caller_id = _e164(request.caller_id, "caller_id")
        if not is_id(request.agent_user_id, "usr"):
            raise InvalidInput("agent_user_id", "is not a user id")
        async with self._lookups() as uow:
            account = await uow.accounts.get(request.account_id)
            if account is None or not account.allow_device_outbound:
                raise Unavailable(
                    "the account does not allow calls to outside numbers", "outbound-not-allowed"
                )
            setup_id = account.device_outbound_setup_id
            setup = (
                None
                if setup_id is None
                else await uow.telephony_setups.get(request.account_id, setup_id)
            )
            if setup is None:
                raise Unavailable(
                    "the account names no telephony setup for outside calls", "no-outbound-setup"
                )
            if await uow.users.get(request.account_id, request.agent_user_id) is None:
                raise InvalidInput("agent_user_id", "is not a user of the account")
            password = (
                await uow.secrets.get(request.account_id, setup.password_ref)
                if setup.password_ref
                else None
            )
        hosts = [setup.trunk_host]
        if setup.outbound_proxy:
            hosts += sip_uri_hosts(setup.outbound_proxy)
        for host in hosts:
            try:
                await self._guard.check("trunk_host", host)
            except InvalidInput as exc:
                raise Unavailable(
                    "the account's telephony setup points to an address the service may not "
                    "call; the operator can open ranges with AFTERBEEP_ALLOW_PRIVATE_NETWORKS",
                    "address-not-allowed",
                ) from exc
        return CallbackPlan(OutsideCall(setup, password, customer, caller_id), account.language)
