"""RFC 4733 receive: one digit per event, whatever subset of its packets arrives."""

from __future__ import annotations

import struct

import pytest

from afterbeep.telephony.media.dtmf import DtmfReceiver, dtmf_payloads


def ev(code: int, end: bool = False, volume: int = 10, duration: int = 160) -> bytes:
    return struct.pack("!BBH", code, (0x80 if end else 0) | volume, duration)


def run(rx: DtmfReceiver, packets: list[tuple[int, bytes]], ssrc: int = 1) -> list[str]:
    digits = []
    for ts, payload in packets:
        d = rx.receive(ssrc, ts, payload)
        if d is not None:
            digits.append(d)
    return digits


def test_full_event_with_three_end_packets_is_one_digit() -> None:
    packets = [(1000, ev(5, duration=d)) for d in (160, 320, 480)]
    packets += [(1000, ev(5, end=True, duration=640))] * 3
    assert run(DtmfReceiver(), packets) == ["5"]


def test_digit_without_start_packet() -> None:
    rx = DtmfReceiver()
    assert run(rx, [(2000, ev(11, duration=480)), (2000, ev(11, end=True, duration=800))]) == ["#"]
    assert run(rx, [(4000, ev(10, end=True, duration=800))] * 3) == ["*"]  # only end packets


def test_repeated_digit_is_reported_per_event() -> None:
    packets = [(ts, ev(1, end=e)) for ts in (100, 2000) for e in (False, True, True, True)]
    assert run(DtmfReceiver(), packets) == ["1", "1"]


def test_volume_is_ignored() -> None:
    packets = [(100, ev(9, volume=0)), (100, ev(9, volume=63)), (100, ev(9, end=True, volume=33))]
    assert run(DtmfReceiver(), packets) == ["9"]


def test_late_end_packet_of_an_older_event_is_not_a_new_digit() -> None:
    packets = [
        (100, ev(2)),
        (100, ev(2, end=True)),
        (900, ev(3)),
        (100, ev(2, end=True)),  # reordered redundant end of the first event
        (900, ev(3, end=True)),
    ]
    assert run(DtmfReceiver(), packets) == ["2", "3"]


def test_long_event_segments_stay_one_digit() -> None:
    packets = [(0, ev(4, duration=0xFFFF)), (0xFFFF, ev(4, duration=800)), (0xFFFF, ev(4, True))]
    assert run(DtmfReceiver(), packets) == ["4"]


def test_flash_and_malformed_are_not_digits() -> None:
    rx = DtmfReceiver()
    assert run(rx, [(1, ev(16)), (2, b"\x01")]) == []
    assert rx.malformed == 1


def test_events_of_another_ssrc_are_separate() -> None:
    rx = DtmfReceiver()
    assert rx.receive(1, 100, ev(7)) == "7"
    assert rx.receive(2, 100, ev(7)) == "7"


def test_sent_event_round_trips_through_the_receiver() -> None:
    payloads = dtmf_payloads("#", duration_samples=800, step_samples=160)
    assert [end for _, end in payloads] == [False] * 4 + [True] * 3
    assert run(DtmfReceiver(), [(555, p) for p, _ in payloads]) == ["#"]
    with pytest.raises(ValueError):
        dtmf_payloads("x", 800, 160)
