"""The outreach dashboard (admins): per setup and use case, sends by status over the last days
(an inline SVG chart), the delivery rate and failure reasons; the follow-up list (CSV too);
campaigns with their progress and pause / resume / cancel; drops by `answered_by`.

Every number comes from `RinglessService` and `CampaignService`, as `GET /v1/voicemails/stats`,
`/v1/drops/stats` and `/v1/campaigns` answer it; the pages only lay them out."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import RedirectResponse, Response

from afterbeep.domain.errors import Conflict, InvalidInput, NotFound
from afterbeep.domain.ringless import (
    Channel,
    SendKind,
    SendStats,
    SendStatus,
    TelephonySetup,
    UseCase,
    VoicemailSend,
    answered_by_counts,
)
from afterbeep.services.ports.ringless import SendFilter
from afterbeep.web.session import Form, PageError, SignedIn, Web, WebServices, admin_only, not_found
from afterbeep.web.templating import SECURITY_HEADERS, page

router = APIRouter(include_in_schema=False)

Days = Annotated[int, Query(ge=1, le=31)]
CampaignAction = Annotated[str, Path(pattern="^(pause|resume|cancel)$")]
MAX_ITEMS = 200  # use cases, setups, campaigns listed
MAX_CHARTED = 20  # use cases drawn day by day (one stats query a day each); the rest: totals
CHART_HEIGHT = 120
BAR_WIDTH = 18
BAR_GAP = 6
# Colours by status are in the stylesheet (`.st-<status>`); this is the stacking order.
STATUS_ORDER = [
    SendStatus.DELIVERED, SendStatus.LEFT_VOICEMAIL, SendStatus.ACCEPTED, SendStatus.PAUSED,
    SendStatus.HUMAN_ANSWERED, SendStatus.NO_ANSWER, SendStatus.BUSY, SendStatus.SKIPPED,
    SendStatus.FAILED,
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Bar:
    x: int
    y: float
    height: float
    status: str
    count: int
    day: str


@dataclass(frozen=True, slots=True)
class UseCaseRow:
    use_case: UseCase
    setup: TelephonySetup | None
    kind: SendKind
    stats: SendStats
    rate: float | None
    bars: list[Bar]
    chart_width: int


def _window(web: WebServices, days: int) -> tuple[datetime, list[datetime]]:
    """Midnight UTC `days - 1` days ago, and each day's start since."""
    today = web.clock.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [today - timedelta(days=days - 1 - i) for i in range(days)]
    return starts[0], starts


def _kind(use_case: UseCase) -> SendKind:
    return SendKind.DROP if use_case.channel is Channel.VOICEMAIL_DROP else SendKind.RINGLESS


def _rate(kind: SendKind, stats: SendStats) -> float | None:
    """The rate the stats endpoints give: delivered, or for drops left in voicemail."""
    return stats.delivery_rate if kind is SendKind.RINGLESS else stats.left_voicemail_rate


def _bars(daily: list[tuple[datetime, SendStats]]) -> list[Bar]:
    top = max([s.total for _, s in daily] + [1])
    bars: list[Bar] = []
    for i, (day, stats) in enumerate(daily):
        y = float(CHART_HEIGHT)
        for status in STATUS_ORDER:
            n = stats.counts.get(status, 0)
            if not n:
                continue
            height = n / top * (CHART_HEIGHT - 4)
            y -= height
            bars.append(Bar(i * (BAR_WIDTH + BAR_GAP), y, height, status.value, n, day.date().isoformat()))
    return bars


async def _all_use_cases(web: WebServices, account_id: str) -> list[UseCase]:
    page_ = await web.api.ringless.list_use_cases(account_id, limit=MAX_ITEMS)
    return sorted(page_.items, key=lambda u: (u.name.lower(), u.id))


async def _use_case_rows(web: WebServices, account_id: str, days: int) -> list[UseCaseRow]:
    start, starts = _window(web, days)
    setups = {s.id: s for s in (await web.api.ringless.list_setups(account_id, None, MAX_ITEMS)).items}
    rows = []
    for n, use_case in enumerate(await _all_use_cases(web, account_id)):
        kind = _kind(use_case)
        where = SendFilter(use_case_id=use_case.id, created_after=start, kind=kind)
        stats = await web.api.ringless.stats(account_id, where)
        daily = []
        for i, day in enumerate(starts if n < MAX_CHARTED else []):
            end = starts[i + 1] if i + 1 < len(starts) else None
            one = SendFilter(use_case_id=use_case.id, created_after=day, created_before=end, kind=kind)
            daily.append((day, await web.api.ringless.stats(account_id, one)))
        setup = setups.get(use_case.setup_id)
        width = days * (BAR_WIDTH + BAR_GAP)
        rows.append(UseCaseRow(use_case, setup, kind, stats, _rate(kind, stats), _bars(daily), width))
    return sorted(rows, key=lambda r: ((r.setup.name.lower() if r.setup else ""), r.use_case.name.lower()))


