"""What the campaign service needs from storage: campaigns, their sends in bulk, and the
status changes a pause, resume or cancel makes to the sends not yet attempted."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from afterbeep.domain.campaigns import Campaign, CampaignStatus
from afterbeep.domain.ringless import SendStatus, VoicemailSend

if TYPE_CHECKING:
    from afterbeep.services.ports import Page


class CampaignRepo(Protocol):
    async def add(self, campaign: Campaign) -> None: ...

    async def add_sends(self, sends: Sequence[VoicemailSend]) -> None:
        """Insert the sends in a few statements (no event published per send)."""
        ...

    async def reserve_senders(self, account_id: str, use_case_id: str, count: int) -> int | None:
        """Advance the use case's round-robin cursor by `count`; the position before, or None
        when the use case is not in the account."""
        ...

    async def get(
        self, account_id: str, campaign_id: str, *, for_update: bool = False
    ) -> Campaign | None:
        """`for_update` locks the row until the transaction ends (status changes)."""
        ...

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[Campaign]:
        """Newest first."""
        ...

    async def progress(
        self, campaign_ids: Sequence[str]
    ) -> dict[str, dict[SendStatus, int]]:
        """Counts of each campaign's sends per status (statuses with none are left out)."""
        ...

    async def set_status(
        self, account_id: str, campaign_id: str, status: CampaignStatus, now: datetime
    ) -> None: ...

    async def pause_sends(self, campaign_id: str, now: datetime) -> int:
        """`accepted` sends of the campaign that no live lease holds (not in flight) become
        `paused`; how many."""
        ...

    async def resume_sends(self, campaign_id: str, now: datetime) -> int:
        """`paused` sends of the campaign become `accepted` again; how many."""
        ...

    async def skip_waiting_sends(self, campaign_id: str, reason: str, now: datetime) -> int:
        """`paused` sends and `accepted` ones not in flight become `skipped` with `reason`."""
        ...
