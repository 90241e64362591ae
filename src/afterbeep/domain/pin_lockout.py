"""Wrong PINs at the phone menu: when a mailbox is locked, and for how long.

Failures are counted per mailbox and calling source (`PinFailures.source`: who called, see
`source_of`) and for the mailbox from every source together (`ALL_SOURCES`, which allows
`all_sources_factor` times as many: many callers guessing one PIN still lock it). Reaching the
limit within `window` locks for `first_lock`, doubled at each lock that follows (up to
`max_lock`); a right PIN clears the caller's record and the mailbox's growth is kept on the
`ALL_SOURCES` record until a right PIN clears it too. Pure: time is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

ALL_SOURCES = "*"
SOURCE_MAX = 120


@dataclass(frozen=True, slots=True)
class PinFailures:
    mailbox_id: str
    source: str
    failures: int
    window_start: datetime
    locked_until: datetime | None = None
    lockouts: int = 0  # locks so far: each one lasts twice as long as the one before


@dataclass(frozen=True, slots=True)
class PinLockoutPolicy:
    max_failures: int = 5
    window: timedelta = timedelta(hours=1)
    first_lock: timedelta = timedelta(minutes=5)
    max_lock: timedelta = timedelta(hours=24)
    all_sources_factor: int = 4

    def limit(self, source: str) -> int:
        return self.max_failures * (self.all_sources_factor if source == ALL_SOURCES else 1)

    def locked(self, record: PinFailures | None, now: datetime) -> bool:
        return record is not None and record.locked_until is not None and now < record.locked_until

    def lock_length(self, lockouts: int) -> timedelta:
        """How long the lock numbered `lockouts` (0: the first) lasts."""
        length: timedelta = self.first_lock * (2 ** min(lockouts, 30))
        return min(length, self.max_lock)

    def failed(
        self, record: PinFailures | None, mailbox_id: str, source: str, now: datetime
    ) -> PinFailures:
        """The record after one more wrong PIN; it locks when it reaches the limit."""
        if record is None:
            record = PinFailures(mailbox_id, source, 0, now)
        elif record.locked_until is not None and now >= record.locked_until:
            record = replace(record, failures=0, window_start=now, locked_until=None)
        elif now - record.window_start >= self.window:
            record = replace(record, failures=0, window_start=now)
        count = record.failures + 1
        if count >= self.limit(source):
            return replace(
                record,
                failures=0,
                window_start=now,
                locked_until=now + self.lock_length(record.lockouts),
                lockouts=record.lockouts + 1,
            )
        return replace(record, failures=count)


def source_of(device_id: str | None, caller: str | None) -> str:
    """Who is calling, for the lockout: the device when one of ours calls, else the caller's
    number (`anonymous` when withheld)."""
    if device_id is not None:
        return f"dev:{device_id}"[:SOURCE_MAX]
    return f"tel:{caller or 'anonymous'}"[:SOURCE_MAX]
