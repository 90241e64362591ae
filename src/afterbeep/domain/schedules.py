"""Business hours: a schedule's rules and what they say about one instant.

Pure code: no I/O, no clock. The caller passes the instant (an aware datetime) and the account's
timezone; the answer is a `ScheduleState` (`in_hours`, `out_of_hours`, `holiday`).

Rules use the seed's field names: `{kind: weekly|date|date_range, dow (0=Sunday..6), start_time,
end_time ("HH:MM"), start_date, end_date ("YYYY-MM-DD"), is_closed}`.

Semantics
- Precedence per local date: `date` rules covering the date override `date_range` rules covering
  it, which override the `weekly` rules of that weekday. Among the rules of the winning level, one
  with `is_closed` makes the whole local date a `holiday`; otherwise their intervals are the date's
  open hours (special hours), replacing the weekly ones.
- `weekly` rules list open hours only (`is_closed` is refused on them); a local time outside
  every open interval is `out_of_hours`.
- Intervals are `[start_time, end_time)`: 09:00-18:00 is open at 17:59:59 and closed at 18:00.
  `end_time` may be `24:00` (until midnight). An `end_time` earlier than `start_time` runs past
  midnight and belongs to the day it starts: Friday 22:00-02:00 is open Saturday 01:00, and is
  governed by Friday's rules (a Friday holiday drops it; a Saturday weekly rule is not needed).
  Equal start and end are refused (empty or ambiguous).
- A holiday date is a holiday all local day long, even while an overnight interval that started the
  day before would be running.
- Wall-clock model for DST: the instant is converted to local time with `zoneinfo` (never a fixed
  offset) and its local date and wall-clock time are compared with the rules. Consequences, all
  deterministic: on a spring-forward day the skipped wall times are never reached, so an interval
  containing the gap is shorter by the gap in real time and an interval lying wholly inside it is
  never open; on a fall-back day the repeated wall times occur twice and are judged the same way
  both times, so an interval containing them is longer by the repeated hour. No wall time is
  ever turned into an instant, so nonexistent or ambiguous wall times need no fold choice.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from afterbeep.domain.errors import InvalidInput

MAX_RULES = 500
RULE_FIELDS = frozenset(
    {"kind", "dow", "start_time", "end_time", "start_date", "end_date", "is_closed"}
)

_TIME_RE = re.compile(r"^(\d{2}):(\d{2})$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ScheduleState(enum.StrEnum):
    IN_HOURS = "in_hours"
    OUT_OF_HOURS = "out_of_hours"
    HOLIDAY = "holiday"


class RuleKind(enum.StrEnum):
    WEEKLY = "weekly"
    DATE = "date"
    DATE_RANGE = "date_range"


@dataclass(frozen=True, slots=True)
class ScheduleRule:
    """One validated rule; build it with `parse_rule(s)` so the invariants hold.

    weekly: `dow`, `start_time`, `end_time`; no dates; never closed.
    date: `start_date` (`end_date` None); either `is_closed` (no times) or both times.
    date_range: `start_date` <= `end_date`; either `is_closed` (no times) or both times.
    Times are normalized "HH:MM" (end may be "24:00").
    """

    kind: RuleKind
    dow: int | None = None
    start_time: str | None = None
    end_time: str | None = None
    start_date: date | None = None
    end_date: date | None = None
    is_closed: bool = False

    def covers(self, day: date) -> bool:
        """Whether this date or date_range rule applies to the local date `day`."""
        if self.kind is RuleKind.DATE:
            return self.start_date == day
        if self.kind is RuleKind.DATE_RANGE:
            assert self.start_date is not None and self.end_date is not None
            return self.start_date <= day <= self.end_date
        return False

    def minutes(self) -> tuple[int, int] | None:
        """(start, end) in minutes after local midnight, or None for a closed rule."""
        if self.start_time is None or self.end_time is None:
            return None
        return _to_minutes(self.start_time), _to_minutes(self.end_time)

    def to_dict(self) -> dict[str, object]:
        """The contract's shape (the inverse of `parse_rule`)."""
        return {
            "kind": self.kind.value,
            "dow": self.dow,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "start_date": self.start_date.isoformat() if self.start_date else None,
            "end_date": self.end_date.isoformat() if self.end_date else None,
            "is_closed": self.is_closed,
        }


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    timezone: str | None  # None: the account's
    rules: tuple[ScheduleRule, ...]


# ---------------------------------------------------------------------------------------------
# Parsing


