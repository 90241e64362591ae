"""SQL repository for campaigns: the campaign rows, their sends inserted in bulk, progress
counts, and the status moves of the sends a pause, resume or cancel applies to.

A send in flight holds a live lease (`claimed_until` in the future) and stays `accepted`, so
the delivery engine's lease-guarded writes still find it; only sends no lease holds move.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from afterbeep.db import tables as t
from afterbeep.db.repos._paging import page_query, split_page
from afterbeep.db.repos.ringless import send_values
from afterbeep.domain.campaigns import Campaign, CampaignStatus
from afterbeep.domain.ringless import DropTechnique, SendKind, SendStatus, VoicemailSend
from afterbeep.services.ports import Page

_C = t.campaigns
_V = t.voicemail_sends
_U = t.use_cases
# Rows per INSERT statement: well under SQLite's and asyncpg's bound-parameter limits.
INSERT_CHUNK = 1000


def campaign_from_row(row: Any) -> Campaign:
    return Campaign(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        use_case_id=row.use_case_id,
        media_id=row.media_id,
        method=SendKind(row.method),
        technique=DropTechnique(row.technique) if row.technique else None,
        status=CampaignStatus(row.status),
        start_at=row.start_at,
        recipients_total=row.recipients_total,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )




class SqlCampaignRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, campaign: Campaign) -> None:
        await self._conn.execute(
            insert(_C).values(
                id=campaign.id,
                account_id=campaign.account_id,
                name=campaign.name,
                use_case_id=campaign.use_case_id,
                media_id=campaign.media_id,
                method=campaign.method.value,
                technique=campaign.technique.value if campaign.technique else None,
                status=campaign.status.value,
                start_at=campaign.start_at,
                recipients_total=campaign.recipients_total,
                created_at=campaign.created_at,
                updated_at=campaign.updated_at,
            )
        )

    async def add_sends(self, sends: Sequence[VoicemailSend]) -> None:
        for start in range(0, len(sends), INSERT_CHUNK):
            chunk = [send_values(s) for s in sends[start : start + INSERT_CHUNK]]
            await self._conn.execute(insert(_V), chunk)

    async def reserve_senders(self, account_id: str, use_case_id: str, count: int) -> int | None:
        query = (
            update(_U)
            .where(_U.c.id == use_case_id, _U.c.account_id == account_id)
            .values(rr_next=_U.c.rr_next + count)
            .returning(_U.c.rr_next)
        )
        after = (await self._conn.execute(query)).scalar_one_or_none()
        return None if after is None else int(after) - count

    async def get(
        self, account_id: str, campaign_id: str, *, for_update: bool = False
    ) -> Campaign | None:
        query = select(_C).where(_C.c.id == campaign_id, _C.c.account_id == account_id)
        if for_update and self._conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await self._conn.execute(query)).first()
        return campaign_from_row(row) if row else None

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[Campaign]:
        query = page_query(select(_C).where(_C.c.account_id == account_id), _C.c.id, cursor, limit)
        rows, next_cursor = split_page((await self._conn.execute(query)).all(), limit)
        return Page([campaign_from_row(r) for r in rows], next_cursor)

    async def progress(
        self, campaign_ids: Sequence[str]
    ) -> dict[str, builtins.dict[SendStatus, int]]:
        found: dict[str, dict[SendStatus, int]] = {i: {} for i in campaign_ids}
        if not campaign_ids:
            return found
        query = (
            select(_V.c.campaign_id, _V.c.status, func.count())
            .where(_V.c.campaign_id.in_(list(campaign_ids)))
            .group_by(_V.c.campaign_id, _V.c.status)
        )
        for campaign_id, status, n in (await self._conn.execute(query)).all():
            found[campaign_id][SendStatus(status)] = int(n)
        return found

    async def set_status(
        self, account_id: str, campaign_id: str, status: CampaignStatus, now: datetime
    ) -> None:
        await self._conn.execute(
            update(_C)
            .where(_C.c.id == campaign_id, _C.c.account_id == account_id)
            .values(status=status.value, updated_at=now)
        )

    async def pause_sends(self, campaign_id: str, now: datetime) -> int:
        return await self._move(
            campaign_id, _waiting(now), {"status": SendStatus.PAUSED.value, "updated_at": now}
        )

    async def resume_sends(self, campaign_id: str, now: datetime) -> int:
        return await self._move(
            campaign_id,
            _V.c.status == SendStatus.PAUSED.value,
            {"status": SendStatus.ACCEPTED.value, "updated_at": now},
        )

    async def skip_waiting_sends(self, campaign_id: str, reason: str, now: datetime) -> int:
        return await self._move(
            campaign_id,
            or_(_V.c.status == SendStatus.PAUSED.value, _waiting(now)),
            {
                "status": SendStatus.SKIPPED.value,
                "skip_reason": reason,
                "next_attempt_at": None,
                "claimed_until": None,
                "updated_at": now,
            },
        )

    async def _move(self, campaign_id: str, which: Any, values: dict[str, Any]) -> int:
        result = await self._conn.execute(
            update(_V).where(_V.c.campaign_id == campaign_id, which).values(**values)
        )
        return int(result.rowcount or 0)


def _waiting(now: datetime) -> Any:
    """Accepted and not in flight: no lease, or only an expired one."""
    return and_(
        _V.c.status == SendStatus.ACCEPTED.value,
        or_(_V.c.claimed_until.is_(None), _V.c.claimed_until <= now),
    )
