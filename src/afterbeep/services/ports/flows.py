"""Repository for call flows and the saved versions of their graphs."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from afterbeep.services.ports import Page


@dataclass(frozen=True, slots=True)
class Flow:
    id: str
    account_id: str
    name: str
    version: int  # the current one
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class FlowVersion:
    flow: Flow
    version: int
    # `{"nodes": [...], "edges": [...]}` as the caller saved it (editor fields such as a
    # node's `position` are kept).
    graph: dict[str, Any]
    created_at: datetime
    # The audio of every text the version speaks, made when it was saved:
    # `{"<node id>/<field>": "<media id>"}` (`domain.flows.speech_key`), e.g. `{"hello/text":
    # "media_..."}`; the field is `text` (say) or `promptText` (menu, collect).
    speech: dict[str, str] = field(default_factory=dict)


class FlowRepo(Protocol):
    async def add(self, version: FlowVersion) -> None:
        """Insert the flow and its first version."""
        ...

    async def get(self, account_id: str, flow_id: str) -> Flow | None: ...

    async def get_version(self, account_id: str, flow_id: str, version: int) -> FlowVersion | None:
        """Version `version` of the flow, if both exist in `account_id`."""
        ...

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[Flow]:
        """Newest first; `cursor` is a `next_cursor` from an earlier page."""
        ...

    async def add_version(
        self,
        account_id: str,
        flow_id: str,
        name: str,
        graph: dict[str, Any],
        now: datetime,
        speech: dict[str, str] | None = None,
    ) -> int | None:
        """Store `graph` as the flow's next version and make it current; the new number, or
        None when there is no such flow. Concurrent calls get distinct numbers."""
        ...

    async def delete(self, account_id: str, flow_id: str) -> bool:
        """Remove the flow and every version; False when there was none."""
        ...

    async def current_versions_mentioning(
        self, account_id: str, text: str
    ) -> builtins.list[FlowVersion]:
        """The current versions of the account's flows whose graph or speech map holds `text`
        somewhere (a cheap filter: the caller checks where)."""
        ...

    async def existing_media(self, account_id: str, ids: Iterable[str]) -> builtins.set[str]:
        """Which of `ids` are media of `account_id`."""
        ...

    async def existing_mailboxes(self, account_id: str, ids: Iterable[str]) -> builtins.set[str]:
        """Which of `ids` are mailboxes of `account_id`."""
        ...

    async def existing_schedules(self, account_id: str, ids: Iterable[str]) -> builtins.set[str]:
        """Which of `ids` are schedules of `account_id`."""
        ...
