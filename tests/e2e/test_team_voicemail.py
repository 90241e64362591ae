"""A voicemail left for a team, end to end against the real `afterbeep serve` (one per module):
a SIPp caller dials a number that leads to a queue nobody staffs, overflows to the queue's
mailbox and speaks (espeak-ng); the post-call process stores and transcribes the message (the
real speech model), and with no API call the service runs the seed 002 sequence for it.

- to an outside contact center (a connector): the far end is a Telephony API served by the
  test on 127.0.0.1 that checks every request's RS256 JWT against the connector's public key,
  behind a proxy answering 500 twice and 429 once: every step reaches it exactly once, and
  every request and answer is on the delivery.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.connectors.test_http_connector import API_NAME, ORG, TokenCheckingFarEnd
from tests.e2e.rig import NUMBER, Api, caller_pcap, rtp_range, silence, sipp_calls
from tests.e2e.test_transcripts import LEAD_MS, SENTENCE, spoken
from tests.fixtures.http_peers import FaultProxy, served
from tests.fixtures.service import Service, running_service
from tests.sip import conftest as sip_rig

sipp_bin = sip_rig.sipp_bin

pytestmark = pytest.mark.timeout(300)

CALLER = "+12025550123"  # the From of deposit_uac.xml
WAIT = 180.0  # bound on background work (a model load on a busy machine); not a speed check


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    low, high = rtp_range()
    env = {
        "AFTERBEEP_RTP_PORT_MIN": str(low),
        "AFTERBEEP_RTP_PORT_MAX": str(high),
        "AFTERBEEP_SECRET_KEY": "team-voicemail-" + "t" * 40,
        "AFTERBEEP_TRANSCRIBE": "on",
        "AFTERBEEP_CC_IDLE_SECONDS": "1",  # messages stored by the post-call process, found soon
        "AFTERBEEP_CC_TRANSCRIPT_WAIT_SECONDS": "150",
        "AFTERBEEP_CC_RETRY_BASE_SECONDS": "1",
    }
    with running_service(tmp_path_factory.mktemp("team") / "var", env) as found:
        yield found


def new_api(service: Service, http: httpx.AsyncClient) -> Api:
    created = json.loads(service.cli("account", "create", "Acme", "--json").stdout)
    return Api(http, {"Authorization": f"Bearer {created['api_key']}"}, created["account_id"])


async def call_the_team(sipp: str, service: Service, directory: Path) -> None:
    words = spoken(SENTENCE)
    caller_pcap(directory, silence(LEAD_MS), words)
    port = int(service.env["AFTERBEEP_SIP_ADDR"].rsplit(":", 1)[1])
    run = await sipp_calls(
        sipp, "deposit_uac.xml", directory, port, hold_ms=LEAD_MS + len(words) // 8 + 500
    )
    assert run.returncode == 0, run.output


async def team(api: Api, **mailbox: Any) -> tuple[str, str]:
    """A queue with no agent, its number, and its mailbox (where callers overflow)."""
    queue = await api.post("/v1/queues", {"name": "Support"})
    box = await api.post(
        "/v1/mailboxes",
        {
            "name": "Support voicemail",
            "queue_id": queue["id"],
            "skip_instructions": True,
            "min_message_seconds": 1,
            **mailbox,
        },
    )
    response = await api.http.patch(
        f"/v1/queues/{queue['id']}",
        json={"no_agents_dest_kind": "voicemail", "no_agents_dest_id": box["id"]},
        headers=api.headers,
    )
    assert response.status_code == 200, response.text
    await api.post("/v1/numbers", {"e164": NUMBER, "dest_kind": "queue", "dest_id": queue["id"]})
    return queue["id"], box["id"]


async def delivered(api: Api, box_id: str) -> dict[str, Any]:
    """The delivery of the mailbox's message once it is over (done or failed), with exchanges."""
    async with asyncio.timeout(WAIT):
        while True:
            [message] = await api.wait_messages(box_id, 1)
            response = await api.http.get(
                "/v1/cc-deliveries", params={"message_id": message["id"]}, headers=api.headers
            )
            assert response.status_code == 200, response.text
            items = response.json()["items"]
            if items and items[0]["status"] != "pending":
                one = await api.http.get(f"/v1/cc-deliveries/{items[0]['id']}", headers=api.headers)
                found: dict[str, Any] = one.json()
                return found
            await asyncio.sleep(0.5)


async def test_a_voicemail_for_the_team_reaches_an_outside_contact_center_once_despite_500s_and_429(
    sipp_bin: str, service: Service, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
        api = new_api(service, http)
        connector = await api.post(
            "/v1/connectors",
            {
                "name": "Outside",
                "base_url": "http://127.0.0.1:9/telephony/v1",  # set once the far end is up
                "call_center_api_name": API_NAME,
                "org_id": ORG,
                "provider_name": "afterbeep-e2e",
            },
        )
        far = TokenCheckingFarEnd(connector["public_key_pem"])
        injected: list[str] = []

        def inject(method: str, path: str, seen: int) -> tuple[int, dict[str, str]] | None:
            if path.endswith("/voiceCalls") and injected.count("create") < 2:
                injected.append("create")
                return 500, {}
            if path.endswith("/omniFlow") and "route" not in injected:
                injected.append("route")
                return 429, {"Retry-After": "1"}
            return None

        async with served(far.app()) as upstream, FaultProxy(upstream, inject) as proxy:
            moved = await api.http.patch(
                f"/v1/connectors/{connector['id']}",
                json={"base_url": proxy.url + "/telephony/v1"},
                headers=api.headers,
            )
            assert moved.status_code == 200, moved.text
            queue_id, box_id = await team(api, connector_id=connector["id"])
            await call_the_team(sipp_bin, service, tmp_path / "sipp")
            delivery = await delivered(api, box_id)
            [message] = await api.messages(box_id)

        assert delivery["status"] == "done", delivery
        assert delivery["steps_done"] == ["create", "activate", "transcript", "route", "close"]
        # each step reached the far end exactly once, in the seed's order
        assert [op for op, _, _ in far.done] == ["create", "update", "messages", "route", "update"]
        assert [(p.method, p.status) for p in proxy.seen if p.injected] == [
            ("POST", 500), ("POST", 500), ("PATCH", 429),
        ]  # fmt: skip
        _, _, create = far.done[0]
        assert create["callOrigin"] == "Voicemail" and create["to"] == NUMBER
        assert create["from"] == CALLER and create["vendorCallKey"] == delivery["vendor_call_key"]
        _, _, transcript = far.done[2]
        said = " ".join(entry["content"] for entry in transcript["messages"]).lower()
        assert "tomorrow morning" in said, said
        assert message["transcription_status"] == "done"
        _, _, route = far.done[3]
        assert route == {"dialedNumber": NUMBER, "fallbackQueue": queue_id}
        _, _, close = far.done[4]
        assert close["isActiveCall"] is False
        assert close["recordingLocation"].endswith(f"/v1/messages/{message['id']}/audio")
        assert close["totalRecordingDuration"] == message["duration_ms"] / 1000
        assert len({claims["jti"] for claims in far.claims}) == 5
        # every request and answer is on the delivery
        assert [(x["step"], x["status"]) for x in delivery["exchanges"]] == [
            ("create", 500), ("create", 500), ("create", 200), ("activate", 200),
            ("transcript", 200), ("route", 429), ("route", 200), ("close", 200),
        ]  # fmt: skip
