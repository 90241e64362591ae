"""Call centers (`/v1/call-centers`): the Telephony API's callers and routing configuration."""

from __future__ import annotations

import builtins
from dataclasses import dataclass, replace

from afterbeep.domain.call_centers import (
    CallCenter,
    Flow,
    Route,
    check_api_name,
    check_flows,
    check_org_id,
    check_public_key,
    check_routes,
    queue_ids,
)
from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import Conflict, InvalidInput, NotFound
from afterbeep.domain.ids import is_id, new_id
from afterbeep.services.ports import Page, UnitOfWork, UnitOfWorkFactory
from afterbeep.services.ring_groups import UNSET, Unset


@dataclass(frozen=True, slots=True)
class CallCenterChanges:
    api_name: str | Unset = UNSET
    org_id: str | Unset = UNSET
    public_key_pem: str | Unset = UNSET
    routes: builtins.list[Route] | Unset = UNSET
    flows: builtins.list[Flow] | Unset = UNSET


def _name_taken(api_name: str) -> Conflict:
    return Conflict(
        f"the account already has a call center named {api_name!r}", "call-center-name-taken"
    )


class CallCenterService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, default_region: str = "US") -> None:
        self._uow = uow
        self._clock = clock
        self._region = default_region

    async def _check_queues(self, uow: UnitOfWork, center: CallCenter) -> None:
        for queue_id in sorted(queue_ids(center)):
            if await uow.queues.get(center.account_id, queue_id) is None:
                named = [
                    *(f"routes[{n}]" for n, r in enumerate(center.routes)
                      if queue_id in (r.call_queue_id, r.voicemail_queue_id)),
                    *(f"flows[{n}]" for n, f in enumerate(center.flows)
                      if queue_id in (f.call_queue_id, f.voicemail_queue_id)),
                ]  # fmt: skip
                field = named[0]
                raise InvalidInput(field, f"names no queue of the account ({queue_id})")

    def _checked(self, center: CallCenter) -> CallCenter:
        return replace(
            center,
            api_name=check_api_name(center.api_name),
            org_id=check_org_id(center.org_id),
            public_key_pem=check_public_key(center.public_key_pem),
            routes=check_routes(center.routes, self._region),
            flows=check_flows(center.flows),
        )

    async def create(
        self,
        account_id: str,
        api_name: str,
        org_id: str,
        public_key_pem: str,
        routes: builtins.list[Route],
        flows: builtins.list[Flow],
    ) -> CallCenter:
        now = self._clock.now()
        center = self._checked(
            CallCenter(
                id=new_id("cc"),
                account_id=account_id,
                api_name=api_name,
                org_id=org_id,
                public_key_pem=public_key_pem,
                created_at=now,
                updated_at=now,
                routes=tuple(routes),
                flows=tuple(flows),
            )
        )
        async with self._uow() as uow:
            await self._check_queues(uow, center)
            if not await uow.call_centers.add(center):
                raise _name_taken(center.api_name)
        return center

    async def get(self, account_id: str, center_id: str) -> CallCenter:
        if not is_id(center_id, "cc"):
            raise NotFound("call center", center_id[:40])
        async with self._uow() as uow:
            center = await uow.call_centers.get(account_id, center_id)
        if center is None:
            raise NotFound("call center", center_id)
        return center

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[CallCenter]:
        async with self._uow() as uow:
            return await uow.call_centers.list(account_id, cursor, limit)

    async def update(
        self, account_id: str, center_id: str, changes: CallCenterChanges
    ) -> CallCenter:
        if not is_id(center_id, "cc"):
            raise NotFound("call center", center_id[:40])
        async with self._uow() as uow:
            current = await uow.call_centers.get(account_id, center_id)
            if current is None:
                raise NotFound("call center", center_id)
            center = current
            if not isinstance(changes.api_name, Unset):
                center = replace(center, api_name=changes.api_name)
            if not isinstance(changes.org_id, Unset):
                center = replace(center, org_id=changes.org_id)
            if not isinstance(changes.public_key_pem, Unset):
                center = replace(center, public_key_pem=changes.public_key_pem)
            if not isinstance(changes.routes, Unset):
                center = replace(center, routes=tuple(changes.routes))
            if not isinstance(changes.flows, Unset):
                center = replace(center, flows=tuple(changes.flows))
            center = replace(self._checked(center), updated_at=self._clock.now())
            await self._check_queues(uow, center)
            if not await uow.call_centers.update(center):
                raise _name_taken(center.api_name)
        return center

    async def delete(self, account_id: str, center_id: str) -> None:
        """Refused (409) once the call center has voice calls: they are its records."""
        if not is_id(center_id, "cc"):
            raise NotFound("call center", center_id[:40])
        async with self._uow() as uow:
            if await uow.call_centers.get(account_id, center_id) is None:
                raise NotFound("call center", center_id)
            if await uow.call_centers.has_voice_calls(center_id):
                raise Conflict(
                    "the call center has voice calls; it cannot be deleted", "call-center-in-use"
                )
            await uow.call_centers.delete(account_id, center_id)
