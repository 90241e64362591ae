"""Schedule evaluation with the instant passed in (no clock, no event loop).

Instants at DST changes are written in UTC so the tests do not depend on how a wall time is read;
2026 changes: America/New_York 8 March 07:00 UTC (02:00 EST -> 03:00 EDT) and 1 November 06:00
UTC (02:00 EDT -> 01:00 EST); Europe/Berlin 29 March 01:00 UTC (02:00 CET -> 03:00 CEST) and
25 October 01:00 UTC (03:00 CEST -> 02:00 CET).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from afterbeep.domain.errors import InvalidInput
from afterbeep.domain.schedules import (
    RuleKind,
    Schedule,
    ScheduleRule,
    ScheduleState,
    evaluate,
    evaluate_or_open,
    parse_rule,
    parse_rules,
    parse_schedule,
    parse_timezone,
)

IN = ScheduleState.IN_HOURS
OUT = ScheduleState.OUT_OF_HOURS
HOLIDAY = ScheduleState.HOLIDAY

NY = "America/New_York"
BERLIN = "Europe/Berlin"


def weekly(dow: int, start: str, end: str) -> dict[str, Any]:
    return {"kind": "weekly", "dow": dow, "start_time": start, "end_time": end}


def weekdays(start: str = "09:00", end: str = "18:00") -> list[dict[str, Any]]:
    return [weekly(dow, start, end) for dow in range(1, 6)]


def schedule(rules: list[dict[str, Any]], timezone: str | None = None) -> Schedule:
    return parse_schedule("office", timezone, rules)


def utc(y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def local(tz: str, y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0) -> datetime:
    """A wall time that exists once (not on a DST change), as a UTC instant."""
    return datetime(y, mo, d, h, mi, s, tzinfo=ZoneInfo(tz)).astimezone(UTC)


# --- weekly hours ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hour", "minute", "second", "expected"),
    [
        (8, 59, 59, OUT),
        (9, 0, 0, IN),
        (17, 59, 0, IN),
        (17, 59, 59, IN),
        (18, 0, 0, OUT),  # end is exclusive
        (23, 0, 0, OUT),
    ],
)
def test_weekday_end_is_exclusive(
    hour: int, minute: int, second: int, expected: ScheduleState
) -> None:
    sch = schedule(weekdays())
    at = local(BERLIN, 2026, 7, 15, hour, minute, second)  # a Wednesday
    assert evaluate(sch, at, BERLIN) is expected


def test_weekend_without_rules_is_out_of_hours() -> None:
    sch = schedule(weekdays())
    assert evaluate(sch, local(BERLIN, 2026, 7, 18, 12), BERLIN) is OUT  # Saturday


def test_dow_zero_is_sunday() -> None:
    sch = schedule([weekly(0, "10:00", "12:00")])
    assert evaluate(sch, local(NY, 2026, 7, 19, 11), NY) is IN  # Sunday
    assert evaluate(sch, local(NY, 2026, 7, 20, 11), NY) is OUT  # Monday


def test_whole_day_with_24_00() -> None:
    sch = schedule([weekly(3, "00:00", "24:00")])
    assert evaluate(sch, local(NY, 2026, 7, 15, 0), NY) is IN
    assert evaluate(sch, local(NY, 2026, 7, 15, 23, 59, 59), NY) is IN
    assert evaluate(sch, local(NY, 2026, 7, 16, 0), NY) is OUT


def test_several_intervals_a_day() -> None:
    sch = schedule([weekly(3, "09:00", "12:00"), weekly(3, "13:00", "17:00")])
    assert evaluate(sch, local(NY, 2026, 7, 15, 11, 59), NY) is IN
    assert evaluate(sch, local(NY, 2026, 7, 15, 12, 30), NY) is OUT
    assert evaluate(sch, local(NY, 2026, 7, 15, 13), NY) is IN


# --- overnight intervals ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "hour", "minute", "expected"),
    [
        (17, 21, 59, OUT),  # Friday before
        (17, 22, 0, IN),
        (17, 23, 59, IN),
        (18, 0, 0, IN),  # Saturday after midnight: still Friday's interval
        (18, 1, 0, IN),
        (18, 1, 59, IN),
        (18, 2, 0, OUT),
        (18, 23, 0, OUT),  # Saturday night: no Saturday rule
        (16, 23, 0, OUT),  # Thursday night: no Thursday rule
    ],
)
def test_overnight_interval_belongs_to_the_day_it_starts(
    day: int, hour: int, minute: int, expected: ScheduleState
) -> None:
    sch = schedule([weekly(5, "22:00", "02:00")])  # Friday 22:00 to Saturday 02:00
    assert evaluate(sch, local(BERLIN, 2026, 7, day, hour, minute), BERLIN) is expected


def test_overnight_saturday_into_sunday_wraps_the_week() -> None:
    sch = schedule([weekly(6, "20:00", "04:00")])
    assert evaluate(sch, local(NY, 2026, 7, 19, 3, 59), NY) is IN  # Sunday
    assert evaluate(sch, local(NY, 2026, 7, 19, 4), NY) is OUT


# --- DST: America/New_York ---------------------------------------------------------------------


def test_new_york_spring_forward_interval_containing_the_skipped_hour() -> None:
    # Sunday 8 March 2026 01:00-04:00 wall time: the wall clock reads 01:00..01:59 EST, then
    # 03:00..03:59 EDT, so it is open two real hours.
    sch = schedule([weekly(0, "01:00", "04:00")])
    assert evaluate(sch, utc(2026, 3, 8, 5, 59), NY) is OUT  # 00:59 EST
    assert evaluate(sch, utc(2026, 3, 8, 6, 0), NY) is IN  # 01:00 EST
    assert evaluate(sch, utc(2026, 3, 8, 6, 59, 59), NY) is IN  # 01:59:59 EST, just before
    assert evaluate(sch, utc(2026, 3, 8, 7, 0), NY) is IN  # 03:00 EDT, just after
    assert evaluate(sch, utc(2026, 3, 8, 7, 59), NY) is IN  # 03:59 EDT
    assert evaluate(sch, utc(2026, 3, 8, 8, 0), NY) is OUT  # 04:00 EDT


def test_new_york_spring_forward_interval_inside_the_gap_never_opens() -> None:
    sch = schedule([weekly(0, "02:00", "03:00")])
    for minute in range(0, 60 * 4, 5):  # every 5 minutes from 05:00 to 08:55 UTC
        at = utc(2026, 3, 8, 5 + minute // 60, minute % 60)
        assert evaluate(sch, at, NY) is OUT, at


def test_new_york_spring_forward_opening_inside_the_gap_opens_at_the_change() -> None:
    sch = schedule([weekly(0, "02:30", "05:00")])
    assert evaluate(sch, utc(2026, 3, 8, 6, 59, 59), NY) is OUT  # 01:59:59 EST
    assert evaluate(sch, utc(2026, 3, 8, 7, 0), NY) is IN  # 03:00 EDT


def test_new_york_spring_forward_business_hours_use_the_new_offset() -> None:
    sch = schedule([weekly(0, "09:00", "18:00")])
    # A fixed -05:00 offset would call 13:00 UTC 08:00 and 22:30 UTC 17:30.
    assert evaluate(sch, utc(2026, 3, 8, 12, 59), NY) is OUT  # 08:59 EDT
    assert evaluate(sch, utc(2026, 3, 8, 13, 0), NY) is IN  # 09:00 EDT
    assert evaluate(sch, utc(2026, 3, 8, 21, 59), NY) is IN  # 17:59 EDT
    assert evaluate(sch, utc(2026, 3, 8, 22, 0), NY) is OUT  # 18:00 EDT


def test_new_york_fall_back_interval_containing_the_repeated_hour() -> None:
    # Sunday 1 November 2026 01:00-02:00 wall time: 01:00..01:59 happens twice, open two real hours.
    sch = schedule([weekly(0, "01:00", "02:00")])
    assert evaluate(sch, utc(2026, 11, 1, 4, 59), NY) is OUT  # 00:59 EDT
    assert evaluate(sch, utc(2026, 11, 1, 5, 0), NY) is IN  # 01:00 EDT
    assert evaluate(sch, utc(2026, 11, 1, 5, 59, 59), NY) is IN  # 01:59:59 EDT, just before
    assert evaluate(sch, utc(2026, 11, 1, 6, 0), NY) is IN  # 01:00 EST, just after
    assert evaluate(sch, utc(2026, 11, 1, 6, 59), NY) is IN  # 01:59 EST
    assert evaluate(sch, utc(2026, 11, 1, 7, 0), NY) is OUT  # 02:00 EST


def test_new_york_fall_back_end_inside_the_repeated_hour_is_judged_on_both_passes() -> None:
    sch = schedule([weekly(0, "00:00", "01:30")])
    assert evaluate(sch, utc(2026, 11, 1, 5, 29), NY) is IN  # 01:29 EDT
    assert evaluate(sch, utc(2026, 11, 1, 5, 30), NY) is OUT  # 01:30 EDT
    assert evaluate(sch, utc(2026, 11, 1, 6, 0), NY) is IN  # 01:00 EST: the wall clock went back
    assert evaluate(sch, utc(2026, 11, 1, 6, 30), NY) is OUT  # 01:30 EST


def test_new_york_fall_back_business_hours_use_the_new_offset() -> None:
    sch = schedule([weekly(0, "09:00", "18:00")])
    assert evaluate(sch, utc(2026, 11, 1, 13, 59), NY) is OUT  # 08:59 EST
    assert evaluate(sch, utc(2026, 11, 1, 14, 0), NY) is IN  # 09:00 EST
    assert evaluate(sch, utc(2026, 11, 1, 22, 59), NY) is IN  # 17:59 EST
    assert evaluate(sch, utc(2026, 11, 1, 23, 0), NY) is OUT  # 18:00 EST


# --- DST: Europe/Berlin ------------------------------------------------------------------------


def test_berlin_spring_forward_interval_containing_the_skipped_hour() -> None:
    sch = schedule([weekly(0, "01:00", "04:00")])
    assert evaluate(sch, utc(2026, 3, 28, 23, 59), BERLIN) is OUT  # Sunday 00:59 CET
    assert evaluate(sch, utc(2026, 3, 29, 0, 0), BERLIN) is IN  # 01:00 CET
    assert evaluate(sch, utc(2026, 3, 29, 0, 59, 59), BERLIN) is IN  # 01:59:59 CET, just before
    assert evaluate(sch, utc(2026, 3, 29, 1, 0), BERLIN) is IN  # 03:00 CEST, just after
    assert evaluate(sch, utc(2026, 3, 29, 1, 59), BERLIN) is IN  # 03:59 CEST
    assert evaluate(sch, utc(2026, 3, 29, 2, 0), BERLIN) is OUT  # 04:00 CEST


def test_berlin_spring_forward_overnight_interval_across_the_change() -> None:
    # Saturday 22:00 to Sunday 06:00 wall time: 7 real hours that night.
    sch = schedule([weekly(6, "22:00", "06:00")])
    assert evaluate(sch, utc(2026, 3, 28, 20, 59), BERLIN) is OUT  # 21:59 CET
    assert evaluate(sch, utc(2026, 3, 28, 21, 0), BERLIN) is IN  # 22:00 CET
    assert evaluate(sch, utc(2026, 3, 29, 0, 59), BERLIN) is IN  # 01:59 CET
    assert evaluate(sch, utc(2026, 3, 29, 1, 0), BERLIN) is IN  # 03:00 CEST
    assert evaluate(sch, utc(2026, 3, 29, 3, 59), BERLIN) is IN  # 05:59 CEST
    assert (
        evaluate(sch, utc(2026, 3, 29, 4, 0), BERLIN) is OUT
    )  # 06:00 CEST (a fixed +01:00: 05:00)


def test_berlin_fall_back_interval_containing_the_repeated_hour() -> None:
    sch = schedule([weekly(0, "02:00", "03:00")])
    assert evaluate(sch, utc(2026, 10, 24, 23, 59), BERLIN) is OUT  # Sunday 01:59 CEST
    assert evaluate(sch, utc(2026, 10, 25, 0, 0), BERLIN) is IN  # 02:00 CEST
    assert evaluate(sch, utc(2026, 10, 25, 0, 59, 59), BERLIN) is IN  # 02:59:59 CEST, just before
    assert evaluate(sch, utc(2026, 10, 25, 1, 0), BERLIN) is IN  # 02:00 CET, just after
    assert evaluate(sch, utc(2026, 10, 25, 1, 59), BERLIN) is IN  # 02:59 CET
    assert evaluate(sch, utc(2026, 10, 25, 2, 0), BERLIN) is OUT  # 03:00 CET


def test_berlin_fall_back_overnight_interval_across_the_change() -> None:
    # Saturday 22:00 to Sunday 06:00 wall time: 9 real hours that night.
    sch = schedule([weekly(6, "22:00", "06:00")])
    assert evaluate(sch, utc(2026, 10, 24, 19, 59), BERLIN) is OUT  # 21:59 CEST
    assert evaluate(sch, utc(2026, 10, 24, 20, 0), BERLIN) is IN  # 22:00 CEST
    assert evaluate(sch, utc(2026, 10, 25, 0, 59), BERLIN) is IN  # 02:59 CEST
    assert evaluate(sch, utc(2026, 10, 25, 1, 0), BERLIN) is IN  # 02:00 CET
    assert evaluate(sch, utc(2026, 10, 25, 4, 59), BERLIN) is IN  # 05:59 CET
    assert (
        evaluate(sch, utc(2026, 10, 25, 5, 0), BERLIN) is OUT
    )  # 06:00 CET (a fixed +02:00: 07:00)


# --- holidays and special dates ------------------------------------------------------------


def christmas() -> list[dict[str, Any]]:
    closed = {"kind": "date_range", "start_date": "2026-12-24", "end_date": "2026-12-26"}
    return [*weekdays(), {**closed, "is_closed": True}]


def test_date_range_holiday_over_weekly_open_hours() -> None:
    sch = schedule(christmas())
    assert evaluate(sch, local(BERLIN, 2026, 12, 23, 10), BERLIN) is IN  # Wednesday before
    assert evaluate(sch, local(BERLIN, 2026, 12, 24, 10), BERLIN) is HOLIDAY  # Thursday, open hours
    assert evaluate(sch, local(BERLIN, 2026, 12, 24, 20), BERLIN) is HOLIDAY  # all day long
    assert evaluate(sch, local(BERLIN, 2026, 12, 24, 0), BERLIN) is HOLIDAY  # from local midnight
    assert evaluate(sch, local(BERLIN, 2026, 12, 25, 10), BERLIN) is HOLIDAY
    assert evaluate(sch, local(BERLIN, 2026, 12, 26, 23, 59, 59), BERLIN) is HOLIDAY
    assert evaluate(sch, local(BERLIN, 2026, 12, 27, 0), BERLIN) is OUT  # Sunday after
    assert evaluate(sch, local(BERLIN, 2026, 12, 28, 10), BERLIN) is IN  # Monday after


def test_holiday_is_the_local_date_not_the_utc_date() -> None:
    sch = schedule([{"kind": "date", "start_date": "2026-12-25", "is_closed": True}], NY)
    # 04:00 UTC on the 25th is still the 24th in New York, 05:00 UTC is the 25th.
    assert evaluate(sch, utc(2026, 12, 25, 4, 59), "UTC") is OUT
    assert evaluate(sch, utc(2026, 12, 25, 5, 0), "UTC") is HOLIDAY


def test_holiday_wins_over_an_overnight_interval_from_the_day_before() -> None:
    rules = [
        weekly(3, "22:00", "02:00"),
        {"kind": "date", "start_date": "2026-12-24", "is_closed": True},
    ]
    sch = schedule(rules)
    assert evaluate(sch, local(NY, 2026, 12, 23, 23), NY) is IN  # Wednesday night
    assert evaluate(sch, local(NY, 2026, 12, 24, 1), NY) is HOLIDAY  # the holiday date


def test_a_closed_day_drops_its_overnight_interval() -> None:
    rules = [
        weekly(4, "22:00", "02:00"),
        {"kind": "date", "start_date": "2026-12-24", "is_closed": True},
    ]
    sch = schedule(rules)
    assert evaluate(sch, local(NY, 2026, 12, 24, 23), NY) is HOLIDAY
    assert evaluate(sch, local(NY, 2026, 12, 25, 1), NY) is OUT  # the Thursday interval is gone


def test_date_rule_with_special_hours_replaces_the_weekly_ones() -> None:
    rules = [
        *weekdays(),
        {"kind": "date", "start_date": "2026-12-31", "start_time": "09:00", "end_time": "13:00"},
    ]
    sch = schedule(rules)
    assert evaluate(sch, local(BERLIN, 2026, 12, 31, 8, 59), BERLIN) is OUT
    assert evaluate(sch, local(BERLIN, 2026, 12, 31, 12, 59), BERLIN) is IN
    assert evaluate(sch, local(BERLIN, 2026, 12, 31, 13, 0), BERLIN) is OUT  # weekly says open
    assert evaluate(sch, local(BERLIN, 2026, 12, 30, 15, 0), BERLIN) is IN  # the day before: weekly


def test_date_rule_opens_a_weekend_day() -> None:
    rules = [
        *weekdays(),
        {"kind": "date", "start_date": "2026-12-19", "start_time": "10:00", "end_time": "14:00"},
    ]
    sch = schedule(rules)
    assert evaluate(sch, local(BERLIN, 2026, 12, 19, 11), BERLIN) is IN  # a Saturday
    assert evaluate(sch, local(BERLIN, 2026, 12, 19, 15), BERLIN) is OUT


def test_date_rule_overrides_a_date_range() -> None:
    rules = [
        *weekdays(),
        {
            "kind": "date_range",
            "start_date": "2026-12-21",
            "end_date": "2027-01-01",
            "is_closed": True,
        },
        {"kind": "date", "start_date": "2026-12-28", "start_time": "10:00", "end_time": "12:00"},
    ]
    sch = schedule(rules)
    assert evaluate(sch, local(NY, 2026, 12, 22, 11), NY) is HOLIDAY
    assert evaluate(sch, local(NY, 2026, 12, 28, 11), NY) is IN  # the one open morning
    assert evaluate(sch, local(NY, 2026, 12, 28, 15), NY) is OUT
    assert evaluate(sch, local(NY, 2027, 1, 4, 11), NY) is IN


def test_date_range_with_special_hours() -> None:
    rules = [
        *weekdays(),
        {
            "kind": "date_range",
            "start_date": "2026-08-03",
            "end_date": "2026-08-14",
            "start_time": "08:00",
            "end_time": "12:00",
        },
    ]
    sch = schedule(rules)
    assert evaluate(sch, local(NY, 2026, 8, 5, 8, 30), NY) is IN
    assert evaluate(sch, local(NY, 2026, 8, 5, 14), NY) is OUT
    assert evaluate(sch, local(NY, 2026, 8, 8, 9), NY) is IN  # a Saturday inside the range
    assert evaluate(sch, local(NY, 2026, 8, 17, 14), NY) is IN  # after the range: weekly


def test_closed_date_wins_over_special_hours_on_the_same_date() -> None:
    rules: list[dict[str, Any]] = [
        {"kind": "date", "start_date": "2026-12-24", "start_time": "09:00", "end_time": "12:00"},
        {"kind": "date", "start_date": "2026-12-24", "is_closed": True},
    ]
    assert evaluate(schedule(rules), local(NY, 2026, 12, 24, 10), NY) is HOLIDAY


# --- timezones and failing open ------------------------------------------------------------


def test_schedule_timezone_wins_over_the_account_one() -> None:
    at = utc(2026, 7, 15, 8)  # 10:00 in Berlin, 04:00 in New York
    assert evaluate(schedule(weekdays(), BERLIN), at, NY) is IN
    assert evaluate(schedule(weekdays(), None), at, NY) is OUT
    assert evaluate(schedule(weekdays(), None), at, BERLIN) is IN


def test_instant_in_another_offset_is_the_same_instant() -> None:
    sch = schedule(weekdays())
    at = datetime(2026, 7, 15, 17, 59, tzinfo=ZoneInfo(BERLIN)).astimezone(ZoneInfo("Asia/Tokyo"))
    assert evaluate(sch, at, BERLIN) is IN


def test_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        evaluate(schedule(weekdays()), datetime(2026, 7, 15, 10), BERLIN)


def test_missing_schedule_fails_open() -> None:
    state, reason = evaluate_or_open(None, utc(2026, 7, 18, 3), BERLIN)
    assert state is IN
    assert reason is not None and "no schedule" in reason


def test_bad_account_timezone_fails_open() -> None:
    sch = schedule(weekdays())
    state, reason = evaluate_or_open(sch, local(BERLIN, 2026, 7, 18, 3), "Mars/Olympus_Mons")
    assert state is IN
    assert reason is not None and "Mars/Olympus_Mons" in reason


def test_bad_schedule_timezone_fails_open() -> None:
    # A schedule built without the parser (say, an old row) whose zone is not in the database.
    sch = Schedule(name="old", timezone="Atlantis/Capital", rules=())
    state, reason = evaluate_or_open(sch, utc(2026, 7, 18, 3), BERLIN)
    assert (state, reason is not None and "Atlantis/Capital" in reason) == (IN, True)


def test_malformed_timezone_name_fails_open() -> None:
    sch = Schedule(name="odd", timezone="../../etc/passwd", rules=())
    state, reason = evaluate_or_open(sch, utc(2026, 7, 18, 3), BERLIN)
    assert state is IN
    assert reason is not None and "could not be evaluated" in reason


def test_naive_instant_fails_open() -> None:
    state, reason = evaluate_or_open(schedule(weekdays()), datetime(2026, 7, 18, 3), BERLIN)
    assert state is IN and reason is not None


def test_evaluate_or_open_passes_a_good_answer_through() -> None:
    sch = schedule(christmas())
    assert evaluate_or_open(sch, local(BERLIN, 2026, 7, 18, 3), BERLIN) == (OUT, None)
    assert evaluate_or_open(sch, local(BERLIN, 2026, 12, 25, 3), BERLIN) == (HOLIDAY, None)
    assert evaluate_or_open(sch, local(BERLIN, 2026, 7, 15, 10), BERLIN) == (IN, None)


def test_no_rules_is_always_out_of_hours() -> None:
    assert evaluate(schedule([]), utc(2026, 7, 15, 10), "UTC") is OUT


# --- parsing -------------------------------------------------------------------------------


def test_parse_normalizes_and_round_trips() -> None:
    raw = [
        weekly(1, "09:00", "18:00"),
        {"kind": "date", "dow": None, "start_date": "2026-12-24", "end_date": None, "is_closed": 1},
        {
            "kind": "date_range",
            "start_date": "2026-08-03",
            "end_date": "2026-08-14",
            "start_time": "08:00",
            "end_time": "24:00",
            "is_closed": False,
        },
    ]
    rules = parse_rules(raw)
    assert rules[0] == ScheduleRule(
        kind=RuleKind.WEEKLY, dow=1, start_time="09:00", end_time="18:00"
    )
    assert rules[1] == ScheduleRule(
        kind=RuleKind.DATE, start_date=date(2026, 12, 24), is_closed=True
    )
    assert rules[2].end_time == "24:00"
    assert parse_rules([rule.to_dict() for rule in rules]) == rules


def test_date_rule_end_date_equal_to_start_is_accepted() -> None:
    rule = parse_rule(
        {"kind": "date", "start_date": "2026-12-24", "end_date": "2026-12-24", "is_closed": True}
    )
    assert rule.end_date is None


def test_parse_schedule_fields() -> None:
    sch = parse_schedule("  Office  ", BERLIN, [weekly(1, "09:00", "18:00")])
    assert (sch.name, sch.timezone, len(sch.rules)) == ("Office", BERLIN, 1)
    assert parse_schedule("x", None, []).timezone is None
    with pytest.raises(InvalidInput) as err:
        parse_schedule("", None, [])
    assert err.value.field == "name"
    with pytest.raises(InvalidInput) as err:
        parse_schedule("x", "Mars/Olympus_Mons", [])
    assert err.value.field == "timezone" and "Mars/Olympus_Mons" in err.value.detail


@pytest.mark.parametrize(
    "bad", ["", "   ", 5, "Not/AZone", "../etc/passwd", "/usr/share/zoneinfo/UTC"]
)
def test_parse_timezone_refuses(bad: object) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_timezone(bad)
    assert err.value.field == "timezone"


GOOD = weekly(1, "09:00", "18:00")


@pytest.mark.parametrize(
    ("rule", "field", "fragment"),
    [
        ({"kind": "monthly", "dow": 1}, "kind", "weekly, date, date_range"),
        (
            {"dow": 1, "start_time": "09:00", "end_time": "18:00"},
            "kind",
            "weekly, date, date_range",
        ),
        ({**GOOD, "dow": 7}, "dow", "0 (Sunday) to 6"),
        ({**GOOD, "dow": -1}, "dow", "0 (Sunday) to 6"),
        ({**GOOD, "dow": True}, "dow", "0 (Sunday) to 6"),
        ({**GOOD, "dow": "1"}, "dow", "0 (Sunday) to 6"),
        ({**GOOD, "dow": None}, "dow", "required"),
        ({**GOOD, "start_time": "9:00"}, "start_time", "'HH:MM'"),
        ({**GOOD, "start_time": "24:00"}, "start_time", "00:00 to 23:59"),
        ({**GOOD, "end_time": "24:01"}, "end_time", "00:00 to 24:00"),
        ({**GOOD, "end_time": "18:60"}, "end_time", "'HH:MM'"),
        ({**GOOD, "end_time": "18:00:00"}, "end_time", "'HH:MM'"),
        ({**GOOD, "end_time": 1800}, "end_time", "'HH:MM'"),
        ({**GOOD, "end_time": None}, "end_time", "required"),
        ({**GOOD, "start_time": None}, "start_time", "required"),
        ({**GOOD, "end_time": "09:00"}, "end_time", "differ from start_time"),
        ({**GOOD, "is_closed": True}, "is_closed", "date or date_range"),
        ({**GOOD, "is_closed": "yes"}, "is_closed", "true or false"),
        ({**GOOD, "start_date": "2026-01-01"}, "start_date", "null for a weekly rule"),
        ({**GOOD, "end_date": "2026-01-01"}, "end_date", "null for a weekly rule"),
        ({**GOOD, "priority": 1}, "priority", "unknown field"),
        ({"kind": "date", "is_closed": True}, "start_date", "required"),
        (
            {"kind": "date", "start_date": "2026-02-30", "is_closed": True},
            "start_date",
            "'YYYY-MM-DD'",
        ),
        (
            {"kind": "date", "start_date": "26-12-24", "is_closed": True},
            "start_date",
            "'YYYY-MM-DD'",
        ),
        (
            {
                "kind": "date",
                "start_date": "2026-12-24",
                "end_date": "2026-12-26",
                "is_closed": True,
            },
            "end_date",
            "date_range",
        ),
        (
            {"kind": "date", "start_date": "2026-12-24", "dow": 4, "is_closed": True},
            "dow",
            "null for a date rule",
        ),
        ({"kind": "date", "start_date": "2026-12-24"}, "start_time", "special open hours"),
        (
            {"kind": "date", "start_date": "2026-12-24", "start_time": "09:00"},
            "end_time",
            "required",
        ),
        (
            {"kind": "date", "start_date": "2026-12-24", "is_closed": True, "start_time": "09:00"},
            "start_time",
            "null when is_closed",
        ),
        (
            {"kind": "date_range", "start_date": "2026-12-24", "is_closed": True},
            "end_date",
            "required",
        ),
        (
            {
                "kind": "date_range",
                "start_date": "2026-12-24",
                "end_date": "2026-12-23",
                "is_closed": True,
            },
            "end_date",
            "before start_date",
        ),
        (
            {
                "kind": "date_range",
                "start_date": "2026-12-24",
                "end_date": "2026-12-26",
                "is_closed": True,
                "end_time": "12:00",
            },
            "end_time",
            "null when is_closed",
        ),
    ],
)
def test_invalid_rule_is_refused_naming_index_and_field(
    rule: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_rules([GOOD, rule])
    assert err.value.field == f"rules[1].{field}"
    assert fragment in err.value.detail
    assert str(err.value).startswith(f"rules[1].{field}: ")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("weekly", "rules"),
        ({"kind": "weekly"}, "rules"),
        (None, "rules"),
        ([GOOD, "weekly"], "rules[1]"),
    ],
)
def test_rules_must_be_a_list_of_objects(raw: object, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_rules(raw)
    assert err.value.field == field


def test_too_many_rules() -> None:
    with pytest.raises(InvalidInput, match="at most"):
        parse_rules([GOOD] * 501)
