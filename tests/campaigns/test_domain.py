"""The pure campaign rules: the status shown, the transitions, recipient lists and CSV files."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from afterbeep.domain.campaigns import (
    MAX_RECIPIENTS,
    Campaign,
    CampaignAction,
    CampaignProgress,
    CampaignStatus,
    next_status,
    normalise_recipients,
    recipients_from_csv,
    recipients_from_list,
    shown_status,
)
from afterbeep.domain.errors import Conflict, InvalidInput
from afterbeep.domain.ringless import SendKind, SendStatus

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def campaign(status: CampaignStatus = CampaignStatus.RUNNING, start: datetime | None = None) -> Campaign:
    return Campaign(
        id="camp_x",
        account_id="acc_x",
        name=None,
        use_case_id="uc_x",
        media_id="media_x",
        method=SendKind.RINGLESS,
        technique=None,
        status=status,
        start_at=start,
        recipients_total=3,
        created_at=NOW,
        updated_at=NOW,
    )


def progress(**counts: int) -> CampaignProgress:
    return CampaignProgress.of(SendKind.RINGLESS, {SendStatus(k): n for k, n in counts.items()})


def test_progress_lists_every_status_of_the_kind() -> None:
    p = progress(accepted=1, delivered=2)
    assert set(p.counts) == {"accepted", "paused", "delivered", "failed", "skipped"}
    assert (p.total, p.finished) == (3, 2)
    drops = CampaignProgress.of(SendKind.DROP, {SendStatus.LEFT_VOICEMAIL: 1})
    assert "delivered" not in drops.counts and drops.finished == 1


@pytest.mark.parametrize(
    ("stored", "start", "counts", "shown"),
    [
        (CampaignStatus.RUNNING, None, {"accepted": 3}, CampaignStatus.RUNNING),
        (CampaignStatus.RUNNING, NOW + timedelta(seconds=1), {"accepted": 3}, CampaignStatus.SCHEDULED),
        (CampaignStatus.RUNNING, NOW, {"accepted": 3}, CampaignStatus.RUNNING),
        (CampaignStatus.RUNNING, None, {"delivered": 2, "skipped": 1}, CampaignStatus.COMPLETED),
        (CampaignStatus.PAUSED, NOW + timedelta(hours=1), {"paused": 3}, CampaignStatus.PAUSED),
        (CampaignStatus.PAUSED, None, {"failed": 3}, CampaignStatus.COMPLETED),
        (CampaignStatus.CANCELED, None, {"skipped": 3}, CampaignStatus.CANCELED),
        (CampaignStatus.CANCELED, None, {"accepted": 1, "skipped": 2}, CampaignStatus.CANCELED),
    ],
)
def test_shown_status(
    stored: CampaignStatus, start: datetime | None, counts: dict[str, int], shown: CampaignStatus
) -> None:
    assert shown_status(campaign(stored, start), progress(**counts), NOW) is shown


def test_transitions() -> None:
    S, A = CampaignStatus, CampaignAction
    allowed = {
        (A.PAUSE, S.RUNNING): S.PAUSED,
        (A.PAUSE, S.SCHEDULED): S.PAUSED,
        (A.RESUME, S.PAUSED): S.RUNNING,
        (A.CANCEL, S.RUNNING): S.CANCELED,
        (A.CANCEL, S.SCHEDULED): S.CANCELED,
        (A.CANCEL, S.PAUSED): S.CANCELED,
    }
    for action in A:
        for shown in S:
            if (action, shown) in allowed:
                assert next_status(action, shown) is allowed[action, shown]
            else:
                with pytest.raises(Conflict) as caught:
                    next_status(action, shown)
                assert caught.value.error_id == "campaign-transition-not-allowed"


def rows(text: str) -> list[tuple[int, str]]:
    return list(recipients_from_csv(csv.reader(io.StringIO(text))))


def test_csv_rules() -> None:
    assert rows("+12125550123\n\n2125550124\n") == [(1, "+12125550123"), (3, "2125550124")]
    assert rows("Phone\n+12125550123\n") == [(2, "+12125550123")]
    assert rows("\ufeffTo\r\n+12125550123\r\n") == [(2, "+12125550123")]
    assert rows("name,number,note\nA,+12125550123,x\nB,,y\n") == [(2, "+12125550123")]
    assert rows("name,to,number\nA,+12125550123,+13105550124\n") == [(2, "+12125550123")]
    assert rows("") == []
    for bad in ("a,b\n1,2\n", "+12125550123,+13105550124\n", "+12125550123\n+1310,+1311\n"):
        with pytest.raises(InvalidInput) as caught:
            rows(bad)
        assert caught.value.error_id == "bad-csv"


def test_row_limits() -> None:
    with pytest.raises(InvalidInput) as caught:
        rows("to\n" + "+12125550123\n" * (MAX_RECIPIENTS + 1))
    assert caught.value.error_id == "too-many-recipients"
    assert len(rows("to\n" + "+12125550123\n" * MAX_RECIPIENTS)) == MAX_RECIPIENTS
    with pytest.raises(InvalidInput):
        recipients_from_list(["+12125550123"] * (MAX_RECIPIENTS + 1))


def test_normalise_dedupes_and_reports_rows() -> None:
    values = ["+12125550123", "nope", "(212) 555-0123", "+1 310 555 0124", "+1555"]
    found = normalise_recipients(recipients_from_list(values), "US")
    assert found.numbers == ["+12125550123", "+13105550124"]
    assert found.duplicates == 1 and found.invalid_count == 2
    assert [e.row for e in found.invalid] == [2, 5]
    many = normalise_recipients(((i, "x") for i in range(1, 251)), "US")
    assert many.invalid_count == 250 and len(many.invalid) == 100
