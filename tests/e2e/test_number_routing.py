"""A number's routing over real SIP: a disabled number answers 404, an anonymous caller on a
number that refuses them 403, a `hangup` number declines (603) (flows: test_flow_calls); and a scheduled number reaches its closed mailbox after hours and its holiday
mailbox on a holiday, a SIPp caller's message stored there. Every refusal is checked twice: the
first INVITE takes the router's look-up, the second its cache (`route_now`)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from afterbeep.app import Runtime
from tests.conftest import Backend
from tests.e2e.rig import (
    BEEP_S,
    GREETING_S,
    NUMBER,
    Api,
    api_of,
    caller_pcap,
    deposit_runtime,
    settle,
    silence,
    sip_port,
    sipp_calls,
    speech,
)
from tests.sip import conftest as sip_rig
from tests.sip.peer import RawPeer, status_of

sipp_bin = sip_rig.sipp_bin

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True),
]

LEAD_MS = int((GREETING_S + BEEP_S) * 1000) + 600
SDP = (
    b"v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
KNOWN_CALLER = '"Front Door" <sip:+12025550123@127.0.0.1>'
ANONYMOUS = '"Anonymous" <sip:anonymous@anonymous.invalid>'


async def invite(peer: RawPeer, rt: Runtime, dialed: str, from_: str, *extra: str) -> int | None:
    """Send one INVITE to `dialed`; the final answer's status (ACKed), None when none came."""
    port = sip_port(rt)
    branch = "z9hG4bK-" + secrets.token_hex(6)
    call_id = secrets.token_hex(8) + "@caller"
    lines = [
        f"INVITE sip:{dialed}@127.0.0.1:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch={branch};rport",
        f"From: {from_};tag=caller1",
        f"To: <sip:{dialed}@127.0.0.1:{port}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:caller@127.0.0.1:{peer.port}>",
        "Max-Forwards: 70",
        *extra,
        "Content-Type: application/sdp",
        f"Content-Length: {len(SDP)}",
    ]
    peer.send("\r\n".join(lines).encode() + b"\r\n\r\n" + SDP, port)
    answer = await peer.response(branch, timeout=10)
    status = status_of(answer)
    if answer is not None and status is not None and status >= 300:
        to = next(line for line in answer.decode().split("\r\n") if line.lower().startswith("to:"))
        ack = [
            f"ACK sip:{dialed}@127.0.0.1:{port} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch={branch};rport",
            f"From: {from_};tag=caller1",
            to,
            f"Call-ID: {call_id}",
            "CSeq: 1 ACK",
            "Max-Forwards: 70",
            "Content-Length: 0",
        ]
        peer.send("\r\n".join(ack).encode() + b"\r\n\r\n", port)
    return status


async def _number(api: Api, e164: str, **fields: Any) -> dict[str, Any]:
    return await api.post("/v1/numbers", {"e164": e164, **fields})


def _flow(mailbox_id: str) -> dict[str, Any]:
    return {
        "name": "Straight",
        "nodes": [
            {"id": "start", "type": "entry", "data": {"kind": "entry", "trigger": "inbound"}},
            {
                "id": "vm",
                "type": "voicemail",
                "data": {"kind": "voicemail", "mailboxId": mailbox_id},
            },
        ],
        "edges": [{"id": "e1", "source": "start", "sourceHandle": "default", "target": "vm"}],
    }


async def test_refusals_are_sip_answers(backend: Backend) -> None:
    async with deposit_runtime(backend) as rt, api_of(rt) as api:
        box = await api.post("/v1/mailboxes", {"name": "Front desk"})
        await _number(
            api, "+12025550101", dest_kind="voicemail", dest_id=box["id"], status="disabled"
        )
        await _number(api, "+12025550102", dest_kind="hangup", allow_anonymous=False)
        await _number(api, "+12025550103", dest_kind="hangup")
        peer = await RawPeer.open()
        try:
            cases = [
                ("2025550101", KNOWN_CALLER, (), 404),
                ("2025550102", ANONYMOUS, (), 403),
                ("2025550102", KNOWN_CALLER, ("Privacy: id",), 403),
                ("2025550102", '"No Number" <sip:127.0.0.1>', (), 403),
                ("2025550102", KNOWN_CALLER, (), 603),
                ("2025550103", ANONYMOUS, (), 603),
                ("2025550199", KNOWN_CALLER, (), 404),
            ]
            for dialed, from_, extra, expected in cases:
                for attempt in ("look-up", "cache"):
                    got = await invite(peer, rt, dialed, from_, *extra)
                    assert got == expected, (dialed, from_, extra, attempt)
        finally:
            peer.close()
        await settle(rt)
        assert rt.telephony is not None and rt.telephony.stats.handler_errors == 0


async def _leave_message(sipp: str, cwd: Path, rt: Runtime) -> None:
    caller_pcap(cwd, silence(LEAD_MS), speech(1.5, seed=5))
    run = await sipp_calls(sipp, "deposit_uac.xml", cwd, sip_port(rt), hold_ms=LEAD_MS + 2000)
    assert run.returncode == 0, run.output


async def test_after_hours_and_holidays_reach_their_mailboxes(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    """The service runs on the real clock: the schedule is built around now (UTC): open on a
    weekday three days away only, so closed now; then a holiday over yesterday..tomorrow."""
    now = datetime.now(UTC)
    today_dow = (now.weekday() + 1) % 7
    open_day = {
        "kind": "weekly",
        "dow": (today_dow + 3) % 7,
        "start_time": "00:00",
        "end_time": "24:00",
    }
    holiday = {
        "kind": "date_range",
        "start_date": (now - timedelta(days=1)).date().isoformat(),
        "end_date": (now + timedelta(days=1)).date().isoformat(),
        "is_closed": True,
    }
    async with deposit_runtime(backend) as rt, api_of(rt) as api:
        boxes = {
            name: await api.post(
                "/v1/mailboxes", {"name": name, "min_message_seconds": 1, "skip_instructions": True}
            )
            for name in ("main", "closed", "holiday")
        }
        schedule = await api.post(
            "/v1/schedules", {"name": "Office", "timezone": "UTC", "rules": [open_day]}
        )
        await _number(
            api,
            NUMBER,
            dest_kind="voicemail",
            dest_id=boxes["main"]["id"],
            schedule_id=schedule["id"],
            closed_dest_kind="voicemail",
            closed_dest_id=boxes["closed"]["id"],
            holiday_dest_kind="voicemail",
            holiday_dest_id=boxes["holiday"]["id"],
        )

        await _leave_message(sipp_bin, tmp_path / "closed", rt)
        [after_hours] = await api.wait_messages(boxes["closed"]["id"], 1)
        assert after_hours["callee"] == NUMBER and after_hours["duration_ms"] >= 1000

        changed = await api.http.patch(
            f"/v1/schedules/{schedule['id']}",
            json={"rules": [open_day, holiday]},
            headers=api.headers,
        )
        assert changed.status_code == 200, changed.text
        await _leave_message(sipp_bin, tmp_path / "holiday", rt)
        [on_holiday] = await api.wait_messages(boxes["holiday"]["id"], 1)
        assert on_holiday["id"] != after_hours["id"]

        await settle(rt)
        assert await api.messages(boxes["main"]["id"]) == []
        assert len(await api.messages(boxes["closed"]["id"])) == 1
