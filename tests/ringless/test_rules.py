"""The pure ringless rules: calling window in the recipient's zone, suppression, consent,
attempt cap, sender selection and retry delays, all with an injected `now`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from afterbeep.domain.errors import InvalidInput
from afterbeep.domain.ringless import (
    CallingWindow,
    Channel,
    Consent,
    RecipientCap,
    RuleAction,
    RuleDecision,
    SenderSelection,
    SendStatus,
    SetupNumber,
    SkipReason,
    UseCase,
    VoicemailSend,
    area_code,
    calling_window_opens,
    check_rules,
    pick_sender,
    recipient_timezone,
    retry_delay,
)

NY = ZoneInfo("America/New_York")
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
NYC = "+12125550123"
LA = "+13105550123"


def use_case(**changes: object) -> UseCase:
    base = UseCase(
        id="uc_x",
        account_id="acc_x",
        channel=Channel.RINGLESS_VOICEMAIL,
        name="Reminders",
        description=None,
        setup_id="setup_x",
        sender_selection=SenderSelection.ROUND_ROBIN,
        sender_number=None,
        require_consent=True,
        calling_window=CallingWindow(),
        max_attempts=3,
        retry_backoff_seconds=60,
        recipient_cap=RecipientCap(3, 72),
        created_at=T0,
        updated_at=T0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def send(to: str = NYC, send_at: datetime | None = None) -> VoicemailSend:
    return VoicemailSend(
        id="vmsend_x",
        account_id="acc_x",
        use_case_id="uc_x",
        setup_id="setup_x",
        media_id="media_x",
        from_e164="+12125550100",
        to_e164=to,
        foreign_id=None,
        metadata=None,
        send_at=send_at,
        status=SendStatus.ACCEPTED,
        attempts=0,
        next_attempt_at=T0,
        claimed_until=None,
        method=None,
        failure_reason=None,
        skip_reason=None,
        created_at=T0,
        updated_at=T0,
    )


def consent(revoked: bool = False) -> Consent:
    return Consent(
        id="cons_x",
        account_id="acc_x",
        e164=NYC,
        source="web form",
        captured_at=T0 - timedelta(days=1),
        revoked_at=T0 if revoked else None,
        created_at=T0,
    )


def ny(hour: int, minute: int = 0, day: int = 2) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=NY)


def test_recipient_zone_comes_from_the_number() -> None:
    assert recipient_timezone(NYC) == "America/New_York"
    assert recipient_timezone(LA) == "America/Los_Angeles"


def test_22h_in_new_york_holds_until_8_next_morning() -> None:
    now = ny(22).astimezone(UTC)
    decision = check_rules(send(), use_case(), now, False, consent(), 0)
    assert decision == RuleDecision.hold_until(ny(8, day=3).astimezone(UTC))
    assert decision.until is not None and decision.until.astimezone(NY).hour == 8


def test_inside_the_window_is_allowed() -> None:
    decision = check_rules(send(), use_case(), ny(10).astimezone(UTC), False, consent(), 0)
    assert decision.action is RuleAction.ALLOW


def test_early_morning_holds_until_8_same_day() -> None:
    opens = calling_window_opens(ny(6, 30), "America/New_York", time(8), time(21))
    assert opens == ny(8).astimezone(UTC)


def test_window_edges() -> None:
    tz = "America/New_York"
    assert calling_window_opens(ny(8), tz, time(8), time(21)) is None
    assert calling_window_opens(ny(20, 59), tz, time(8), time(21)) is None
    assert calling_window_opens(ny(21), tz, time(8), time(21)) == ny(8, day=3).astimezone(UTC)


def test_window_is_the_recipients_not_the_servers() -> None:
    # 23:00 in New York is 20:00 in Los Angeles: inside the window there.
    now = ny(23).astimezone(UTC)
    assert check_rules(send(LA), use_case(), now, False, consent(), 0).action is RuleAction.ALLOW
    assert check_rules(send(NYC), use_case(), now, False, consent(), 0).action is RuleAction.HOLD


def test_overnight_window() -> None:
    tz = "America/New_York"
    assert calling_window_opens(ny(23), tz, time(22), time(2)) is None
    assert calling_window_opens(ny(1), tz, time(22), time(2)) is None
    assert calling_window_opens(ny(12), tz, time(22), time(2)) == ny(22).astimezone(UTC)


def test_suppressed_is_skipped_even_inside_the_window() -> None:
    decision = check_rules(send(), use_case(), ny(10).astimezone(UTC), True, consent(), 0)
    assert decision == RuleDecision.skip(SkipReason.SUPPRESSED)


@pytest.mark.parametrize("found", [None, consent(revoked=True)])
def test_missing_or_revoked_consent_is_skipped(found: Consent | None) -> None:
    decision = check_rules(send(), use_case(), ny(10).astimezone(UTC), False, found, 0)
    assert decision == RuleDecision.skip(SkipReason.NO_CONSENT)


def test_consent_not_required() -> None:
    uc = use_case(require_consent=False)
    decision = check_rules(send(), uc, ny(10).astimezone(UTC), False, None, 0)
    assert decision.action is RuleAction.ALLOW


def test_cap_reached_is_skipped() -> None:
    now = ny(10).astimezone(UTC)
    assert check_rules(send(), use_case(), now, False, consent(), 2).action is RuleAction.ALLOW
    assert check_rules(send(), use_case(), now, False, consent(), 3) == RuleDecision.skip(
        SkipReason.RECIPIENT_CAP
    )


def test_skip_wins_over_hold() -> None:
    decision = check_rules(send(), use_case(), ny(22).astimezone(UTC), True, consent(), 0)
    assert decision.action is RuleAction.SKIP


def test_future_send_at_is_held() -> None:
    later = ny(15).astimezone(UTC)
    decision = check_rules(send(send_at=later), use_case(), ny(10).astimezone(UTC), False, consent(), 0)
    assert decision == RuleDecision.hold_until(later)


NUMBERS = (
    SetupNumber("+13105550100", True),
    SetupNumber("+12125550100", True),
    SetupNumber("+12125550199", False),
    SetupNumber("+14155550100", True),
)


def test_area_code() -> None:
    assert area_code(NYC) == "212"
    assert area_code("+442079460000") is None


def test_local_presence_picks_the_212_number() -> None:
    uc = use_case(sender_selection=SenderSelection.LOCAL_PRESENCE)
    assert {pick_sender(uc, NUMBERS, NYC, i) for i in range(5)} == {"+12125550100"}


def test_local_presence_without_match_round_robins_over_verified_only() -> None:
    uc = use_case(sender_selection=SenderSelection.LOCAL_PRESENCE)
    picked = [pick_sender(uc, NUMBERS, "+17185550123", i) for i in range(6)]
    assert picked == ["+13105550100", "+12125550100", "+14155550100"] * 2


def test_round_robin_skips_unverified() -> None:
    uc = use_case()
    assert "+12125550199" not in {pick_sender(uc, NUMBERS, NYC, i) for i in range(10)}


def test_fixed_sender_must_be_verified() -> None:
    uc = use_case(sender_selection=SenderSelection.FIXED, sender_number="+14155550100")
    assert pick_sender(uc, NUMBERS, NYC, 7) == "+14155550100"
    bad = use_case(sender_selection=SenderSelection.FIXED, sender_number="+12125550199")
    with pytest.raises(InvalidInput):
        pick_sender(bad, NUMBERS, NYC, 0)


def test_no_verified_number_is_refused() -> None:
    with pytest.raises(InvalidInput):
        pick_sender(use_case(), (SetupNumber("+12125550199", False),), NYC, 0)


def test_retry_delay_doubles_and_is_capped() -> None:
    assert retry_delay(1, 60) == timedelta(seconds=60)
    assert retry_delay(2, 60) == timedelta(seconds=120)
    assert retry_delay(3, 60) == timedelta(seconds=240)
    assert retry_delay(40, 60) == timedelta(hours=6)
