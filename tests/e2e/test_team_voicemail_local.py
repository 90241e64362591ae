"""A voicemail left for a team becomes a voice call and a work item by itself, against
afterbeep's own Telephony API: one runtime for the module (SIP, the post-call work inline, the
real speech model, the real work router), its HTTP API served on 127.0.0.1.

- in process: a SIPp caller overflows an unstaffed queue into the queue's mailbox and speaks;
  with no API call a voice call exists with its recording, its transcript and a work item in the
  queue the call center routes the dialed number's voicemails to;
- over HTTP, with real JWTs: the same service as an outside contact center for itself (a
  connector whose public key is registered on a second call center), behind a proxy answering
  500 twice and 429 once: every step reaches it exactly once, one voice call, one work item.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from afterbeep.app import Runtime
from tests.api.test_work_items import AgentClient
from tests.conftest import ADMIN_KEY, Backend
from tests.e2e.rig import (
    NUMBER,
    Api,
    api_of,
    caller_pcap,
    deposit_runtime,
    silence,
    sip_port,
    sipp_calls,
)
from tests.e2e.test_team_voicemail import delivered
from tests.e2e.test_transcripts import LEAD_MS, SENTENCE, spoken
from tests.fixtures.http_peers import FaultProxy, served
from tests.sip import conftest as sip_rig

sipp_bin = sip_rig.sipp_bin

pytestmark = [pytest.mark.timeout(300), pytest.mark.asyncio(loop_scope="module")]

CALLER = "+12025550123"  # the From of deposit_uac.xml
ORG = "00Dxx0000001gPL"


@dataclass
class World:
    rt: Runtime
    api: Api
    url: str  # the runtime's HTTP API on 127.0.0.1
    queue_id: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    backend = Backend(
        "sqlite-local",
        {
            "data_dir": tmp_path_factory.mktemp("team-local") / "var",
            "secret_key": "test-secret-" + "x" * 32,
            "allow_private_networks": "127.0.0.0/8",
            "admin_key": ADMIN_KEY,
            "transcribe": True,
        },
    )
    settings = {"cc_idle_seconds": 1, "cc_retry_base_seconds": 1, "cc_transcript_wait_seconds": 150}
    async with (
        deposit_runtime(backend, **settings) as rt,
        api_of(rt) as api,
        served(rt.app) as url,
    ):
        queue = await api.post("/v1/queues", {"name": "Support"})
        await api.post("/v1/numbers", {"e164": NUMBER, "dest_kind": "queue", "dest_id": queue["id"]})
        yield World(rt, api, url, queue["id"])


async def overflow_to(world: World, box_id: str) -> None:
    """Callers nobody answers in the queue leave their message in `box_id`."""
    response = await world.api.http.patch(
        f"/v1/queues/{world.queue_id}",
        json={"no_agents_dest_kind": "voicemail", "no_agents_dest_id": box_id},
        headers=world.api.headers,
    )
    assert response.status_code == 200, response.text


async def team_mailbox(world: World, **fields: Any) -> str:
    box = await world.api.post(
        "/v1/mailboxes",
        {
            "name": "Support voicemail",
            "queue_id": world.queue_id,
            "skip_instructions": True,
            "min_message_seconds": 1,
            **fields,
        },
    )
    return str(box["id"])


async def call_the_team(sipp: str, world: World, directory: Path) -> None:
    words = spoken(SENTENCE)
    caller_pcap(directory, silence(LEAD_MS), words)
    run = await sipp_calls(
        sipp, "deposit_uac.xml", directory, sip_port(world.rt), hold_ms=LEAD_MS + len(words) // 8 + 500
    )
    assert run.returncode == 0, run.output


async def work_items(api: Api, voice_call_id: str) -> list[dict[str, Any]]:
    response = await api.http.get("/v1/work-items", params={"limit": 200}, headers=api.headers)
    assert response.status_code == 200, response.text
    return [w for w in response.json()["items"] if w["voice_call_id"] == voice_call_id]


async def voice_call(api: Api, voice_call_id: str) -> dict[str, Any]:
    response = await api.http.get(f"/telephony/v1/voiceCalls/{voice_call_id}", headers=api.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def check_voice_call(call: dict[str, Any], message: dict[str, Any], queue_id: str) -> None:
    assert call["callOrigin"] == "Voicemail" and call["initiationMethod"] == "Inbound"
    assert (call["to"], call["from"]) == (NUMBER, CALLER)
    assert call["isActiveCall"] is False
    assert call["recordingLocation"].endswith(f"/v1/messages/{message['id']}/audio")
    assert call["totalRecordingDuration"] == message["duration_ms"] / 1000
    said = " ".join(m["content"] for m in call["messages"]).lower()
    assert "tomorrow morning" in said, call["messages"]
    assert all(m["senderType"] == "END_USER" for m in call["messages"])
    assert call["routedQueueId"] == queue_id and call["workItemId"]


async def test_a_voicemail_for_the_team_becomes_a_voice_call_and_a_work_item_by_itself(
    world: World, sipp_bin: str, tmp_path: Path
) -> None:
    api = world.api
    center = await api.post(
        "/v1/call-centers",
        {
            "call_center_api_name": "Support",
            "org_id": ORG,
            "public_key_pem": (await api.post("/v1/connectors", {
                "name": "key holder", "base_url": "http://127.0.0.1:9/telephony/v1",
                "call_center_api_name": "Unused", "org_id": ORG,
            }))["public_key_pem"],
            "routes": [{"dialed_number": NUMBER, "voicemail_queue_id": world.queue_id}],
        },
    )  # fmt: skip
    box_id = await team_mailbox(world, call_center_id=center["id"])
    await overflow_to(world, box_id)
    await call_the_team(sipp_bin, world, tmp_path / "sipp")

    delivery = await delivered(api, box_id)
    assert delivery["status"] == "done", delivery
    [message] = await api.messages(box_id)
    assert message["transcription_status"] == "done"
    call = await voice_call(api, delivery["voice_call_id"])
    assert call["callCenterId"] == center["id"]
    assert call["vendorCallKey"] == delivery["vendor_call_key"]
    check_voice_call(call, message, world.queue_id)
    # a work item waits in the queue (nobody is available), a voicemail's
    [item] = await work_items(api, call["voiceCallId"])
    assert (item["id"], item["queue_id"]) == (call["workItemId"], world.queue_id)
    assert item["channel"] == "voicemail" and item["state"] == "pending"
    assert [(x["step"], x["status"]) for x in delivery["exchanges"]] == [
        ("create", 200), ("activate", 200), ("transcript", 200), ("route", 200), ("close", 200),
    ]  # fmt: skip

    # a representative joins the team: offered the voicemail on the event stream, accepts it,
    # hears who called and what they said, completes it
    rep = await api.post("/v1/users", {"username": "401", "is_agent": True})
    members = {"members": [{"user_id": rep["id"]}]}
    joined = await api.http.patch(f"/v1/queues/{world.queue_id}", json=members, headers=api.headers)
    assert joined.status_code == 200, joined.text
    async with httpx.AsyncClient(base_url=world.url, timeout=30) as http:
        token = await api.post(f"/v1/agents/{rep['id']}/tokens", {"name": "desk"})
        agent = AgentClient(http, token["token"])
        await agent.listen()
        ready = await agent.call("PATCH", "/v1/agents/me", json={"status": "available"})
        assert ready.status_code == 200, ready.text
        offered = await agent.next("work_item.offered")
        assert offered["id"] == item["id"] and offered["state"] == "reserved"
        assert offered["voice_call"]["from_number"] == CALLER
        said = " ".join(line["content"] for line in offered["voice_call"]["transcript"])
        assert "tomorrow morning" in said.lower()
        assert f"/messages/{message['id']}/audio" in offered["voice_call"]["recording_url"]
        offer_id = offered["offer"]["id"]
        accepted = await agent.call("POST", f"/v1/agents/me/offers/{offer_id}/accept")
        assert accepted.status_code == 200 and accepted.json()["state"] == "assigned"
        assert (await agent.next("work_item.accepted"))["state"] == "assigned"
        done = await agent.call(
            "POST", f"/v1/agents/me/work-items/{item['id']}/complete", json={"notes": "called"}
        )
        assert done.status_code == 200 and done.json()["state"] == "completed"
        assert (await agent.next("work_item.completed"))["notes"] == "called"
        await agent.close()
    [finished] = await work_items(api, call["voiceCallId"])
    assert finished["state"] == "completed" and finished["agent_id"] == rep["id"]


async def test_the_connector_reaches_afterbeeps_own_api_over_http_once_despite_500s_and_429(
    world: World, sipp_bin: str, tmp_path: Path
) -> None:
    api = world.api
    connector = await api.post(
        "/v1/connectors",
        {
            "name": "Ourselves, from outside",
            "base_url": "http://127.0.0.1:9/telephony/v1",
            "call_center_api_name": "Outside",
            "org_id": ORG,
            "provider_name": "afterbeep-e2e",
        },
    )
    center = await api.post(
        "/v1/call-centers",
        {
            "call_center_api_name": "Outside",
            "org_id": ORG,
            "public_key_pem": connector["public_key_pem"],
            "routes": [{"dialed_number": NUMBER, "voicemail_queue_id": world.queue_id}],
        },
    )
    injected: list[str] = []

    def inject(method: str, path: str, seen: int) -> tuple[int, dict[str, str]] | None:
        if path.endswith("/voiceCalls") and injected.count("create") < 2:
            injected.append("create")
            return 500, {}
        if path.endswith("/omniFlow") and "route" not in injected:
            injected.append("route")
            return 429, {"Retry-After": "1"}
        return None

    async with FaultProxy(world.url, inject) as proxy:
        moved = await api.http.patch(
            f"/v1/connectors/{connector['id']}",
            json={"base_url": proxy.url + "/telephony/v1"},
            headers=api.headers,
        )
        assert moved.status_code == 200, moved.text
        box_id = await team_mailbox(world, connector_id=connector["id"])
        await overflow_to(world, box_id)
        await call_the_team(sipp_bin, world, tmp_path / "sipp")
        delivery = await delivered(api, box_id)

    assert delivery["status"] == "done", delivery
    [message] = await api.messages(box_id)
    call = await voice_call(api, delivery["voice_call_id"])
    assert call["callCenterId"] == center["id"]
    check_voice_call(call, message, world.queue_id)
    # every step reached the far end once; the injected answers came in between
    forwarded = [(p.method, p.path.split("/")[-1], p.status) for p in proxy.seen if not p.injected]
    key, vc = delivery["vendor_call_key"], delivery["voice_call_id"]
    assert forwarded == [
        ("POST", "voiceCalls", 201), ("PATCH", key, 200), ("POST", "messages", 200),
        ("PATCH", "omniFlow", 200), ("PATCH", key, 200),
    ]  # fmt: skip
    assert [(p.method, p.status) for p in proxy.seen if p.injected] == [
        ("POST", 500), ("POST", 500), ("PATCH", 429),
    ]  # fmt: skip
    assert all(p.headers["authorization"].startswith("Bearer ey") for p in proxy.seen)
    assert {p.headers.get("telephony-provider-name") for p in proxy.seen} == {"afterbeep-e2e"}
    [item] = await work_items(api, vc)
    assert item["id"] == call["workItemId"] and item["channel"] == "voicemail"
    assert [(x["step"], x["status"]) for x in delivery["exchanges"]] == [
        ("create", 500), ("create", 500), ("create", 201), ("activate", 200),
        ("transcript", 200), ("route", 429), ("route", 200), ("close", 200),
    ]  # fmt: skip
