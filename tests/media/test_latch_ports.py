"""Source latching (symmetric RTP) and RTP port bookkeeping, without sockets."""

from __future__ import annotations

import pytest

from afterbeep.telephony.media.latch import SourceFilter
from afterbeep.telephony.media.ports import PortAllocator

SDP = ("192.0.2.10", 4000)


def test_latches_to_the_sdp_ip_on_another_port_then_only_that_source() -> None:
    f = SourceFilter(SDP)
    assert not f.accept(("198.51.100.1", 4000))  # another host, before latching
    assert f.accept(("192.0.2.10", 4010))  # same IP, different port: latched
    assert f.send_to == ("192.0.2.10", 4010)
    assert not f.accept(("192.0.2.10", 4020))
    assert f.accept(("192.0.2.10", 4000))  # the SDP's exact address always wins
    assert f.send_to == SDP and not f.accept(("192.0.2.10", 4010))


def test_nat_latching_accepts_the_first_source_only() -> None:
    f = SourceFilter(("10.0.0.5", 4000), allow_nat=True)
    assert f.accept(("203.0.113.9", 61000, 0, 0))  # IPv6-style tuple keys on (host, port)
    assert f.send_to == ("203.0.113.9", 61000)
    assert not f.accept(("203.0.113.77", 61000))
    assert f.accept_control(("203.0.113.9", 61001))


def test_new_negotiation_resets_the_latch() -> None:
    f = SourceFilter(SDP)
    assert f.accept(("192.0.2.10", 4010))
    f.reset(SDP)  # same address: keep the latch
    assert f.latched == ("192.0.2.10", 4010)
    f.reset(("192.0.2.20", 5000))
    assert f.latched is None and f.send_to == ("192.0.2.20", 5000)
    assert not f.accept(("192.0.2.10", 4010))


def test_port_allocator_hands_out_even_ports_round_robin() -> None:
    ports = PortAllocator(10001, 10008)  # even ports with their +1 in range: 10002..10006
    assert ports.capacity == 3
    first = list(ports.candidates())
    assert first == [10002, 10004, 10006]
    ports.reserve(10002)
    ports.release(10002)
    ports.reserve(10004)
    assert list(ports.candidates()) == [10002, 10006]  # 10004 in use
    with pytest.raises(ValueError):
        PortAllocator(10001, 10002)
