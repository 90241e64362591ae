"""The agent's callback over real SIP, against the real service: a baresip softphone registered
as the agent answers by itself, a SIPp UAS stands for the account's trunk (the customer).

First the customer is busy: the agent's phone is answered, then hung up, and the result is
`customer_busy`. Then the customer answers: it sees the call center's number in From and
P-Asserted-Identity, audio flows both ways through the bridge (the agent's microphone reaches
the customer's RTP peer intact; the customer's audio is relayed to the agent's phone, which
counts it), the customer's BYE ends both calls and the result is `completed` with its talk
time."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from afterbeep.app import Runtime
from afterbeep.audio.compare import compare
from afterbeep.audio.tones import speech_like
from afterbeep.services.callbacks import CallbackOutcome, CallbackResult
from afterbeep.services.contact_center import CallbackRequest, CallbackState
from afterbeep.telephony.interface import Audio
from afterbeep.telephony.media import Codec
from afterbeep.telephony.media.rtp import RtpIn
from afterbeep.telephony.ringing import SipRinger
from tests.conftest import Backend
from tests.e2e.rig import Api, api_of, deposit_runtime, settle, sip_port
from tests.e2e.test_device_outbound import TrunkRtp, allow_out
from tests.e2e.test_registration import PASSWORD, WAIT, make_device, registrations
from tests.e2e.test_user_calls import BridgeSpy
from tests.fixtures import baresip as phone
from tests.fixtures.baresip import Baresip
from tests.fixtures.rtp_pcap import RtpCapture, g711_roundtrip
from tests.sip import conftest as sip_rig
from tests.telephony.bridge_rig import codec_keys, device, stream_of

sipp_bin = sip_rig.sipp_bin

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True),
]

CUSTOMER = "+14155550199"
CALL_CENTER = "+12125550100"  # the number the call center chose; not the setup's own
VOICE_CALL = "vc_01jg8asp59ps9rtt7azhrhvcre"


@dataclass
class Results:
    recorded: list[CallbackResult] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def record(self, result: CallbackResult) -> None:
        async with self.changed:
            self.recorded.append(result)
            self.changed.notify_all()

    async def wait(self, count: int) -> CallbackResult:
        async with asyncio.timeout(WAIT), self.changed:
            await self.changed.wait_for(lambda: len(self.recorded) >= count)
        return self.recorded[count - 1]


async def register_agent(rt: Runtime, api: Api, agent: Baresip) -> str:
    user_id, _ = await make_device(api, "301", "bare-agent")
    await agent.command(
        "uanew",
        f"<sip:bare-agent@127.0.0.1:{sip_port(rt)};transport=udp>;auth_pass={PASSWORD};"
        "regint=300;audio_codecs=PCMU;answermode=auto",
    )
    async with asyncio.timeout(WAIT):
        while not await registrations(api, user_id):  # noqa: ASYNC110 (polls the API)
            await asyncio.sleep(0.1)
    # the new account is the current one (its fixture starts with an unregistered one): its
    # call is the one `ausrc` switches
    await agent.command("uafind", f"sip:bare-agent@127.0.0.1:{sip_port(rt)}")
    return user_id


async def closed_calls(agent: Baresip, count: int) -> None:
    async with asyncio.timeout(WAIT):
        while sum(e.get("type") == "CALL_CLOSED" for e in agent.events) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def audio_of(packets: list[RtpIn]) -> Audio:
    capture = RtpCapture()
    capture.packets = packets
    return capture.audio()


async def test_the_agent_is_called_then_the_customer_and_they_talk(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    said_by_agent = speech_like(12000, seed=61)  # the softphone's microphone, from its answer
    said_by_customer = speech_like(1500, seed=62)
    trunk_rtp = await TrunkRtp.open()
    for part in ("agent", "busy", "talk"):
        (tmp_path / part).mkdir()
    async with (
        deposit_runtime(
            backend,
            sip_digest_algorithms="MD5",  # baresip 1.0: MD5 only
            callback_agent_ring_seconds=5,
            callback_customer_ring_seconds=5,
        ) as rt,
        api_of(rt) as api,
        phone.baresip_phone(tmp_path / "agent", said_by_agent) as agent,
    ):
        results = Results()
        rt.callbacks.results = results
        spy = BridgeSpy(rt)
        user_id = await register_agent(rt, api, agent)

        def callback() -> CallbackRequest:
            return CallbackRequest(api.account_id, user_id, CUSTOMER, CALL_CENTER, VOICE_CALL)

        # the customer is busy: the agent answered, is told, and hung up
        busy, busy_port = await device(sipp_bin, "uas_busy.xml", tmp_path / "busy")
        await allow_out(api, busy_port)
        started = await rt.callbacks.start(callback())
        assert started.state is CallbackState.CALLING_AGENT
        established = await agent.wait_event("CALL_ESTABLISHED", timeout=WAIT)  # by itself
        print(f"the agent's phone saw {agent.events}")
        assert established.get("peeruri") == f"sip:{CUSTOMER}@127.0.0.1"  # the customer's number
        assert established.get("peerdisplayname") == "Callback"
        result = await results.wait(1)
        assert result.outcome is CallbackOutcome.CUSTOMER_BUSY and result.duration == 0
        assert await rt.callbacks.status(api.account_id, started.id) == (
            type(started)(started.id, CallbackState.FAILED, "customer_busy")
        )
        assert isinstance(rt.ringer, SipRinger) and not rt.ringer._answered_by  # forgotten
        await closed_calls(agent, 1)
        rang = await asyncio.wait_for(busy, WAIT)
        assert rang.returncode == 0, rang.output

        # the customer answers, talks 5 s and hangs up
        customer, trunk_port = await device(
            sipp_bin, "bridge_uas_answer_bye.xml", tmp_path / "talk",
            *codec_keys(Codec.PCMU, trunk_rtp.port), answer_ms=500, talk_ms=5000,
        )  # fmt: skip
        await allow_out(api, trunk_port)
        agent.events.clear()
        started = await rt.callbacks.start(callback())
        to_customer, to_agent = await spy.relaying()
        assert (await rt.callbacks.status(api.account_id, started.id)) == (
            type(started)(started.id, CallbackState.CONNECTED, None)
        )
        customer_call, agent_leg = await spy.bridged
        assert agent_leg.media is not None and customer_call.caller == CALL_CENTER
        assert rt.ringer.in_call(user_id)  # queues offer the agent nothing meanwhile
        # the agent speaks (its microphone) for a second at least
        async with asyncio.timeout(WAIT):
            while len(trunk_rtp.packets) < 50:  # noqa: ASYNC110 (the peer has no event per count)
                await asyncio.sleep(0.05)
        spoken = list(trunk_rtp.packets)
        # then the agent's phone sends back what it hears (its speaker becomes its microphone),
        # and the customer speaks
        await agent.command("ausrc", "aubridge,speaker")
        await asyncio.sleep(0.2)
        echoed_from = len(trunk_rtp.packets)
        sent_before = agent_leg.media.send_stream.packets_sent
        said = stream_of(Codec.PCMU, said_by_customer, "")
        await trunk_rtp.play(to_customer, said)
        await asyncio.sleep(0.5)  # the way through the relay, the phone and back
        relayed = agent_leg.media.send_stream.packets_sent - sent_before
        echoed = list(trunk_rtp.packets[echoed_from:])
        result = await results.wait(2)
        sipp = await asyncio.wait_for(customer, WAIT)
        await closed_calls(agent, 1)  # the customer's BYE ended the agent's call too
        await settle(rt)
    trunk_rtp.close()
    assert sipp.returncode == 0, sipp.output
    invite = sipp.messages[sipp.messages.index("INVITE sip:") :]
    assert invite.startswith(f"INVITE sip:{CUSTOMER}@127.0.0.1:{trunk_port} SIP/2.0")
    assert re.search(rf"^From: <sip:\{CALL_CENTER}@127\.0\.0\.1>;tag=", invite, re.M), invite[:800]
    assert re.search(rf"^P-Asserted-Identity: <sip:\{CALL_CENTER}@127\.0\.0\.1>", invite, re.M)
    assert to_agent != to_customer
    # the agent's microphone reached the customer intact (from some way into it: the agent
    # heard the prompt and ringback first)
    heard = compare(g711_roundtrip(Codec.PCMU, said_by_agent), audio_of(spoken), max_lag_ms=12000)
    print(f"the customer heard the agent: {heard}")
    assert heard.snr_db >= 30, heard
    # the customer's audio went through the bridge to the agent's phone, and came back
    assert relayed >= 60, relayed  # 75 packets of 20 ms were sent
    # (frame by frame: the phone's loopback may slip a frame on a loaded machine)
    frames = {data[12:] for _, data in said}
    back = frames & {p.payload for p in echoed}
    echo = compare(g711_roundtrip(Codec.PCMU, said_by_customer), audio_of(echoed))
    print(f"{len(back)} of {len(frames)} frames came back; {echo}")
    assert len(back) >= 0.9 * len(frames), echo
    # the result: completed, with the talk time (the customer talked 5 s after its answer)
    assert result.outcome is CallbackOutcome.COMPLETED and result.callback_id == started.id
    assert (result.account_id, result.voice_call_id) == (api.account_id, VOICE_CALL)
    assert result.connected_at is not None
    assert result.started_at < result.connected_at < result.ended_at
    assert result.duration >= 4.9
    assert rt.callbacks.running == 0 and not rt.ringer.in_call(user_id)
