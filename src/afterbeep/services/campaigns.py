"""CampaignService: create a campaign (one send per unique recipient) and pause, resume or
cancel it; its progress is counted from its sends.

Creating checks the use case (its channel must match the method), the media (MP3, 10 to
60 s, at most 8 MB) and the sender before reading the recipients, then parses every recipient
like the `to` of a single send. A list with invalid rows is refused as a whole (`InvalidRecipients`,
naming the rows) unless `skip_invalid` is set, in which case those rows are left out and
reported. The campaign row and all its sends are then written in one transaction (bulk inserts),
so a campaign exists with all of its sends or not at all. Each send is `accepted` with
`send_at = start_at`, so the delivery engine holds it until then.

Campaign sends publish no `voicemail.status` / `drop.status` event when they are accepted or
skipped by a cancel (a campaign of 100,000 recipients would queue 100,000 webhook calls at
once); every later change the delivery engine makes is published as for any send.
"""

from __future__ import annotations

import asyncio
import csv
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from afterbeep.domain.campaigns import (
    CAMPAIGN_CANCELED,
    Campaign,
    CampaignAction,
    CampaignProgress,
    CampaignStatus,
    InvalidRecipients,
    RecipientError,
    RecipientList,
    bad_csv,
    channel_for,
    check_name,
    method_for,
    next_status,
    normalise_recipients,
    recipients_from_csv,
    recipients_from_list,
    shown_status,
)
from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import InvalidInput, NotFound
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.ringless import (
    DropTechnique,
    SendKind,
    SendStatus,
    TelephonySetup,
    UseCase,
    VoicemailSend,
    pick_sender,
)
from afterbeep.services.ports import Page, UnitOfWork, UnitOfWorkFactory
from afterbeep.services.ringless import stored_send_media

log = logging.getLogger("afterbeep.campaigns")

MAX_PAGE_LIMIT = 200
# Lists longer than this are parsed off the event loop (phonenumbers takes ~50 µs a number).
THREAD_THRESHOLD = 500


@dataclass(frozen=True, slots=True)
class CampaignSpec:
    use_case_id: str
    media_id: str
    method: SendKind | None = None  # None: the use case's channel decides
    technique: DropTechnique | None = None
    name: str | None = None
    start_at: datetime | None = None
    skip_invalid: bool = False


@dataclass(frozen=True, slots=True)
class CampaignView:
    campaign: Campaign
    status: CampaignStatus  # as shown (scheduled / completed derived)
    progress: CampaignProgress


@dataclass(frozen=True, slots=True)
class CampaignCreated:
    view: CampaignView
    invalid: list[RecipientError] = field(default_factory=list)
    invalid_count: int = 0
    duplicates: int = 0


