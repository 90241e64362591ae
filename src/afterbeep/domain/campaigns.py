"""Campaigns: one recording sent to many recipients under one use case, ringless or drop.

A campaign owns one send per unique recipient (rows of `voicemail_sends` with its
`campaign_id`), which the delivery engine delivers like any other send. What is stored as the
campaign's status is what its owner last asked for (`running`, `paused`, `canceled`); the
status shown is derived on read from that, the start time and the counts of its sends:
`scheduled` before `start_at`, `completed` once every send is final.

Recipient lists (a JSON list, or a CSV file with a `to` / `number` column or a single column)
follow the rules below; every recipient is parsed like the `to` of a single send, duplicates
(after normalising to E.164) count once, and invalid rows are reported by row number.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from afterbeep.domain.errors import Conflict, InvalidInput, InvalidPhoneNumber
from afterbeep.domain.phone import to_e164
from afterbeep.domain.ringless import (
    DROP_STATUSES,
    FINAL_STATUSES,
    RINGLESS_STATUSES,
    Channel,
    DropTechnique,
    SendKind,
    SendStatus,
)

MAX_RECIPIENTS = 100_000
MAX_CSV_BYTES = 16 * 1024 * 1024
MAX_REPORTED_INVALID = 100
MAX_NAME_CHARS = 200
# The skip reason of the sends a canceled campaign had not attempted yet.
CAMPAIGN_CANCELED = "campaign_canceled"
# Header names (case-insensitive) of the recipient column, in order of preference.
RECIPIENT_COLUMNS = ("to", "number", "phone", "phone_number", "e164")


class CampaignStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELED = "canceled"
    COMPLETED = "completed"


STORED_STATUSES = frozenset({CampaignStatus.RUNNING, CampaignStatus.PAUSED, CampaignStatus.CANCELED})


class CampaignAction(enum.StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


_ALLOWED: Mapping[CampaignAction, frozenset[CampaignStatus]] = {
    CampaignAction.PAUSE: frozenset({CampaignStatus.SCHEDULED, CampaignStatus.RUNNING}),
    CampaignAction.RESUME: frozenset({CampaignStatus.PAUSED}),
    CampaignAction.CANCEL: frozenset(
        {CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.PAUSED}
    ),
}
_RESULT: Mapping[CampaignAction, CampaignStatus] = {
    CampaignAction.PAUSE: CampaignStatus.PAUSED,
    CampaignAction.RESUME: CampaignStatus.RUNNING,
    CampaignAction.CANCEL: CampaignStatus.CANCELED,
}
_PAST: Mapping[CampaignAction, str] = {
    CampaignAction.PAUSE: "paused",
    CampaignAction.RESUME: "resumed",
    CampaignAction.CANCEL: "canceled",
}


@dataclass(frozen=True, slots=True)
class Campaign:
    id: str
    account_id: str
    name: str | None
    use_case_id: str
    media_id: str
    method: SendKind
    technique: DropTechnique | None
    status: CampaignStatus  # as stored: running, paused or canceled
    start_at: datetime | None
    recipients_total: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class CampaignProgress:
    """How many of the campaign's sends are in each status (every status of its kind listed)."""

    counts: Mapping[SendStatus, int]

    @classmethod
    def of(cls, method: SendKind, found: Mapping[SendStatus, int]) -> CampaignProgress:
        shown = RINGLESS_STATUSES if method is SendKind.RINGLESS else DROP_STATUSES
        counts = {s: 0 for s in SendStatus if s in shown}
        for status, n in found.items():
            counts[status] = counts.get(status, 0) + n
        return cls(counts)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        return sum(n for s, n in self.counts.items() if s in FINAL_STATUSES)


def shown_status(campaign: Campaign, progress: CampaignProgress, now: datetime) -> CampaignStatus:
    if campaign.status is CampaignStatus.CANCELED:
        return CampaignStatus.CANCELED
    if progress.total > 0 and progress.finished == progress.total:
        return CampaignStatus.COMPLETED
    if campaign.status is CampaignStatus.PAUSED:
        return CampaignStatus.PAUSED
    if campaign.start_at is not None and campaign.start_at > now:
        return CampaignStatus.SCHEDULED
    return CampaignStatus.RUNNING


def next_status(action: CampaignAction, shown: CampaignStatus) -> CampaignStatus:
    """The stored status after `action` on a campaign now shown as `shown`; Conflict if refused."""
    if shown not in _ALLOWED[action]:
        raise Conflict(
            f"a {shown.value} campaign cannot be {_PAST[action]}",
            error_id="campaign-transition-not-allowed",
        )
    return _RESULT[action]


