"""The receive cores without sockets: Reorderer (sequence) and PlayoutPlacer (timestamps)."""

from __future__ import annotations

from afterbeep.telephony.media.placement import Placement, PlayoutPlacer
from afterbeep.telephony.media.reorder import Reorderer


def feed(r: Reorderer[int], seqs: list[int], now: float = 0.0) -> list[int]:
    out: list[int] = []
    for s in seqs:
        out += r.push(s % 65536, s, now)
    return out


def test_in_order_packets_pass_through_at_once() -> None:
    r: Reorderer[int] = Reorderer(window=3)
    assert feed(r, [10, 11, 12]) == [10, 11, 12]
    assert len(r) == 0 and r.deadline is None


def test_reordered_packets_come_out_in_order() -> None:
    r: Reorderer[int] = Reorderer(window=3)
    assert feed(r, [1, 3, 2, 4, 6, 5]) == [1, 2, 3, 4, 5, 6]
    assert (r.lost, r.late, r.duplicates) == (0, 0, 0)


def test_one_lost_packet_does_not_stall_delivery() -> None:
    r: Reorderer[int] = Reorderer(window=3)
    assert feed(r, [1, 2, 4, 5, 6]) == [1, 2]
    assert feed(r, [7]) == [4, 5, 6, 7]  # the window is full: 3 is given up
    assert r.lost == 1
    assert feed(r, [3]) == []  # arrives after we gave up on it
    assert r.late == 1 and r.duplicates == 0


def test_gap_is_given_up_after_max_wait() -> None:
    r: Reorderer[int] = Reorderer(window=10, max_wait=0.1)
    assert r.push(1, 1, 0.0) == [1]
    assert r.push(3, 3, 0.02) == []
    assert r.deadline is not None and abs(r.deadline - 0.12) < 1e-9
    assert r.expire(0.11) == []
    assert r.expire(0.125) == [3]
    assert r.lost == 1 and r.deadline is None


def test_duplicates_are_dropped_held_or_delivered() -> None:
    r: Reorderer[int] = Reorderer(window=5)
    assert feed(r, [1, 2, 2, 4, 4, 3, 1]) == [1, 2, 3, 4]
    assert r.duplicates == 3 and r.late == 0


def test_sequence_wrap_around() -> None:
    r: Reorderer[int] = Reorderer(window=3)
    seqs = [65533, 65534, 65536, 65535, 65537, 65538]  # 65536 -> 0 on the wire
    assert feed(r, seqs) == [65533, 65534, 65535, 65536, 65537, 65538]
    assert r.lost == 0


def test_flush_hands_over_the_tail() -> None:
    r: Reorderer[int] = Reorderer(window=5)
    assert feed(r, [1, 3, 4, 6]) == [1]
    assert r.flush() == [3, 4, 6]
    assert r.lost == 2 and len(r) == 0


def test_restarted_sequence_resynchronises() -> None:
    r: Reorderer[int] = Reorderer(window=3)
    assert feed(r, [100, 101]) == [100, 101]
    assert feed(r, [30000, 30001]) == [30000, 30001]
    assert r.resyncs == 1


def test_placer_contiguous_and_gap() -> None:
    p = PlayoutPlacer()
    assert p.place(1, 1000, 160, 0.00) == Placement(0, 0)
    assert p.place(1, 1160, 160, 0.02) == Placement(0, 0)
    assert p.place(1, 1480, 160, 0.06) == Placement(160, 0)  # one packet lost
    assert p.position == 640


def test_placer_silence_suppression_after_marker() -> None:
    p = PlayoutPlacer()
    p.place(1, 0, 160, 0.0)
    gap = 8000 * 5  # 5 s without packets, then a talkspurt
    assert p.place(1, 160 + gap, 160, 5.02, marker=True) == Placement(gap, 0)


def test_placer_timestamp_wrap_around() -> None:
    p = PlayoutPlacer()
    start = 2**32 - 320
    assert p.place(7, start, 160, 0.0) == Placement(0, 0)
    assert p.place(7, start + 160, 160, 0.02) == Placement(0, 0)
    assert p.place(7, 0, 160, 0.04) == Placement(0, 0)
    assert p.place(7, 320, 160, 0.08) == Placement(160, 0)
    assert p.discontinuities == 0


def test_placer_overlap_is_cut() -> None:
    p = PlayoutPlacer()
    p.place(1, 0, 160, 0.0)
    assert p.place(1, 80, 160, 0.02) == Placement(0, 80)
    assert p.place(1, 100, 80, 0.03) == Placement(0, 80)  # entirely in the past
    assert p.position == 240


def test_placer_ssrc_change_uses_arrival_clock() -> None:
    p = PlayoutPlacer()
    p.place(1, 5000, 160, 10.0)
    # a new source after 1 s of arrival time, with unrelated timestamps
    where = p.place(2, 123456789, 160, 11.02)
    assert where.discontinuity and where.silence == 8000
    assert p.place(2, 123456789 + 160, 160, 11.04) == Placement(0, 0)


def test_placer_implausible_jump_uses_arrival_clock() -> None:
    p = PlayoutPlacer()
    p.place(1, 0, 160, 0.0)
    where = p.place(1, 160 + 8000 * 3600, 160, 0.04)  # an hour ahead after 40 ms
    assert where.discontinuity and where.silence == 160
    where = p.place(1, 50, 160, 0.06, marker=True)  # restarted clock, marked
    assert where.discontinuity and where.silence == 0
