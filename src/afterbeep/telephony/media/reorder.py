"""Sequence-number reordering for one RTP stream: a small window, no I/O, time passed in.

Packets come out in sequence order. A packet that arrives ahead of a gap is held
until the gap fills, until ``window`` packets are held, or until it has waited
``max_wait`` seconds; then the gap is declared lost and delivery moves on. Nothing
stalls on one lost packet, and :meth:`Reorderer.flush` hands over everything still
held, so the tail of a stream is never lost (aiortp 0.8.0's jitter buffer does
both wrong: one lost packet stalls it and it has no flush).

Sequence numbers are extended past 16 bits against the next expected one (RFC 3550
appendix A.1), so wrap-around is invisible; a jump larger than ``MAX_DROPOUT`` forward
or ``MAX_MISORDER`` back is a restarted sender and resynchronises the stream.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

from afterbeep.telephony.media.rtp import seq_diff

__all__ = ["MAX_DROPOUT", "MAX_MISORDER", "Reorderer"]

T = TypeVar("T")

MAX_DROPOUT = 3000  # RFC 3550 appendix A.1
MAX_MISORDER = 100  # RFC 3550 appendix A.1
_LOST_MEMORY = 256  # how many given-up sequence numbers we remember to tell "late" from "duplicate"


class Reorderer(Generic[T]):
    """Hands out items in sequence order; counts lost, late and duplicate packets."""

    def __init__(self, window: int = 5, max_wait: float = 0.1) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self.max_wait = max_wait
        self._next: int | None = None  # extended sequence number expected next
        self._held: dict[int, tuple[T, float]] = {}
        self._given_up: deque[int] = deque(maxlen=_LOST_MEMORY)
        self._given_up_set: set[int] = set()
        self.lost = 0
        self.late = 0
        self.duplicates = 0
        self.resyncs = 0

    def __len__(self) -> int:
        return len(self._held)

    @property
    def deadline(self) -> float | None:
        """When :meth:`expire` would next release something, or None if nothing is held."""
        if not self._held:
            return None
        return min(arrival for _, arrival in self._held.values()) + self.max_wait

    @property
    def expected(self) -> int | None:
        """The extended sequence number expected next (None before the first packet)."""
        return self._next

    def advance(self, count: int) -> None:
        """``count`` packets were taken in order elsewhere (the native receiver), nothing held."""
        assert self._next is not None and not self._held
        self._next += count

    def take_next(self, seq: int) -> bool:
        """If ``seq`` is exactly the one expected and nothing is held, consume it (the
        common case, without building a list): the caller delivers the item itself."""
        expected = self._next
        if expected is not None and seq == expected & 0xFFFF and not self._held:
            self._next = expected + 1
            return True
        return False

    def push(self, seq: int, item: T, now: float) -> list[T]:
        """Add a packet; return the items now deliverable, in order."""
        expected = self._next
        if expected is not None and seq == expected & 0xFFFF and not self._held:
            self._next = expected + 1  # the common case: the next packet, nothing held
            return [item]
        if self._next is None:
            self._next = seq
        ext = self._next + seq_diff(seq, self._next)
        ahead = ext - self._next
        out: list[T] = []
        if ahead < -MAX_MISORDER or ahead > MAX_DROPOUT:
            self.resyncs += 1
            out = self.flush()
            self._next = ext
            ahead = 0
        elif ahead < 0:
            if ext in self._given_up_set:
                self.late += 1
            else:
                self.duplicates += 1
            return out
        if ahead == 0 and not self._held:
            self._next = ext + 1
            out.append(item)
            return out
        if ext in self._held:
            self.duplicates += 1
            return out
        self._held[ext] = (item, now)
        self._release_in_order(out)
        while len(self._held) > self.window:
            self._skip_gap(out)
        return out

    def expire(self, now: float) -> list[T]:
        """Give up on gaps that packets behind them have waited ``max_wait`` for."""
        out: list[T] = []
        while self._held:
            deadline = self.deadline
            if deadline is None or deadline > now:
                break
            self._skip_gap(out)
        return out

    def flush(self) -> list[T]:
        """Everything still held, in order (end of stream: no tail is lost)."""
        out: list[T] = []
        while self._held:
            self._skip_gap(out)
        return out

    def _release_in_order(self, out: list[T]) -> None:
        assert self._next is not None
        while self._next in self._held:
            out.append(self._held.pop(self._next)[0])
            self._next += 1

    def _skip_gap(self, out: list[T]) -> None:
        """Declare the packets before the lowest held one lost, then release in order."""
        assert self._next is not None
        lowest = min(self._held)
        for missing in range(self._next, lowest):
            self.lost += 1
            if len(self._given_up) == self._given_up.maxlen:
                self._given_up_set.discard(self._given_up[0])
            self._given_up.append(missing)
            self._given_up_set.add(missing)
        self._next = lowest
        self._release_in_order(out)
