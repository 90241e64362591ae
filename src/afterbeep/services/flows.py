"""FlowService: an account's call flows, saved as numbered versions of their graph.

Saving checks the graph with `afterbeep.domain.flows` and then every id its nodes refer to:
media, mailboxes and schedules must exist in the same account; queues, ring groups and users
are refused until the issue that builds them. Every error is raised at once
(`InvalidFlow`), and nothing is stored then. A save makes a new version and leaves the older
ones readable, so a call keeps the version it started with.
"""

from __future__ import annotations

import builtins
import json
from typing import Any

from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import Conflict, InvalidFlow, NotFound
from afterbeep.domain.flows import FlowError, RefKind, check_flow, reference_sites
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.numbers import DestKind
from afterbeep.services.numbers import name_users
from afterbeep.services.ports import Page, UnitOfWork, UnitOfWorkFactory
from afterbeep.services.ports.flows import Flow, FlowVersion

# Node kinds whose targets do not exist yet: accepted by the domain, refused when saved here.
_LATER = {
    RefKind.QUEUE: "queue",
    RefKind.RING_GROUP: "ring group",
    RefKind.USER: "user",
}
# The references whose existence in the account is checked when a flow is saved.
CHECKED_IN_ACCOUNT = (RefKind.MEDIA, RefKind.MAILBOX, RefKind.SCHEDULE)
_PREFIX = {RefKind.MEDIA: "media", RefKind.MAILBOX: "vm", RefKind.SCHEDULE: "sch"}


class FlowService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def create(
        self, account_id: str, name: str, nodes: list[Any], edges: list[Any]
    ) -> FlowVersion:
        now = self._clock.now()
        graph = {"nodes": nodes, "edges": edges}
        flow = Flow(new_id("flow"), account_id, name, 1, now, now)
        saved = FlowVersion(flow, 1, graph, now)
        async with self._uow() as uow:
            await _check(uow, account_id, nodes, edges)
            await uow.flows.add(saved)
        return saved

    async def get(self, account_id: str, flow_id: str) -> FlowVersion:
        _check_id(flow_id)
        async with self._uow() as uow:
            flow = await uow.flows.get(account_id, flow_id)
            found = (
                None
                if flow is None
                else await uow.flows.get_version(account_id, flow_id, flow.version)
            )
        if found is None:
            raise NotFound("flow", flow_id)
        return found

    async def version(self, account_id: str, flow_id: str, version: int) -> FlowVersion:
        _check_id(flow_id)
        async with self._uow() as uow:
            flow = await uow.flows.get(account_id, flow_id)
            if flow is None:
                raise NotFound("flow", flow_id)
            found = await uow.flows.get_version(account_id, flow_id, version)
        if found is None:
            raise NotFound("flow version", f"{flow_id}/versions/{version}")
        return found

    async def list(self, account_id: str, cursor: str | None = None, limit: int = 50) -> Page[Flow]:
        async with self._uow() as uow:
            return await uow.flows.list(account_id, cursor, limit)

    async def replace(
        self,
        account_id: str,
        flow_id: str,
        name: str,
        nodes: builtins.list[Any],
        edges: builtins.list[Any],
    ) -> FlowVersion:
        """Save the graph as the flow's next version; the older versions stay readable."""
        _check_id(flow_id)
        now = self._clock.now()
        graph = {"nodes": nodes, "edges": edges}
        async with self._uow() as uow:
            if await uow.flows.get(account_id, flow_id) is None:
                raise NotFound("flow", flow_id)
            await _check(uow, account_id, nodes, edges)
            version = await uow.flows.add_version(account_id, flow_id, name, graph, now)
            saved = (
                None
                if version is None
                else await uow.flows.get_version(account_id, flow_id, version)
            )
        if saved is None:
            raise NotFound("flow", flow_id)
        return saved

    async def delete(self, account_id: str, flow_id: str) -> None:
        """Remove the flow and its versions; refused (`Conflict`) while a number routes calls
        to it (as its destination, closed-hours or holiday destination), naming them."""
        _check_id(flow_id)
        async with self._uow() as uow:
            users = await self.in_use(uow, account_id, flow_id)
            if users:
                raise Conflict(
                    f"flow {flow_id!r} is used by {name_users('numbers', users)}", "flow-in-use"
                )
            if not await uow.flows.delete(account_id, flow_id):
                raise NotFound("flow", flow_id)

    async def in_use(self, uow: UnitOfWork, account_id: str, flow_id: str) -> builtins.list[str]:
        """The ids of the numbers routing calls to the flow (empty: not in use)."""
        numbers = await uow.numbers.numbers_pointing_to(account_id, DestKind.FLOW, flow_id)
        return [number.id for number in numbers]


async def _check(uow: UnitOfWork, account_id: str, nodes: list[Any], edges: list[Any]) -> None:
    try:
        json.dumps([nodes, edges], allow_nan=False)
    except ValueError as exc:
        # NaN and Infinity parse in Python but are not JSON: no database column takes them.
        problem = FlowError(None, None, "body", "numbers must be finite (no NaN or Infinity)")
        raise InvalidFlow([problem.as_dict()]) from exc
    graph, errors = check_flow(nodes, edges)
    if not graph.too_large:
        sites = reference_sites(graph)
        wanted: dict[RefKind, set[str]] = {kind: set() for kind in CHECKED_IN_ACCOUNT}
        for site in sites:
            prefix = _PREFIX.get(site.kind)
            if prefix is not None and is_id(site.id, prefix) and site.kind in wanted:
                wanted[site.kind].add(site.id)
        found = {
            RefKind.MEDIA: await uow.flows.existing_media(account_id, wanted[RefKind.MEDIA]),
            RefKind.MAILBOX: await uow.flows.existing_mailboxes(
                account_id, wanted[RefKind.MAILBOX]
            ),
            RefKind.SCHEDULE: await uow.flows.existing_schedules(
                account_id, wanted[RefKind.SCHEDULE]
            ),
        }
        for site in sites:
            message = _reference_problem(site.kind, site.id, found)
            if message is not None:
                errors.append(FlowError(site.node_id, None, site.field, message))
    if errors:
        raise InvalidFlow([error.as_dict() for error in errors])


def _reference_problem(kind: RefKind, ref: str, found: dict[RefKind, set[str]]) -> str | None:
    if kind in _LATER:
        return f"{_LATER[kind]} nodes live in a later issue: a flow cannot use them yet"
    prefix = _PREFIX[kind]
    if not is_id(ref, prefix):
        return f"is not a {kind.value} id ({prefix}_...)"
    if kind in found and ref not in found[kind]:
        return f"{kind.value} {ref!r} was not found in this account"
    return None


def _check_id(flow_id: str) -> None:
    # Not a flow id at all: it cannot exist, and must not reach a query.
    if not is_id(flow_id, "flow"):
        raise NotFound("flow", flow_id[:40])
