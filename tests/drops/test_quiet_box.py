"""Drops into voicemail boxes that stop sending RTP after their beep (issue 15, point 11).

The dropper's detectors must see time pass when packets stop (missing packets are silence):

- into a second afterbeep runtime whose number leads to a mailbox: the mailbox stores the
  whole drop message;
- into a SIPp box that plays a greeting and a beep, then sends nothing until the BYE: the drop
  is left after the beep (`left_voicemail`, `machine_end_beep`).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import numpy as np
import pytest

from afterbeep.audio.compare import compare
from afterbeep.telephony.media import Codec
from tests.conftest import Backend
from tests.drops.support import insert_media, insert_send, insert_setup, insert_use_case, row_of
from tests.drops.test_e2e import GREETING, MESSAGE, sender
from tests.e2e.rig import NUMBER, WAIT, api_of, deposit_runtime, sent, sip_port
from tests.fixtures.rtp_pcap import RtpStreamBuilder, write_pcap
from tests.sip import conftest as sip_rig
from tests.sip.conftest import SippResult, free_udp_port, run_sipp

pytestmark = [
    pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True),
    pytest.mark.timeout(150),
]

sipp_bin = sip_rig.sipp_bin


async def test_a_drop_into_an_afterbeep_mailbox_stores_the_whole_message(
    backend: Backend, tmp_path: Path
) -> None:
    async with (
        deposit_runtime(backend, data_dir=tmp_path / "box") as box,
        api_of(box) as box_api,
        sender(backend) as (rt, _clock, _api, account),
    ):
        mailbox = await box_api.mailbox(skip_instructions=True)
        setup = await insert_setup(rt, account, trunk_port=sip_port(box))
        use_case = await insert_use_case(rt, account, setup)
        media = await insert_media(rt, account, MESSAGE)
        drop_id = await insert_send(
            rt, account, setup, use_case, media, to=NUMBER, technique="single"
        )
        async with asyncio.timeout(WAIT + 40):
            assert await rt.delivery().run_once() == 1
        row = await row_of(rt, drop_id)
        assert (row.status, row.answered_by) == ("left_voicemail", "machine_end_beep"), row
        [message] = await box_api.wait_messages(mailbox["id"], 1)
        stored = await box_api.audio(message["id"])
        # the mailbox keeps 200 ms of a message's trailing silence: compare up to the last sound
        spoken = MESSAGE[: int(np.flatnonzero(np.abs(MESSAGE.astype(np.int32)) > 200)[-1]) + 1]
        result = compare(sent(spoken), stored)
        print(f"drop message as the afterbeep mailbox stored it: {result}")
        assert result.snr_db > 30, result
        assert result.missing_head_ms < 40 and result.missing_tail_ms < 40, result


async def test_a_drop_into_a_box_that_goes_quiet_after_its_beep_is_left(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    builder = RtpStreamBuilder(Codec.PCMU, 20, 101)
    write_pcap(tmp_path / "greeting.pcap", builder.audio(GREETING).take())
    port = free_udp_port()
    box = asyncio.ensure_future(
        run_sipp(
            sipp_bin,
            "drop_uas_greeting_then_quiet.xml",
            tmp_path,
            remote=None,
            local_port=port,
            timeout=WAIT * 3,
            extra=("-mp", str(free_udp_port())),
        )
    )
    try:
        await _listening(port)
        async with sender(backend) as (rt, _clock, _api, account):
            setup = await insert_setup(rt, account, trunk_port=port)
            use_case = await insert_use_case(rt, account, setup)
            media = await insert_media(rt, account, MESSAGE)
            drop_id = await insert_send(rt, account, setup, use_case, media, technique="single")
            async with asyncio.timeout(WAIT + 40):
                assert await rt.delivery().run_once() == 1
            row = await row_of(rt, drop_id)
        result: SippResult = await box
    finally:
        if not box.done():
            box.cancel()
            await asyncio.gather(box, return_exceptions=True)
    assert (row.status, row.answered_by) == ("left_voicemail", "machine_end_beep"), row
    greeting_ms = len(GREETING) // 8
    assert row.beep_ms is not None and abs(row.beep_ms - greeting_ms) <= 100, row.beep_ms
    assert result.returncode == 0, result.output  # the BYE came after the message


async def _listening(port: int) -> None:
    """Until SIPp has bound its SIP port (it signals readiness no other way)."""
    async with asyncio.timeout(5):
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    return
            await asyncio.sleep(0.02)