def parse_timezone(raw: object, field: str = "timezone") -> str | None:
    """An IANA timezone name known to `zoneinfo`, or None (the account's)."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput(field, "must be an IANA timezone name such as 'Europe/Berlin', or null")
    name = raw.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(field, f"unknown timezone {name!r}") from None
    return name


def parse_rules(raw: object, field: str = "rules") -> tuple[ScheduleRule, ...]:
    """A list of raw rule dicts to rules; the first invalid one raises `InvalidInput`
    naming `rules[i].field`."""
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise InvalidInput(field, "must be a list of rules")
    if len(raw) > MAX_RULES:
        raise InvalidInput(field, f"at most {MAX_RULES} rules")
    return tuple(parse_rule(item, f"{field}[{index}]") for index, item in enumerate(raw))


def parse_schedule(name: object, timezone: object, rules: object, field: str = "") -> Schedule:
    """Name, timezone and rules, validated together."""
    prefix = f"{field}." if field else ""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{prefix}name", "must be a non-empty string")
    if len(name.strip()) > 200:
        raise InvalidInput(f"{prefix}name", "at most 200 characters")
    return Schedule(
        name=name.strip(),
        timezone=parse_timezone(timezone, f"{prefix}timezone"),
        rules=parse_rules(rules, f"{prefix}rules"),
    )


def parse_rule(raw: object, field: str = "rule") -> ScheduleRule:
    if not isinstance(raw, Mapping):
        raise InvalidInput(field, "must be an object")
    unknown = sorted(str(key) for key in raw if key not in RULE_FIELDS)
    if unknown:
        raise InvalidInput(
            f"{field}.{unknown[0]}",
            f"unknown field; a rule has {', '.join(sorted(RULE_FIELDS))}",
        )

    kind_raw = raw.get("kind")
    try:
        kind = RuleKind(kind_raw) if isinstance(kind_raw, str) else None
    except ValueError:
        kind = None
    if kind is None:
        raise InvalidInput(f"{field}.kind", "must be one of weekly, date, date_range")

    is_closed = _parse_bool(raw.get("is_closed"), f"{field}.is_closed")
    start_time = _parse_time(raw.get("start_time"), f"{field}.start_time", allow_24=False)
    end_time = _parse_time(raw.get("end_time"), f"{field}.end_time", allow_24=True)
    dow = raw.get("dow")
    weekday: int | None = None
    start_date = _parse_date(raw.get("start_date"), f"{field}.start_date")
    end_date = _parse_date(raw.get("end_date"), f"{field}.end_date")

    if kind is RuleKind.WEEKLY:
        if dow is None:
            raise InvalidInput(f"{field}.dow", "is required for a weekly rule (0=Sunday..6)")
        if isinstance(dow, bool) or not isinstance(dow, int) or not 0 <= dow <= 6:
            raise InvalidInput(f"{field}.dow", "must be an integer from 0 (Sunday) to 6 (Saturday)")
        weekday = dow
        if start_date is not None:
            raise InvalidInput(f"{field}.start_date", "must be null for a weekly rule")
        if end_date is not None:
            raise InvalidInput(f"{field}.end_date", "must be null for a weekly rule")
        if is_closed:
            raise InvalidInput(
                f"{field}.is_closed",
                "a weekly rule lists open hours (time outside them is out of hours); "
                "use a date or date_range rule to close a date",
            )
        _require_times(start_time, end_time, field, "a weekly rule")
    else:
        if dow is not None:
            raise InvalidInput(f"{field}.dow", f"must be null for a {kind.value} rule")
        if start_date is None:
            raise InvalidInput(f"{field}.start_date", f"is required for a {kind.value} rule")
        if kind is RuleKind.DATE and end_date is not None and end_date != start_date:
            raise InvalidInput(
                f"{field}.end_date", "must be null for a date rule (use a date_range rule)"
            )
        if kind is RuleKind.DATE:
            end_date = None
        if kind is RuleKind.DATE_RANGE:
            if end_date is None:
                raise InvalidInput(f"{field}.end_date", "is required for a date_range rule")
            if end_date < start_date:
                raise InvalidInput(f"{field}.end_date", "must not be before start_date")
        if is_closed:
            for name, value in (("start_time", start_time), ("end_time", end_time)):
                if value is not None:
                    raise InvalidInput(
                        f"{field}.{name}",
                        "must be null when is_closed is true (the whole date is a holiday)",
                    )
        else:
            _require_times(
                start_time,
                end_time,
                field,
                f"a {kind.value} rule that is not closed (its special open hours)",
            )

    return ScheduleRule(
        kind=kind,
        dow=weekday,
        start_time=start_time,
        end_time=end_time,
        start_date=start_date,
        end_date=end_date,
        is_closed=is_closed,
    )


def _require_times(start: str | None, end: str | None, field: str, what: str) -> None:
    if start is None:
        raise InvalidInput(f"{field}.start_time", f"is required for {what}")
    if end is None:
        raise InvalidInput(f"{field}.end_time", f"is required for {what}")
    if _to_minutes(start) == _to_minutes(end):
        raise InvalidInput(
            f"{field}.end_time",
            "must differ from start_time (for a whole day use 00:00-24:00)",
        )


def _parse_bool(raw: object, field: str) -> bool:
    if raw is None:
        return False
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    raise InvalidInput(field, "must be true or false")


def _parse_time(raw: object, field: str, *, allow_24: bool) -> str | None:
    if raw is None:
        return None
    match = _TIME_RE.match(raw) if isinstance(raw, str) else None
    if match is not None:
        hours, minutes = int(match.group(1)), int(match.group(2))
        if (hours < 24 and minutes < 60) or (allow_24 and hours == 24 and minutes == 0):
            return f"{hours:02d}:{minutes:02d}"
    upper = "24:00" if allow_24 else "23:59"
    raise InvalidInput(field, f"must be a time 'HH:MM' from 00:00 to {upper}, got {raw!r}")


def _parse_date(raw: object, field: str) -> date | None:
    if raw is None:
        return None
    if isinstance(raw, str) and _DATE_RE.match(raw):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    raise InvalidInput(field, f"must be a date 'YYYY-MM-DD', got {raw!r}")


def _to_minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


# ---------------------------------------------------------------------------------------------
# Evaluation


def evaluate(schedule: Schedule, at: datetime, account_timezone: str) -> ScheduleState:
    """The schedule's state at the instant `at` (aware), in the schedule's timezone or else
    the account's. Raises `ValueError` for a naive `at` and `ZoneInfoNotFoundError` (a
    `KeyError`) or `ValueError` for an unusable timezone name."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("evaluate needs an aware datetime")
    zone = ZoneInfo(schedule.timezone or account_timezone)
    local = at.astimezone(zone)
    today = local.date()
    second = local.hour * 3600 + local.minute * 60 + local.second

    closed, today_rules = _rules_for(schedule.rules, today)
    if closed:
        return ScheduleState.HOLIDAY
    for rule in today_rules:
        span = rule.minutes()
        assert span is not None
        start, end = span
        overnight = end < start
        if start * 60 <= second and (overnight or second < end * 60):
            return ScheduleState.IN_HOURS

    yesterday_closed, yesterday_rules = _rules_for(schedule.rules, today - timedelta(days=1))
    if not yesterday_closed:
        for rule in yesterday_rules:
            span = rule.minutes()
            assert span is not None
            start, end = span
            if end < start and second < end * 60:
                return ScheduleState.IN_HOURS
    return ScheduleState.OUT_OF_HOURS


