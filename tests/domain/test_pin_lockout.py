"""The PIN lockout rules, with time passed in: the limit per source and for all sources, the
window, and a lock that doubles each time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from afterbeep.domain.pin_lockout import ALL_SOURCES, PinFailures, PinLockoutPolicy, source_of

T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
POLICY = PinLockoutPolicy(
    max_failures=3,
    window=timedelta(minutes=10),
    first_lock=timedelta(minutes=1),
    max_lock=timedelta(minutes=5),
    all_sources_factor=2,
)


def fail(times: int, source: str = "tel:+1", start: PinFailures | None = None, at: datetime = T0) -> PinFailures:
    record = start
    for _ in range(times):
        record = POLICY.failed(record, "vm_a", source, at)
    assert record is not None
    return record


def test_the_limit_locks_and_the_lock_doubles_each_time_up_to_the_cap() -> None:
    two = fail(2)
    assert not POLICY.locked(two, T0) and two.failures == 2
    first = fail(1, start=two)
    assert first.locked_until == T0 + timedelta(minutes=1) and first.lockouts == 1
    assert POLICY.locked(first, T0 + timedelta(seconds=59))
    assert not POLICY.locked(first, T0 + timedelta(minutes=1))

    later = T0 + timedelta(minutes=2)
    second = fail(3, start=first, at=later)
    assert second.locked_until == later + timedelta(minutes=2) and second.lockouts == 2
    third = fail(3, start=second, at=later + timedelta(minutes=3))
    assert third.locked_until == later + timedelta(minutes=3) + timedelta(minutes=4)
    fourth = fail(3, start=third, at=later + timedelta(minutes=10))
    assert fourth.locked_until == later + timedelta(minutes=15)  # capped at 5 minutes


def test_failures_outside_the_window_start_over() -> None:
    two = fail(2)
    fresh = fail(1, start=two, at=T0 + timedelta(minutes=10))
    assert fresh.failures == 1 and fresh.locked_until is None


def test_all_sources_together_allow_more() -> None:
    assert POLICY.limit(ALL_SOURCES) == 6 and POLICY.limit("tel:+1") == 3
    five = fail(5, source=ALL_SOURCES)
    assert not POLICY.locked(five, T0)
    assert POLICY.locked(fail(1, source=ALL_SOURCES, start=five), T0)


def test_sources() -> None:
    assert source_of("dev_1", "+12025550123") == "dev:dev_1"
    assert source_of(None, "+12025550123") == "tel:+12025550123"
    assert source_of(None, None) == "tel:anonymous"
    assert len(source_of(None, "9" * 500)) == 120
