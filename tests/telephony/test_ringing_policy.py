"""A registered device is rung at the address its REGISTER came from even where the network
policy refuses that range (an office LAN: here 127.0.0.0/8, not opened); a contact with no
registration source (a URI a tenant could have written) is still refused."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from afterbeep.domain.netpolicy import NetworkPolicy, trusting
from afterbeep.telephony.media import Codec
from afterbeep.telephony.scripts.ringer import RingOutcome, RingTarget
from tests.sip import conftest as sip_rig
from tests.telephony.bridge_rig import caller, codec_keys, device, service

pytestmark = pytest.mark.timeout(60)

sipp_bin = sip_rig.sipp_bin
CLOSED = NetworkPolicy()  # loopback and private ranges refused


def test_trusting_opens_exactly_the_registration_source() -> None:
    trusted = trusting(CLOSED, "192.168.1.20")
    assert trusted.permits(IPv4Address("192.168.1.20"))
    assert not trusted.permits(IPv4Address("192.168.1.21"))
    assert not CLOSED.permits(IPv4Address("192.168.1.20"))
    assert trusting(CLOSED, "phone.example") == CLOSED  # only an address, never a name


async def test_a_registered_device_is_rung_where_it_registered_from_a_refused_range(
    sipp_bin: str, tmp_path: Path
) -> None:
    async with service(CLOSED) as rig:
        busy, port = await device(sipp_bin, "media_uas_busy.xml", tmp_path)
        registered = RingTarget(
            uri=f"sip:desk@127.0.0.1:{port}", label="usr_a/dev_a", source=("127.0.0.1", port)
        )
        written = RingTarget(uri=f"sip:lan@127.0.0.2:{port}", label="dev_b")  # no REGISTER
        rig.targets = [registered, written]
        rig.timeout = 3.0
        assert rig.server.udp_port is not None
        uac = caller(sipp_bin, "bridge_uac_unanswered.xml", tmp_path, rig.server.udp_port,
                     *codec_keys(Codec.PCMU, 9))  # fmt: skip
        outcome = await asyncio.wait_for(asyncio.shield(rig.rung), 10)
        results = await asyncio.gather(uac, busy)
    for result in results:
        assert result.returncode == 0, result.output
    # the registered device got its INVITE and said busy; the other fork was refused (403),
    # not sent (a fork sent there would have rung out: NO_ANSWER)
    assert outcome.outcome is RingOutcome.FAILED
    assert [label for label, _ in rig.forks] == ["usr_a/dev_a", "dev_b"]


async def test_a_user_is_in_a_call_while_one_of_its_devices_is_bridged(
    sipp_bin: str, tmp_path: Path
) -> None:
    """`SipRinger.in_call` (what queues ask before offering an agent a call)."""
    async with service(CLOSED) as rig:
        desk, port = await device(
            sipp_bin, "bridge_uas_answer_bye.xml", tmp_path, *codec_keys(Codec.PCMU, 9),
            answer_ms=200, talk_ms=1500,
        )  # fmt: skip
        rig.targets = [
            RingTarget(
                uri=f"sip:desk@127.0.0.1:{port}", label="usr_a/dev_a", source=("127.0.0.1", port)
            )
        ]
        assert rig.server.udp_port is not None
        assert not rig.ringer.in_call("usr_a")
        uac = caller(sipp_bin, "bridge_uac_wait_bye.xml", tmp_path, rig.server.udp_port,
                     *codec_keys(Codec.PCMU, 9))  # fmt: skip
        await asyncio.wait_for(asyncio.shield(rig.bridged), 10)
        assert rig.ringer.in_call("usr_a") and not rig.ringer.in_call("usr_b")
        await asyncio.wait_for(asyncio.shield(rig.ended), 10)
        assert not rig.ringer.in_call("usr_a")
        results = await asyncio.gather(uac, desk)
    for result in results:
        assert result.returncode == 0, result.output