def evaluate_or_open(
    schedule: Schedule | None, at: datetime, account_timezone: str
) -> tuple[ScheduleState, str | None]:
    """`evaluate`, failing open: `(in_hours, why)` when there is no schedule or it cannot be
    evaluated, so a caller is never stranded by a broken schedule; `(state, None)` otherwise.
    The caller logs `why`."""
    if schedule is None:
        return ScheduleState.IN_HOURS, "no schedule: failing open (in_hours)"
    name = schedule.timezone or account_timezone
    try:
        return evaluate(schedule, at, account_timezone), None
    except ZoneInfoNotFoundError:
        return ScheduleState.IN_HOURS, f"unknown timezone {name!r}: failing open (in_hours)"
    except Exception as exc:
        return (
            ScheduleState.IN_HOURS,
            f"schedule {schedule.name!r} could not be evaluated ({type(exc).__name__}: {exc}):"
            " failing open (in_hours)",
        )


def _rules_for(rules: Sequence[ScheduleRule], day: date) -> tuple[bool, list[ScheduleRule]]:
    """(is the date a holiday, the open-hour rules governing it) by precedence
    date > date_range > weekly."""
    for kind in (RuleKind.DATE, RuleKind.DATE_RANGE):
        covering = [rule for rule in rules if rule.kind is kind and rule.covers(day)]
        if covering:
            if any(rule.is_closed for rule in covering):
                return True, []
            return False, covering
    dow = (day.weekday() + 1) % 7  # Python: Monday=0; rules: Sunday=0
    return False, [rule for rule in rules if rule.kind is RuleKind.WEEKLY and rule.dow == dow]


@dataclass(frozen=True, slots=True)
class StoredSchedule:
    """A schedule as an account keeps it."""

    id: str
    account_id: str
    schedule: Schedule
    created_at: datetime
    updated_at: datetime
