"""A flow's menu over real SIP: a SIPp caller presses keys by RFC 4733 while the prompts play,
and the flow runner (on a real SipCall in a TelephonyServer) barges in, says the first key is
not a choice, reprompts, and takes the edge of the second key.

The number → flow → mailbox path end to end (with the API, the database and the deposit) is
the e2e suite's; here the flow's port is the in-test env of test_flow_runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from afterbeep.telephony.call import SipCall
from afterbeep.telephony.interface import Audio, Recording, RecordingSink
from afterbeep.telephony.prompts import prompt
from afterbeep.telephony.scripts.flow import run_flow
from tests.fixtures.rtp_pcap import RtpStreamBuilder, write_pcap
from tests.sip import conftest as sip_rig
from tests.telephony.test_call_sipp import call_sipp, calls_finished, serve
from tests.telephony.test_flow_runner import ENTRY, Env, flow, run_of

sipp_bin = sip_rig.sipp_bin

pytestmark = pytest.mark.timeout(60)

PROMPT = prompt("vm-instructions")  # about 5 s: long enough to be cut by a key
INVALID = prompt("ivr-invalid")


@dataclass
class Watched:
    """The SipCall as the flow sees it, noting each play: its length and the key that cut it."""

    call: SipCall
    plays: list[tuple[int, str | None]] = field(default_factory=list)

    call_id: str = field(init=False)
    caller: str | None = field(init=False)
    caller_name: str | None = field(init=False)
    callee: str | None = field(init=False)

    def __post_init__(self) -> None:
        self.call_id = self.call.call_id
        self.caller, self.caller_name = self.call.caller, self.call.caller_name
        self.callee = self.call.callee

    async def answer(self) -> None:
        await self.call.answer()

    async def play(self, audio: Audio, interrupt_on: str = "") -> str | None:
        key = await self.call.play(audio, interrupt_on)
        self.plays.append((len(audio), key))
        return key

    async def record(
        self,
        sink: RecordingSink,
        *,
        max_seconds: float,
        silence_seconds: float,
        finish_on: str = "#",
        silence_threshold: int = 200,
    ) -> Recording:
        return await self.call.record(
            sink,
            max_seconds=max_seconds,
            silence_seconds=silence_seconds,
            finish_on=finish_on,
            silence_threshold=silence_threshold,
        )

    async def collect_digits(
        self,
        max_digits: int,
        timeout: float,
        terminator: str = "#",
        *,
        inter_digit_timeout: float | None = None,
    ) -> str:
        return await self.call.collect_digits(
            max_digits, timeout, terminator, inter_digit_timeout=inter_digit_timeout
        )

    async def hangup(self) -> None:
        await self.call.hangup()


async def test_menu_over_sip_barges_in_rejects_a_key_and_takes_the_next_ones_edge(
    sipp_bin: str, tmp_path: Path
) -> None:
    # "9" one second after the answer (during the prompt), "1" three seconds later (during the
    # prompt played again after "that is not a valid choice").
    write_pcap(tmp_path / "key.pcap", RtpStreamBuilder().digit("9").pause(3000).digit("1").take())
    graph = flow(
        {
            "start": ENTRY,
            "m": {"kind": "menu", "promptAudioId": "med_menu", "timeoutSec": 10},
            "vm": {"kind": "voicemail", "mailboxId": "mbx_a"},
            "bye": {"kind": "hangup"},
        },
        [("start", "default", "m"), ("m", "digit:1", "vm"), ("m", "digit:2", "bye")],
    )
    env = Env(media={"med_menu": PROMPT})
    seen: dict[str, Any] = {}

    async def script(call: SipCall) -> None:
        watched = Watched(call)
        seen["watched"] = watched
        await run_flow(watched, run_of(graph), env)
        seen["stats"] = call.media_stats()
        seen["end_reason"] = call.end_reason

    async with serve(script) as server:
        await call_sipp(sipp_bin, "media_uac_key_rfc4733.xml", tmp_path, server)
        await calls_finished(server)

    assert seen["watched"].plays == [(len(PROMPT), "9"), (len(INVALID), None), (len(PROMPT), "1")]
    assert env.voicemails == ["mbx_a"]
    assert seen["end_reason"] == "local"  # the flow hung up
    full = (2 * len(PROMPT) + len(INVALID)) // 160
    assert 0 < seen["stats"].packets_sent < full  # both prompts were cut short


async def test_menu_over_sip_barges_in_on_a_key_sent_by_sip_info(
    sipp_bin: str, tmp_path: Path
) -> None:
    # The scenario sends "5", then "#", as INFO (application/dtmf-relay) while the prompt plays,
    # and waits for our BYE: the menu's "5" leads to a short play, then the flow ends.
    graph = flow(
        {
            "start": ENTRY,
            "m": {"kind": "menu", "promptAudioId": "med_menu", "timeoutSec": 10},
            "p": {"kind": "play", "audioId": "med_short"},
        },
        [("start", "default", "m"), ("m", "digit:5", "p")],
    )
    env = Env(media={"med_menu": PROMPT, "med_short": INVALID})
    seen: dict[str, Any] = {}

    async def script(call: SipCall) -> None:
        watched = Watched(call)
        seen["watched"] = watched
        await run_flow(watched, run_of(graph), env)

    async with serve(script) as server:
        await call_sipp(sipp_bin, "media_uac_key_info.xml", tmp_path, server)
        await calls_finished(server)

    assert seen["watched"].plays == [(len(PROMPT), "5"), (len(INVALID), None)]