class CampaignService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        default_region: str,
        on_accepted: Callable[[], None] | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._region = default_region
        self.on_accepted = on_accepted

    # -- creating --------------------------------------------------------------------

    async def create(
        self,
        account_id: str,
        spec: CampaignSpec,
        *,
        recipients: Sequence[str] | None = None,
        csv_path: Path | None = None,
    ) -> CampaignCreated:
        """A campaign to `recipients` (raw numbers) or to the numbers of the CSV at `csv_path`."""
        if (recipients is None) == (csv_path is None):
            raise InvalidInput("recipients", "send a list of numbers or a CSV file")
        name = check_name(spec.name)
        if spec.start_at is not None and spec.start_at.tzinfo is None:
            raise InvalidInput("start_at", "needs a time zone offset")
        async with self._uow() as uow:
            use_case, setup = await self._use_case(uow, account_id, spec.use_case_id)
            media = await stored_send_media(uow, account_id, spec.media_id)
        method = spec.method or method_for(use_case.channel)
        if use_case.channel is not channel_for(method):
            raise InvalidInput(
                "use_case_id",
                f"is a {use_case.channel.value} use case; method {method.value} needs "
                f"{channel_for(method).value}",
                error_id="wrong-channel",
            )
        technique = spec.technique
        if method is SendKind.DROP:
            technique = technique or DropTechnique.TWO_CALL
        elif technique is not None:
            raise InvalidInput("technique", "is for drops only")
        found = await self._recipients(recipients, csv_path)
        if found.invalid_count and not spec.skip_invalid:
            raise InvalidRecipients(found.invalid, found.invalid_count)
        if not found.numbers:
            raise InvalidInput("recipients", "no valid recipient", error_id="no-recipients")
        # Fails early (no verified number to send from) before anything is written.
        pick_sender(use_case, setup.numbers, found.numbers[0], 0)

        now = self._clock.now()
        start_at = spec.start_at.astimezone(UTC) if spec.start_at is not None else None
        campaign = Campaign(
            id=new_id("camp"),
            account_id=account_id,
            name=name,
            use_case_id=use_case.id,
            media_id=media.id,
            method=method,
            technique=technique,
            status=CampaignStatus.RUNNING,
            start_at=start_at,
            recipients_total=len(found.numbers),
            created_at=now,
            updated_at=now,
        )
        async with self._uow() as uow:
            turn = await uow.campaigns.reserve_senders(account_id, use_case.id, len(found.numbers))
            if turn is None:
                raise _unknown_use_case()
            sends = _sends(campaign, use_case, setup, found.numbers, turn, now)
            await uow.campaigns.add(campaign)
            await uow.campaigns.add_sends(sends)
        log.info(
            "campaign %s created: %d recipients, %d invalid left out, %d duplicates",
            campaign.id,
            len(found.numbers),
            found.invalid_count,
            found.duplicates,
        )
        if self.on_accepted is not None:
            self.on_accepted()
        progress = CampaignProgress.of(method, {SendStatus.ACCEPTED: len(sends)})
        view = CampaignView(campaign, shown_status(campaign, progress, now), progress)
        return CampaignCreated(view, found.invalid, found.invalid_count, found.duplicates)

    async def _use_case(
        self, uow: UnitOfWork, account_id: str, use_case_id: str
    ) -> tuple[UseCase, TelephonySetup]:
        use_case = (
            await uow.use_cases.get(account_id, use_case_id) if is_id(use_case_id, "uc") else None
        )
        if use_case is None:
            raise _unknown_use_case()
        setup = await uow.telephony_setups.get(account_id, use_case.setup_id)
        if setup is None:
            raise _unknown_use_case()
        return use_case, setup

    async def _recipients(
        self, recipients: Sequence[str] | None, csv_path: Path | None
    ) -> RecipientList:
        if csv_path is not None:
            return await asyncio.to_thread(_read_csv, csv_path, self._region)
        assert recipients is not None
        rows = recipients_from_list(recipients)
        if len(recipients) > THREAD_THRESHOLD:
            return await asyncio.to_thread(normalise_recipients, rows, self._region)
        return normalise_recipients(rows, self._region)

    # -- reading ---------------------------------------------------------------------

    async def get(self, account_id: str, campaign_id: str) -> CampaignView:
        async with self._uow() as uow:
            campaign = await _campaign_of(uow, account_id, campaign_id)
            counts = await uow.campaigns.progress([campaign.id])
        return self._view(campaign, counts[campaign.id])

    async def list(
        self, account_id: str, cursor: str | None = None, limit: int = 50
    ) -> Page[CampaignView]:
        if not 1 <= limit <= MAX_PAGE_LIMIT:
            raise InvalidInput("limit", f"must be 1 to {MAX_PAGE_LIMIT}")
        async with self._uow() as uow:
            page = await uow.campaigns.list(account_id, cursor, limit)
            counts = await uow.campaigns.progress([c.id for c in page.items])
        return Page([self._view(c, counts[c.id]) for c in page.items], page.next_cursor)

    def _view(self, campaign: Campaign, counts: dict[SendStatus, int]) -> CampaignView:
        progress = CampaignProgress.of(campaign.method, counts)
        return CampaignView(campaign, shown_status(campaign, progress, self._clock.now()), progress)

    # -- pause, resume, cancel -----------------------------------------------------------

    async def pause(self, account_id: str, campaign_id: str) -> CampaignView:
        """Sends not yet attempted wait as `paused`; sends in flight finish."""
        return await self._act(account_id, campaign_id, CampaignAction.PAUSE)

    async def resume(self, account_id: str, campaign_id: str) -> CampaignView:
        return await self._act(account_id, campaign_id, CampaignAction.RESUME)

    async def cancel(self, account_id: str, campaign_id: str) -> CampaignView:
        """Sends not yet attempted end `skipped` (`campaign_canceled`); sends in flight finish."""
        return await self._act(account_id, campaign_id, CampaignAction.CANCEL)

    async def _act(self, account_id: str, campaign_id: str, action: CampaignAction) -> CampaignView:
        now = self._clock.now()
        async with self._uow() as uow:
            campaign = await _campaign_of(uow, account_id, campaign_id, for_update=True)
            counts = await uow.campaigns.progress([campaign.id])
            progress = CampaignProgress.of(campaign.method, counts[campaign.id])
            status = next_status(action, shown_status(campaign, progress, now))
            await uow.campaigns.set_status(account_id, campaign.id, status, now)
            if action is CampaignAction.PAUSE:
                moved = await uow.campaigns.pause_sends(campaign.id, now)
            elif action is CampaignAction.RESUME:
                moved = await uow.campaigns.resume_sends(campaign.id, now)
            else:
                moved = await uow.campaigns.skip_waiting_sends(campaign.id, CAMPAIGN_CANCELED, now)
            counts = await uow.campaigns.progress([campaign.id])
        log.info("campaign %s %s: %d sends moved", campaign.id, action.value, moved)
        if action is CampaignAction.RESUME and self.on_accepted is not None:
            self.on_accepted()
        updated = replace(campaign, status=status, updated_at=now)
        return self._view(updated, counts[campaign.id])


