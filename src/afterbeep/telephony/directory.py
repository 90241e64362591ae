"""Devices and their registrations in the database: the registrar's store and the `Directory`
the call applications ring people through. Every node of a cluster reads the same rows.

Look-ups run on the read-only direct units (as call routing does); writes on the writing ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from afterbeep.domain.clock import Clock
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.users import Device, Registration
from afterbeep.services.ports import UnitOfWorkFactory
from afterbeep.telephony.scripts.ringer import RingTarget
from afterbeep.telephony.sip.registrar import (
    Binding,
    DeviceSecret,
    LockoutPolicy,
    Received,
)


def secret_of(device: Device) -> DeviceSecret:
    return DeviceSecret(
        device.id,
        device.account_id,
        device.user_id,
        device.auth_username,
        device.ha1_md5,
        device.ha1_sha256,
    )


class SqlRegistrarStore:
    def __init__(
        self, uow: UnitOfWorkFactory, lookups: UnitOfWorkFactory, policy: LockoutPolicy
    ) -> None:
        self._uow = uow
        self._lookups = lookups
        self._policy = policy

    async def lookup(
        self, auth_username: str, subjects: Sequence[str], now: datetime
    ) -> tuple[DeviceSecret | None, bool]:
        async with self._lookups() as uow:
            device = await uow.devices.by_auth_username(auth_username)
            locked = False
            for subject in subjects:
                if self._policy.locked(await uow.sip_auth_failures.get(subject), now):
                    locked = True
        return (secret_of(device) if device is not None else None), locked

    async def failed(self, subjects: Sequence[str], now: datetime) -> bool:
        locked = False
        async with self._uow() as uow:
            for subject in subjects:
                record = self._policy.failed(
                    await uow.sip_auth_failures.get(subject), subject, now
                )
                await uow.sip_auth_failures.put(record)
                locked = locked or self._policy.locked(record, now)
        return locked

    async def succeeded(self, subject: str) -> None:
        async with self._lookups() as uow:
            if await uow.sip_auth_failures.get(subject) is None:
                return
        async with self._uow() as uow:
            await uow.sip_auth_failures.clear(subject)

    async def bind(
        self,
        device: DeviceSecret,
        bindings: Sequence[Binding] | None,
        received: Received,
        now: datetime,
    ) -> list[tuple[str, datetime]]:
        async with self._uow() as uow:
            if bindings is None:
                await uow.registrations.remove(device.device_id, None)
            else:
                for binding in bindings:
                    if binding.expires == 0:
                        await uow.registrations.remove(device.device_id, binding.uri)
                        continue
                    await uow.registrations.put(
                        Registration(
                            id=new_id("reg"),
                            account_id=device.account_id,
                            device_id=device.device_id,
                            user_id=device.user_id,
                            contact=binding.uri,
                            expires_at=now + timedelta(seconds=binding.expires),
                            source_host=received.host,
                            source_port=received.port,
                            transport=received.transport,
                            path=received.path,
                            call_id=received.call_id,
                            cseq=received.cseq,
                            user_agent=received.user_agent[:200] if received.user_agent else None,
                            created_at=now,
                            updated_at=now,
                        )
                    )
            current = await uow.registrations.of_device(device.device_id, now)
        return [(r.contact, r.expires_at) for r in current]

    async def reap(self, now: datetime) -> int:
        async with self._uow() as uow:
            return await uow.registrations.reap(now)


def target_of(registration: Registration) -> RingTarget:
    return RingTarget(
        uri=registration.contact,
        label=f"{registration.user_id}/{registration.device_id}",
        path=registration.path,
        source=(registration.source_host, registration.source_port),
        transport=registration.transport,
    )


class RegistrationDirectory:
    """`Directory` over the registrations table (unexpired contacts only)."""

    def __init__(self, lookups: UnitOfWorkFactory, clock: Clock) -> None:
        self._lookups = lookups
        self._clock = clock

    async def user_targets(self, account_id: str, user_id: str) -> list[RingTarget]:
        if not is_id(user_id, "usr"):
            return []
        async with self._lookups() as uow:
            found = await uow.registrations.of_user(account_id, user_id, self._clock.now())
        return [target_of(r) for r in found]

    async def device_targets(self, account_id: str, device_id: str) -> list[RingTarget]:
        if not is_id(device_id, "dev"):
            return []
        async with self._lookups() as uow:
            device = await uow.devices.get(account_id, device_id)
            found = [] if device is None else await uow.registrations.of_device(device_id, self._clock.now())
        return [target_of(r) for r in found]

