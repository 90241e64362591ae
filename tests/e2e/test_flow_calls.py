"""Seed 003's way into a mailbox through a call flow, end to end over real SIP: a number leads
to a flow (entry → timeCondition → say → menu); SIPp callers press keys by RFC 4733 and their
messages land in the mailbox the menu chose: `1` → mailbox A; no key, twice → the `timeout`
edge → mailbox B; an invalid key twice → the `invalid` edge → mailbox C; an invalid key, then
`1` on the reprompt → mailbox A. The four callers call at once. Speech for the say node and the
menu's prompt text is made with espeak-ng when the flow is saved."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

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

sipp_bin = sip_rig.sipp_bin

pytestmark = [
    pytest.mark.timeout(150),
    pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True),
]

TIMEOUT_S = 2
INVALID_PROMPT_MS = 1933  # the English ivr-invalid prompt
MAILBOX_PROMPTS_MS = int((GREETING_S + BEEP_S) * 1000)
RECORD_MS = 3000  # what each caller says after the beep, at least


def menu_flow(schedule_id: str, boxes: dict[str, str]) -> dict[str, Any]:
    def node(node_id: str, kind: str, **data: Any) -> dict[str, Any]:
        return {"id": node_id, "type": kind, "data": {"kind": kind, **data}}

    def edge(source: str, handle: str, target: str) -> dict[str, str]:
        return {"id": f"{source}-{handle}", "source": source, "sourceHandle": handle, "target": target}

    return {
        "name": "Front desk menu",
        "nodes": [
            node("start", "entry", trigger="inbound"),
            node("hours", "timeCondition", scheduleId=schedule_id),
            node("welcome", "say", text="Welcome to Acme."),
            node(
                "menu",
                "menu",
                promptText="Press one for sales.",
                timeoutSec=TIMEOUT_S,
                maxTimeouts=2,
                maxFailures=2,
            ),
            node("sales", "voicemail", mailboxId=boxes["A"]),
            node("nobody", "voicemail", mailboxId=boxes["B"]),
            node("wrong", "voicemail", mailboxId=boxes["C"]),
            node("closed", "hangup"),
        ],
        "edges": [
            edge("start", "default", "hours"),
            edge("hours", "in_hours", "welcome"),
            edge("hours", "out_of_hours", "closed"),
            edge("welcome", "default", "menu"),
            edge("menu", "digit:1", "sales"),
            edge("menu", "timeout", "nobody"),
            edge("menu", "invalid", "wrong"),
        ],
    }


async def duration_ms(api: Api, media_id: str) -> int:
    response = await api.http.get(f"/v1/media/{media_id}", headers=api.headers)
    assert response.status_code == 200, response.text
    value: int = response.json()["duration_ms"]
    return value


async def test_a_menu_sends_callers_to_the_mailbox_of_their_key(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    always = [
        {"kind": "weekly", "dow": dow, "start_time": "00:00", "end_time": "24:00"}
        for dow in range(7)
    ]
    async with deposit_runtime(backend) as rt, api_of(rt) as api:
        boxes = {
            name: (
                await api.post(
                    "/v1/mailboxes",
                    {"name": name, "min_message_seconds": 1, "skip_instructions": True},
                )
            )["id"]
            for name in "ABC"
        }
        schedule = await api.post("/v1/schedules", {"name": "Always", "rules": always})
        flow = await api.post("/v1/flows", menu_flow(schedule["id"], boxes))
        await api.post("/v1/numbers", {"e164": NUMBER, "dest_kind": "flow", "dest_id": flow["id"]})
        welcome_ms = await duration_ms(api, flow["speech"]["welcome/text"])
        menu_ms = await duration_ms(api, flow["speech"]["menu/promptText"])
        barge_in = silence(welcome_ms + 300)  # the key comes while the menu prompt plays
        after_mailbox = MAILBOX_PROMPTS_MS + RECORD_MS + 1000
        key_ms = 200  # what `caller_pcap` sends for a key: 100 ms of tone, 100 ms of gap

        callers = {
            "one": (
                [barge_in, "1", speech(8, seed=1)],
                welcome_ms + 300 + key_ms + after_mailbox,
            ),
            "silent": (
                [speech(30, seed=2)],
                welcome_ms + 2 * (menu_ms + TIMEOUT_S * 1000) + after_mailbox + 1000,
            ),
            "wrong twice": (
                [barge_in, "9", silence(400), "9", speech(8, seed=3)],
                welcome_ms + 300 + 400 + 2 * key_ms + after_mailbox,
            ),
            "wrong then one": (
                [barge_in, "9", silence(INVALID_PROMPT_MS + 400), "1", speech(8, seed=4)],
                welcome_ms + 300 + INVALID_PROMPT_MS + 400 + 2 * key_ms + after_mailbox,
            ),
        }

        async def call(name: str, parts: list[Any], hold_ms: int) -> None:
            cwd = tmp_path / name.replace(" ", "-")
            caller_pcap(cwd, *parts)
            run = await sipp_calls(sipp_bin, "deposit_uac.xml", cwd, sip_port(rt), hold_ms=hold_ms)
            assert run.returncode == 0, run.output

        await asyncio.gather(*(call(name, *plan) for name, plan in callers.items()))
        await settle(rt)

        a, b, c = [await api.messages(boxes[name]) for name in "ABC"]
        assert (len(a), len(b), len(c)) == (2, 1, 1)
        for message in (*a, *b, *c):
            assert message["callee"] == NUMBER and message["duration_ms"] >= 1000
        assert rt.telephony is not None and rt.telephony.stats.handler_errors == 0