def _sends(
    campaign: Campaign,
    use_case: UseCase,
    setup: TelephonySetup,
    numbers: Sequence[str],
    turn: int,
    now: datetime,
) -> list[VoicemailSend]:
    return [
        VoicemailSend.accepted(
            account_id=campaign.account_id,
            use_case_id=use_case.id,
            setup_id=setup.id,
            media_id=campaign.media_id,
            from_e164=pick_sender(use_case, setup.numbers, to, turn + i),
            to_e164=to,
            now=now,
            send_at=campaign.start_at,
            kind=campaign.method,
            technique=campaign.technique,
            campaign_id=campaign.id,
        )
        for i, to in enumerate(numbers)
    ]


def _read_csv(path: Path, region: str) -> RecipientList:
    """The CSV's recipients; undecodable or malformed files are `bad-csv`."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        try:
            # Counted in full first: a file over the limit is refused before any number is parsed.
            rows = list(recipients_from_csv(csv.reader(handle)))
        except UnicodeDecodeError as exc:
            raise bad_csv("the CSV is not UTF-8 text") from exc
        except csv.Error as exc:
            raise bad_csv(f"the CSV does not parse: {exc}") from exc
    return normalise_recipients(rows, region)


async def _campaign_of(
    uow: UnitOfWork, account_id: str, campaign_id: str, *, for_update: bool = False
) -> Campaign:
    found = (
        await uow.campaigns.get(account_id, campaign_id, for_update=for_update)
        if is_id(campaign_id, "camp")
        else None
    )
    if found is None:
        raise NotFound("campaign", campaign_id[:40])
    return found


def _unknown_use_case() -> InvalidInput:
    return InvalidInput(
        "use_case_id", "no use case with this id in your account", error_id="unknown-reference"
    )
