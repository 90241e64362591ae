"""A smaller drop campaign delivered by the real engine (the real detector) against a SIP callee
run here: a second TelephonyServer answering each recipient's number as an answering machine
(greeting, then a beep), as a person ("Hello?"), or busy. Every recipient must end in its final
drop status, the counts adding up, and only the machines receive the recording."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import numpy as np
import pytest

from afterbeep.domain.ringless import FINAL_STATUSES
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.server import Route, TelephonyServer, telephony_configs
from afterbeep.telephony.sip import IncomingInvite
from tests.campaigns.test_delivery import AUDIO_S, CAMPAIGN_WAIT, SENDER, sender_runtime
from tests.conftest import Backend
from tests.drops.test_e2e import GREETING, HELLO, Line, answer_with
from tests.e2e.rig import Api, api_of, rtp_range
from tests.ringless.support import audio as mp3
from tests.ringless.test_delivery import SQLITE

pytestmark = pytest.mark.timeout(180)

MACHINES = [f"+1202555{n:04d}" for n in range(6001, 6005)]
PEOPLE = [f"+1202555{n:04d}" for n in range(6101, 6104)]
BUSY = [f"+1202555{n:04d}" for n in range(6201, 6203)]
_NUMBER = re.compile(r"\+?1?(202555\d{4})")


class Lines:
    """Answers by the dialled number: machines and people answer, the rest are busy (486)."""

    def __init__(self) -> None:
        self.lines: dict[str, Line] = {}
        self.invites: list[str] = []

    async def route(self, invite: IncomingInvite) -> Route:
        found = _NUMBER.search(invite.request.uri)
        number = "+1" + found.group(1) if found else ""
        self.invites.append(number)
        if number not in MACHINES and number not in PEOPLE:
            return 486
        line = self.lines[number] = Line(len(self.lines) + 1, asyncio.get_running_loop().time())
        greeting = GREETING if number in MACHINES else HELLO

        async def handler(call: SipCall) -> None:
            try:
                await answer_with(call, line, greeting)
            finally:
                line.ended = call.end_reason

        return handler


@contextlib.asynccontextmanager
async def callee_lines() -> AsyncIterator[tuple[Lines, int]]:
    low, high = rtp_range()
    ua_config, media_config = telephony_configs("127.0.0.1:0", None, low, high)
    lines = Lines()
    async with TelephonyServer(ua_config, media_config, router=lines.route) as server:
        assert server.udp_port is not None
        yield lines, server.udp_port


async def drop_use_case(api: Api, port: int) -> str:
    setup = await api.post(
        "/v1/telephony-setups",
        {
            "name": "callee lines",
            "trunk_host": "127.0.0.1",
            "trunk_port": port,
            "transport": "udp",
            "max_calls_per_second": 50,
            "max_concurrent_calls": 20,
            "numbers": [{"e164": SENDER}],
            "deposit_uri": "sip:{to}@127.0.0.1:9",
        },
    )
    await api.verify_sender(SENDER)
    use_case = await api.post(
        "/v1/use-cases",
        {
            "channel": "voicemail_drop",
            "name": "drops",
            "setup_id": setup["id"],
            "sender_selection": "fixed",
            "sender_number": SENDER,
            "require_consent": False,
            "calling_window": {"start": "00:00", "end": "00:00"},
            "max_attempts": 1,
        },
    )
    return str(use_case["id"])


@SQLITE
async def test_a_drop_campaign_finishes_with_counts_adding_up(backend: Backend) -> None:
    recipients = MACHINES + PEOPLE + BUSY
    async with (
        callee_lines() as (lines, port),
        sender_runtime(backend) as rt,
        api_of(rt) as api,
    ):
        use_case_id = await drop_use_case(api, port)
        media = await api.http.post(
            "/v1/media",
            files={"file": ("drop.mp3", mp3(AUDIO_S), "audio/mpeg")},
            headers=api.headers,
        )
        assert media.status_code == 201, media.text
        campaign = await api.post(
            "/v1/campaigns",
            {
                "use_case_id": use_case_id,
                "media_id": media.json()["id"],
                "method": "drop",
                "technique": "single",
                "recipients": recipients,
            },
        )
        assert (campaign["method"], campaign["technique"]) == ("drop", "single")
        async with asyncio.timeout(CAMPAIGN_WAIT):
            while campaign["status"] != "completed":
                await asyncio.sleep(0.5)
                r = await api.http.get(f"/v1/campaigns/{campaign['id']}", headers=api.headers)
                campaign = r.json()
                assert sum(campaign["progress"].values()) == len(recipients), campaign
        assert campaign["recipients_finished"] == campaign["recipients_total"] == len(recipients)
        counts = {s: n for s, n in campaign["progress"].items() if n}
        assert counts == {
            "left_voicemail": len(MACHINES),
            "human_answered": len(PEOPLE),
            "busy": len(BUSY),
        }, campaign["progress"]

        r = await api.http.get(campaign["sends_url"], params={"limit": 200}, headers=api.headers)
        drops = r.json()["items"]
        assert {d["campaign_id"] for d in drops} == {campaign["id"]}
        assert len(drops) == len(recipients)
        assert all(d["status"] in FINAL_STATUSES and d["technique"] == "single" for d in drops)
        status = {d["to"]: (d["status"], d["answered_by"]) for d in drops}
        for number in MACHINES:
            assert status[number][0] == "left_voicemail" and status[number][1].startswith("machine")
        for number in PEOPLE:
            assert status[number] == ("human_answered", "human")
        for number in BUSY:
            assert status[number] == ("busy", None)

        assert sorted(lines.invites) == sorted(recipients)  # single: one INVITE each
        for number in MACHINES:  # the whole 10.5 s tone of the recording, in 20 ms frames
            heard = lines.lines[number].received.astype(np.float64)
            frames = heard[: len(heard) // 160 * 160].reshape(-1, 160)
            loud = np.count_nonzero(np.sqrt((frames**2).mean(axis=1)) > 2000)
            assert len(heard) >= 0.97 * AUDIO_S * 8000, (number, len(heard))
            assert loud >= 0.9 * AUDIO_S * 50, (number, loud)
        for number in PEOPLE:
            heard = lines.lines[number].received
            assert not np.any(np.abs(heard.astype(np.int32)) > 500), number
