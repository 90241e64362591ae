"""The pure parts of `SipRinger`: where a fork goes, its From, the outcome of a ring."""

from __future__ import annotations

import pytest

from afterbeep.telephony.ringing import fork_from, next_hop, outcome_of
from afterbeep.telephony.scripts.ringer import RingOutcome, RingTarget
from afterbeep.telephony.sip.dialog import hop_of


def test_a_fork_goes_to_the_registered_source_behind_nat() -> None:
    target = RingTarget("sip:alice@192.168.1.20:5062", "dev_1", source=("203.0.113.7", 40111))
    proxy = next_hop(target)
    assert proxy == "sip:203.0.113.7:40111;transport=udp"
    assert (hop_of(proxy).host, hop_of(proxy).port, hop_of(proxy).transport) == (
        "203.0.113.7",
        40111,
        "UDP",
    )


def test_a_fork_follows_the_path_when_there_is_no_source() -> None:
    target = RingTarget(
        "sip:alice@10.0.0.5", "dev_1", path=("<sip:edge.example.net;lr>", "<sip:core;lr>")
    )
    assert next_hop(target) == "sip:edge.example.net;lr"


def test_tcp_without_a_source_or_path_goes_to_the_contact_over_tcp() -> None:
    assert next_hop(RingTarget("sip:a@127.0.0.1:5070", "d", transport="tcp")) == (
        "sip:a@127.0.0.1:5070;transport=tcp"
    )
    assert next_hop(RingTarget("sip:a@127.0.0.1:5070", "d")) is None


def test_the_from_of_a_fork_keeps_the_callers_name() -> None:
    assert fork_from("+12025550100", 'Ann "A" Lee', "pbx.example") == (
        r'"Ann \"A\" Lee" <sip:+12025550100@pbx.example>'
    )
    assert fork_from("+12025550100", None, "pbx.example") == "<sip:+12025550100@pbx.example>"
    assert fork_from(None, None, "pbx.example") == "<sip:anonymous@anonymous.invalid>"


@pytest.mark.parametrize(
    ("codes", "outcome"),
    [
        ([], RingOutcome.NO_ANSWER),
        ([487, 486], RingOutcome.NO_ANSWER),  # one rang out: the user did not answer
        ([486, 603], RingOutcome.BUSY),
        ([486, 503], RingOutcome.BUSY),  # the unreachable one did not answer the INVITE
        ([404, 486], RingOutcome.FAILED),
        ([503, 503], RingOutcome.FAILED),
        ([480], RingOutcome.NO_ANSWER),
    ],
)
def test_outcome_of_the_forks(codes: list[int], outcome: RingOutcome) -> None:
    assert outcome_of(codes) is outcome