def channel_for(method: SendKind) -> Channel:
    return Channel.RINGLESS_VOICEMAIL if method is SendKind.RINGLESS else Channel.VOICEMAIL_DROP


def method_for(channel: Channel) -> SendKind:
    return SendKind.RINGLESS if channel is Channel.RINGLESS_VOICEMAIL else SendKind.DROP


def check_name(name: str | None) -> str | None:
    if name is None:
        return None
    cleaned = name.strip()
    if len(cleaned) > MAX_NAME_CHARS or any(ord(ch) < 32 for ch in cleaned):
        raise InvalidInput("name", f"must be at most {MAX_NAME_CHARS} printable characters")
    return cleaned or None


# -- recipients ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecipientError:
    """Row: the 1-based position in the JSON list, or the CSV record number (header counted)."""

    row: int
    reason: str


class InvalidRecipients(InvalidInput):
    """Some recipients are not valid numbers; the campaign was not created."""

    error_id = "invalid-recipients"

    def __init__(self, errors: Sequence[RecipientError], invalid_count: int) -> None:
        super().__init__(
            "recipients",
            f"{invalid_count} recipient(s) are not valid phone numbers",
            error_id=self.error_id,
        )
        self.errors = list(errors)
        self.invalid_count = invalid_count


def bad_csv(detail: str) -> InvalidInput:
    return InvalidInput("recipients", detail, error_id="bad-csv")


def too_many() -> InvalidInput:
    return InvalidInput(
        "recipients", f"at most {MAX_RECIPIENTS} recipients", error_id="too-many-recipients"
    )


def recipients_from_list(values: Sequence[str]) -> Iterator[tuple[int, str]]:
    if len(values) > MAX_RECIPIENTS:
        raise too_many()
    return ((i + 1, value) for i, value in enumerate(values))


def recipients_from_csv(rows: Iterable[Sequence[str]]) -> Iterator[tuple[int, str]]:
    """(record number, raw value) for each data row of a recipients CSV.

    The first non-empty record is a header when it names a column in `RECIPIENT_COLUMNS`, or
    when it is a single cell holding no digit. Without such a column the file must have a
    single column. Empty records and empty cells are skipped.
    """
    column: int | None = None
    named = False
    data_rows = 0
    for number, row in enumerate(rows, start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if column is None:
            column, named, is_header = _column_of(cells)
            if is_header:
                continue
        if named:
            value = cells[column] if column < len(cells) else ""
        else:
            filled = [c for c in cells if c]
            if len(filled) > 1:
                raise bad_csv(f"row {number}: several columns and no `to` or `number` header")
            value = filled[0]
        if not value:
            continue
        data_rows += 1
        if data_rows > MAX_RECIPIENTS:
            raise too_many()
        yield number, value


def _column_of(first: list[str]) -> tuple[int, bool, bool]:
    """(recipient column, named by a header, the first record is a header)."""
    names = [cell.lower().lstrip("\ufeff") for cell in first]
    for wanted in RECIPIENT_COLUMNS:
        if wanted in names:
            return names.index(wanted), True, True
    filled = [c for c in first if c]
    if len(filled) > 1:
        raise bad_csv("the CSV has several columns but none named `to` or `number`")
    return 0, False, not any(ch.isdigit() for ch in filled[0])


@dataclass(slots=True)
class RecipientList:
    """Unique recipients in E.164 (first occurrence order) and what was left out."""

    numbers: list[str] = field(default_factory=list)
    invalid: list[RecipientError] = field(default_factory=list)
    invalid_count: int = 0
    duplicates: int = 0


def normalise_recipients(rows: Iterable[tuple[int, str]], default_region: str) -> RecipientList:
    """Each raw value parsed as a send's `to` (phonenumbers, `default_region`); the first
    `MAX_REPORTED_INVALID` invalid rows are kept with their reason, all are counted."""
    found = RecipientList()
    seen: set[str] = set()
    for row, raw in rows:
        try:
            e164 = to_e164(raw, default_region, "to")
        except InvalidPhoneNumber as exc:
            found.invalid_count += 1
            if len(found.invalid) < MAX_REPORTED_INVALID:
                found.invalid.append(RecipientError(row, exc.detail))
            continue
        if e164 in seen:
            found.duplicates += 1
            continue
        seen.add(e164)
        found.numbers.append(e164)
    return found