@dataclass(frozen=True, slots=True)
class SetupRow:
    setup: TelephonySetup
    kind: SendKind
    stats: SendStats
    rate: float | None


async def _setup_rows(web: WebServices, account_id: str, days: int) -> list[SetupRow]:
    """Each setup's sends of each kind (the stats endpoints' `setup_id` filter)."""
    start, _ = _window(web, days)
    rows = []
    for setup in (await web.api.ringless.list_setups(account_id, None, MAX_ITEMS)).items:
        for kind in (SendKind.RINGLESS, SendKind.DROP):
            where = SendFilter(setup_id=setup.id, created_after=start, kind=kind)
            stats = await web.api.ringless.stats(account_id, where)
            if stats.total:
                rows.append(SetupRow(setup, kind, stats, _rate(kind, stats)))
    return sorted(rows, key=lambda r: (r.setup.name.lower(), r.setup.id, r.kind.value))


async def _follow_ups(web: WebServices, account_id: str, days: int) -> tuple[list[VoicemailSend], bool]:
    start, _ = _window(web, days)
    found: list[VoicemailSend] = []
    cut = False
    for kind in (SendKind.RINGLESS, SendKind.DROP):
        sends, more = await web.api.ringless.follow_ups(
            account_id, SendFilter(created_after=start, kind=kind)
        )
        found += sends
        cut = cut or more
    return sorted(found, key=lambda s: (s.created_at, s.id), reverse=True), cut


@router.get("/outreach")
async def dashboard(request: Request, web: Web, who: SignedIn, days: Days = 14) -> Response:
    member = admin_only(who)
    account_id = member.account_id
    start, _ = _window(web, days)
    rows = await _use_case_rows(web, account_id, days)
    follow, follow_cut = await _follow_ups(web, account_id, days)
    drops, drops_cut = await web.api.ringless.scan_sends(
        account_id, SendFilter(created_after=start, kind=SendKind.DROP)
    )
    campaigns = (await web.api.campaigns.list(account_id, None, MAX_ITEMS)).items
    context = {
        "csrf": who.csrf,
        "member": member,
        "days": days,
        "start": start,
        "rows": rows,
        "setup_rows": await _setup_rows(web, account_id, days),
        "statuses": [s.value for s in STATUS_ORDER],
        "reached": {"ringless": SendStatus.DELIVERED, "drop": SendStatus.LEFT_VOICEMAIL},
        "failed_status": SendStatus.FAILED,
        "skipped_status": SendStatus.SKIPPED,
        "chart_height": CHART_HEIGHT,
        "bar_width": BAR_WIDTH,
        "follow": follow[:100],
        "follow_total": len(follow),
        "follow_cut": follow_cut,
        "answered_by": answered_by_counts(drops),
        "drops_total": len(drops),
        "drops_cut": drops_cut,
        "campaigns": campaigns,
        "use_case_names": {r.use_case.id: r.use_case.name for r in rows},
    }
    return page(request, "outreach.html", context)


@router.get("/outreach/follow-up.csv")
async def follow_up_csv(web: Web, who: SignedIn, days: Days = 14) -> Response:
    member = admin_only(who)
    follow, _cut = await _follow_ups(web, member.account_id, days)
    names = {u.id: u.name for u in await _all_use_cases(web, member.account_id)}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["to", "last_status", "reason", "kind", "use_case", "send_id", "created_at"])
    for s in follow:
        writer.writerow(
            [s.to_e164, s.status.value, s.reason or "", s.kind.value, names.get(s.use_case_id, s.use_case_id),
             s.id, s.created_at.isoformat()]
        )  # fmt: skip
    headers = {
        **SECURITY_HEADERS,
        "Content-Disposition": 'attachment; filename="follow-up.csv"',
    }
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


@router.post("/outreach/campaigns/{campaign_id}/{action}")
async def campaign_action(
    campaign_id: str, action: CampaignAction, web: Web, who: SignedIn, form: Form
) -> Response:
    member = admin_only(who)
    campaigns = web.api.campaigns
    act = {"pause": campaigns.pause, "resume": campaigns.resume, "cancel": campaigns.cancel}[action]
    try:
        await act(member.account_id, campaign_id)
    except NotFound as exc:
        raise not_found() from exc
    except (Conflict, InvalidInput) as exc:
        raise PageError(409, "Not now", exc.message) from exc
    return RedirectResponse(f"/outreach#campaign-{campaign_id}", status_code=303)
