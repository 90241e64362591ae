"""/telephony/v1 on both backends: the seed's sequence of operations replayed step by step with
each answer's exact shape, transcripts, omniFlow's order and idempotency, clearRouting,
requestCallback, and the same API in process (`LocalTelephonyApi`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from afterbeep.app import Runtime
from afterbeep.domain.ids import is_id, new_id
from afterbeep.services.contact_center import Channel, TelephonyApiError, WorkRequest
from afterbeep.services.telephony_api import LocalTelephonyApi
from tests.api.telephony_support import (
    API_NAME,
    DIALED,
    FakeWorkRouter,
    bearer,
    demo_connector_token,
    make_call_center,
    make_queue,
    new_key,
)
from tests.api.test_schedules import problem_of
from tests.conftest import TestAccount as Acct

AGENT = new_id("usr")


@dataclass
class Rig:
    router: FakeWorkRouter
    center: dict[str, Any]
    calls_q: str
    voicemail_q: str
    flow_q: str
    overflow_q: str


@pytest.fixture
async def rig(runtime: Runtime, client: httpx.AsyncClient, account: Acct) -> Rig:
    router = FakeWorkRouter()
    runtime.work_router = router
    calls_q = await make_queue(client, account, "Live calls")
    voicemail_q = await make_queue(client, account, "Voicemails")
    flow_q = await make_queue(client, account, "Flow queue")
    overflow_q = await make_queue(client, account, "Overflow")
    center = await make_call_center(
        client,
        account,
        routes=[
            {"dialed_number": DIALED, "call_queue_id": calls_q, "voicemail_queue_id": voicemail_q}
        ],
        flows=[
            {"dev_name": "VoicemailFlow", "voicemail_queue_id": flow_q, "call_queue_id": flow_q}
        ],
    )
    return Rig(router, center, calls_q, voicemail_q, flow_q, overflow_q)


def seed_body(key: str, start: str = "2022-08-02T17:32:28Z", **extra: Any) -> dict[str, Any]:
    """The seed's sample create body."""
    return {
        "callCenterApiName": API_NAME,
        "vendorCallKey": key,
        "to": "999999999",
        "from": "999999999",
        "initiationMethod": "Inbound",
        "startTime": start,
        "participants": [{"participantKey": "999999999", "type": "END_USER"}],
        **extra,
    }


def ms(iso_time: str) -> int:
    return int(datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp() * 1000)


def transcript(start_ms: int, *entries: tuple[str, int, int, str]) -> dict[str, Any]:
    return {
        "messages": [
            {
                "participantId": "999999999",
                "messageId": message_id,
                "startTime": start_ms + begin,
                "endTime": start_ms + end,
                "content": content,
                "senderType": "END_USER",
            }
            for message_id, begin, end, content in entries
        ]
    }


async def create(client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]) -> str:
    r = await client.post("/telephony/v1/voiceCalls", json=body, headers=headers)
    assert r.status_code == 201, r.text
    voice_call_id: str = r.json()["voiceCallId"]
    return voice_call_id


async def get(client: httpx.AsyncClient, headers: dict[str, str], key: str) -> dict[str, Any]:
    r = await client.get(f"/telephony/v1/voiceCalls/{key}", headers=headers)
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


async def test_the_seed_sequence_step_by_step(
    client: httpx.AsyncClient, account: Acct, rig: Rig
) -> None:
    auth = bearer(demo_connector_token())
    key = new_key()
    start = "2022-08-02T17:32:28Z"

    # The partner system creates the VoiceCall.
    created = await client.post(
        "/telephony/v1/voiceCalls", json=seed_body(key, start), headers=auth
    )
    assert created.status_code == 201, created.text
    vc = created.json()["voiceCallId"]
    assert created.json() == {"voiceCallId": vc, "errors": []} and is_id(vc, "vc")

    # The customer records a message: isActiveCall true keeps it open, callOrigin Voicemail.
    kept = await client.patch(
        f"/telephony/v1/voiceCalls/{key}",
        json={"isActiveCall": True, "callOrigin": "Voicemail"},
        headers=auth,
    )
    assert kept.status_code == 200, kept.text
    assert kept.json() == {"voiceCallId": vc, "isActiveCall": True, "duration": None, "errors": []}

    # The transcript.
    added = await client.post(
        f"/telephony/v1/voiceCalls/{key}/messages",
        json=transcript(
            ms(start), ("m1", 1000, 4000, "Hi, please call me back"), ("m2", 4000, 6000, "thanks")
        ),
        headers=auth,
    )
    assert added.status_code == 200, added.text
    assert added.json() == {"result": "Accepted"}

    # The omniFlow with the dialed number: the route's voicemail queue.
    routed = await client.patch(
        f"/telephony/v1/voiceCalls/{vc}/omniFlow", json={"dialedNumber": DIALED}, headers=auth
    )
    assert routed.status_code == 200, routed.text
    assert routed.json() == {"agent": None, "queue": rig.voicemail_q}
    assert rig.router.placed == [WorkRequest(account.id, vc, rig.voicemail_q, Channel.VOICEMAIL)]

    # The final update carries only the recording fields: the conversation is completed.
    before = datetime.now(UTC)
    final = await client.patch(
        f"/telephony/v1/voiceCalls/{key}",
        json={"recordingLocation": "https://example.com/rec/1.wav", "totalRecordingDuration": 42.5},
        headers=auth,
    )
    assert final.status_code == 200, final.text
    answer = final.json()
    assert set(answer) == {"voiceCallId", "isActiveCall", "duration", "errors"}
    assert answer["voiceCallId"] == vc and answer["isActiveCall"] is False
    assert answer["errors"] == []
    assert rig.router.changed == [(account.id, vc)]  # the recording reached the work item

    stored = await get(client, auth, vc)
    end = datetime.fromisoformat(stored["endTime"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= end <= datetime.now(UTC) + timedelta(seconds=1)
    assert stored["duration"] == answer["duration"]
    assert stored["duration"] == pytest.approx(
        (end - datetime.fromisoformat("2022-08-02T17:32:28+00:00")).total_seconds()
    )
    assert {
        k: stored[k]
        for k in (
            "isActiveCall",
            "callOrigin",
            "recordingLocation",
            "totalRecordingDuration",
            "routedQueueId",
            "vendorCallKey",
        )
    } == {
        "isActiveCall": False,
        "callOrigin": "Voicemail",
        "recordingLocation": "https://example.com/rec/1.wav",
        "totalRecordingDuration": 42.5,
        "routedQueueId": rig.voicemail_q,
        "vendorCallKey": key,
    }
    assert stored["workItemId"] == rig.router.items[vc].work_item_id
    assert [m["messageId"] for m in stored["messages"]] == ["m1", "m2"]
    assert stored["messages"][0] == {
        "participantId": "999999999",
        "messageId": "m1",
        "startTime": ms(start) + 1000,
        "endTime": ms(start) + 4000,
        "content": "Hi, please call me back",
        "senderType": "END_USER",
    }


async def test_the_sequence_with_call_origin_at_creation(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct, rig: Rig
) -> None:
    rig.router.agent_for_queue[rig.voicemail_q] = AGENT
    key = new_key()
    start_ms = ms("2026-01-05T10:00:00Z")
    vc = await create(
        client,
        account.headers,
        seed_body(key, start_ms, callOrigin="Voicemail"),  # type: ignore[arg-type]
    )
    r = await client.post(
        f"/telephony/v1/voiceCalls/{key}/messages",
        json=transcript(start_ms, ("a", 500, 2500, "hello")),
        headers=account.headers,
    )
    assert r.json() == {"result": "Accepted"}
    routed = await client.patch(
        f"/telephony/v1/voiceCalls/{key}/omniFlow",
        json={"dialedNumber": "(415) 555-0100"},  # the same number, written nationally
        headers=account.headers,
    )
    assert routed.json() == {"agent": AGENT, "queue": rig.voicemail_q}
    final = await client.patch(
        f"/telephony/v1/voiceCalls/{vc}",
        json={
            "isActiveCall": False,
            "endTime": start_ms + 61_500,
            "recordingLocation": "s3://bucket/key.wav",
            "totalRecordingDuration": 60,
        },
        headers=account.headers,
    )
    assert final.json() == {
        "voiceCallId": vc,
        "isActiveCall": False,
        "duration": 61.5,
        "errors": [],
    }

    summary = await runtime.voice_calls.summary(account.id, vc)
    assert summary is not None
    assert summary.call_origin == "Voicemail" and summary.total_recording_duration == 60
    assert summary.recording_location == "s3://bucket/key.wav"
    assert [(t.start_ms, t.end_ms, t.content) for t in summary.transcript] == [(500, 2500, "hello")]
    assert summary.call_center_id == rig.center["id"]
    assert await runtime.voice_calls.summary(account.id, new_id("vc")) is None


async def test_the_same_vendor_call_key_answers_the_existing_record(
    client: httpx.AsyncClient, account: Acct, other_account: Acct, rig: Rig
) -> None:
    key = new_key()
    first = await client.post(
        "/telephony/v1/voiceCalls", json=seed_body(key), headers=account.headers
    )
    again = await client.post(
        "/telephony/v1/voiceCalls", json=seed_body(key, to="123"), headers=account.headers
    )
    assert first.status_code == 201 and again.status_code == 200, again.text
    assert again.json() == first.json()
    assert (await get(client, account.headers, key))["to"] == "999999999"
    # another account sees none of it
    await make_call_center(client, other_account)
    theirs = await client.get(f"/telephony/v1/voiceCalls/{key}", headers=other_account.headers)
    problem_of(theirs, 404, "not-found")
    problem_of(
        await client.get(
            f"/telephony/v1/voiceCalls/{first.json()['voiceCallId']}", headers=other_account.headers
        ),
        404,
        "not-found",
    )
    for odd in ("a%00b", "x" * 300):
        problem_of(
            await client.get(f"/telephony/v1/voiceCalls/{odd}", headers=account.headers),
            404,
            "not-found",
        )
    other = await create(client, other_account.headers, seed_body(key))
    assert other != first.json()["voiceCallId"]


async def test_create_validation_names_the_field(
    client: httpx.AsyncClient, account: Acct, rig: Rig
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"vendorCallKey": None}, "vendorCallKey"),
        ({"to": ""}, "to"),
        ({"initiationMethod": "Sideways"}, "initiationMethod"),
        ({"startTime": "yesterday"}, "startTime"),
        ({"callOrigin": "Fax"}, "callOrigin"),
        ({"callAttributes": "{not json"}, "callAttributes"),
        ({"callAttributes": {"a": 1}}, "callAttributes"),
        ({"callCenterApiName": "Nope"}, "callCenterApiName"),
        ({"participants": [{"type": "END_USER"}]}, "participants[0].participantKey"),
        ({"endTime": "2022-08-02T17:00:00Z"}, "endTime"),
        ({"parentVoiceCallId": new_id("vc")}, "parentVoiceCallId"),
        ({"to": "12\x0034"}, "to"),
    ]
    for change, field in cases:
        r = await client.post(
            "/telephony/v1/voiceCalls", json=seed_body(new_key(), **change), headers=account.headers
        )
        body = problem_of(r, 422, "invalid-input")
        assert body["errors"][0]["field"] == field, (change, body)
    attributes = '{"caseNumber": "0001", "vip": true}'
    vc = await create(
        client,
        account.headers,
        seed_body(
            new_key(), callAttributes=attributes, initiationMethod="Transfer", queue="Voicemails"
        ),
    )
    stored = await get(client, account.headers, vc)
    assert stored["callAttributes"] == attributes and stored["initiationMethod"] == "Transfer"
    child = await create(client, account.headers, seed_body(new_key(), parentVoiceCallId=vc))
    assert (await get(client, account.headers, child))["parentVoiceCallId"] == vc


async def test_transcript_entries_single_and_bulk(
    client: httpx.AsyncClient, account: Acct, rig: Rig
) -> None:
    start = "2026-02-01T09:00:00Z"
    k1, k2 = new_key(), new_key()
    await create(client, account.headers, seed_body(k1, start))
    await create(client, account.headers, seed_body(k2, start))
    bulk = await client.post(
        "/telephony/v1/voiceCalls/messages",
        json={
            "entries": [
                {
                    "vendorCallKey": k1,
                    **transcript(ms(start), ("b", 3000, 4000, "second"), ("a", 0, 2000, "first")),
                },
                {"vendorCallKey": k2, **transcript(ms(start), ("a", 100, 200, "other call"))},
            ]
        },
        headers=account.headers,
    )
    assert bulk.status_code == 200, bulk.text
    assert bulk.json() == {"result": "Accepted"}
    assert [m["content"] for m in (await get(client, account.headers, k1))["messages"]] == [
        "first",
        "second",
    ]
    assert [m["content"] for m in (await get(client, account.headers, k2))["messages"]] == [
        "other call"
    ]

    # all or nothing: an unknown call fails the whole request
    failed = await client.post(
        "/telephony/v1/voiceCalls/messages",
        json={
            "entries": [
                {"vendorCallKey": k1, **transcript(ms(start), ("c", 5000, 6000, "third"))},
                {"vendorCallKey": "no-such-call", **transcript(ms(start), ("a", 0, 1, "x"))},
            ]
        },
        headers=account.headers,
    )
    problem_of(failed, 404, "not-found")
    assert len((await get(client, account.headers, k1))["messages"]) == 2

    # epoch seconds (the demo connector's transcripts) and ISO times are accepted too
    seconds = await client.post(
        f"/telephony/v1/voiceCalls/{k2}/messages",
        json={
            "messages": [
                {
                    "participantId": "p",
                    "messageId": "s",
                    "startTime": ms(start) // 1000 + 10,
                    "endTime": "2026-02-01T09:00:12Z",
                    "content": "in seconds",
                    "senderType": "VIRTUAL_AGENT",
                }
            ]
        },
        headers=account.headers,
    )
    assert seconds.json() == {"result": "Accepted"}
    last = (await get(client, account.headers, k2))["messages"][-1]
    assert (last["startTime"], last["endTime"], last["senderType"]) == (
        ms(start) + 10_000,
        ms(start) + 12_000,
        "VIRTUAL_AGENT",
    )


async def test_message_ids_are_unique_in_the_call(
    client: httpx.AsyncClient, account: Acct, rig: Rig
) -> None:
    start = "2026-02-01T09:00:00Z"
    key = new_key()
    await create(client, account.headers, seed_body(key, start))
    url = f"/telephony/v1/voiceCalls/{key}/messages"
    one = transcript(ms(start), ("m1", 0, 1000, "hello"))
    assert (await client.post(url, json=one, headers=account.headers)).json() == {
        "result": "Accepted"
    }
    # the same entry again (a retry) is accepted and kept once
    assert (await client.post(url, json=one, headers=account.headers)).json() == {
        "result": "Accepted"
    }
    assert len((await get(client, account.headers, key))["messages"]) == 1
    changed = transcript(ms(start), ("m1", 0, 1000, "something else"))
    problem_of(
        await client.post(url, json=changed, headers=account.headers), 409, "message-id-taken"
    )
    twice = transcript(ms(start), ("m2", 0, 1000, "a"), ("m2", 1000, 2000, "b"))
    body = problem_of(
        await client.post(url, json=twice, headers=account.headers), 422, "invalid-input"
    )
    assert body["errors"][0]["field"] == "messages[1].messageId"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"startTime": ms(start) - 60_000}, "messages[0].startTime"),  # before the call
        ({"senderType": "ROBOT"}, "messages[0].senderType"),
        ({"endTime": ms(start) - 1}, "messages[0].endTime"),
        ({"startTime": 42}, "messages[0].startTime"),
        ({"participantId": ""}, "messages[0].participantId"),
    ]
    for change, field in cases:
        entry = {**transcript(ms(start), ("x", 0, 10, "c"))["messages"][0], **change}
        r = await client.post(url, json={"messages": [entry]}, headers=account.headers)
        assert problem_of(r, 422, "invalid-input")["errors"][0]["field"] == field, change
    # after the call ended, entries after its end are refused
    await client.patch(
        f"/telephony/v1/voiceCalls/{key}",
        json={"endTime": ms(start) + 30_000},
        headers=account.headers,
    )
    late = transcript(ms(start), ("late", 60_000, 61_000, "x"))
    problem_of(await client.post(url, json=late, headers=account.headers), 422, "invalid-input")


async def test_omni_flow_order_and_idempotency(
    client: httpx.AsyncClient, account: Acct, rig: Rig
) -> None:
    h = account.headers

    async def route(body: dict[str, Any], origin: str | None = None) -> tuple[str, httpx.Response]:
        extra = {"callOrigin": origin} if origin else {}
        vc = await create(client, h, seed_body(new_key(), **extra))
        return vc, await client.patch(
            f"/telephony/v1/voiceCalls/{vc}/omniFlow", json=body, headers=h
        )

    # 1. the dialed number's route: live calls and voicemails branch on callOrigin
    live, r = await route({"dialedNumber": DIALED, "flowDevName": "VoicemailFlow"})
    assert r.json() == {"agent": None, "queue": rig.calls_q}
    _, r = await route({"dialedNumber": DIALED, "fallbackQueue": "Overflow"}, "Voicemail")
    assert r.json() == {"agent": None, "queue": rig.voicemail_q}
    # 2. the flow (flowDevName, or its synonym flowName) when the number has no route
    _, r = await route(
        {"dialedNumber": "+14155550999", "flowDevName": "VoicemailFlow"}, "Voicemail"
    )
    assert r.json() == {"agent": None, "queue": rig.flow_q}
    _, r = await route({"dialedNumber": "+14155550999", "flowName": "VoicemailFlow"})
    assert r.json() == {"agent": None, "queue": rig.flow_q}
    # 3. the fallback queue, by name or by id
    _, r = await route(
        {"dialedNumber": "+14155550999", "flowDevName": "Nope", "fallbackQueue": "Overflow"}
    )
    assert r.json() == {"agent": None, "queue": rig.overflow_q}
    _, r = await route({"fallbackQueue": rig.overflow_q})
    assert r.json() == {"agent": None, "queue": rig.overflow_q}
    # 4. else the seed's errors answer, one entry per way tried, and nothing is placed
    placed = len(rig.router.placed)
    failed_vc, r = await route(
        {"dialedNumber": "+14155550999", "flowDevName": "Nope", "fallbackQueue": "Nope"}
    )
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/json")
    errors = r.json()["errors"]
    assert list(r.json()) == ["errors"] and [e["code"] for e in errors] == [
        "NO_ROUTE",
        "NO_FLOW",
        "QUEUE_NOT_FOUND",
    ]
    assert "+14155550999" in errors[0]["message"]
    _, r = await route({})
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "NO_ROUTE"
    assert len(rig.router.placed) == placed
    # a route whose voicemail queue is missing: live calls only
    await client.patch(
        f"/v1/call-centers/{rig.center['id']}",
        json={"routes": [{"dialed_number": DIALED, "call_queue_id": rig.calls_q}]},
        headers=h,
    )
    _, r = await route({"dialedNumber": DIALED}, "Voicemail")
    assert r.status_code == 422 and "no voicemail queue" in r.json()["errors"][0]["message"]

    # idempotent: again, even with other parameters, the same queue and no second work item
    items = len(rig.router.items)
    again = await client.patch(
        f"/telephony/v1/voiceCalls/{live}/omniFlow",
        json={"dialedNumber": "+14155550999", "fallbackQueue": "Overflow"},
        headers=h,
    )
    assert again.json() == {"agent": None, "queue": rig.calls_q}
    assert len(rig.router.items) == items
    assert [p.queue_id for p in rig.router.placed if p.voice_call_id == live] == [rig.calls_q] * 2
    assert (await get(client, h, live))["workItemId"] == rig.router.items[live].work_item_id
    problem_of(
        await client.patch(
            f"/telephony/v1/voiceCalls/{failed_vc}/omniFlow",
            json={"flowInputParameters": "x"},
            headers=h,
        ),
        422,
        "invalid-input",
    )
    problem_of(
        await client.patch(f"/telephony/v1/voiceCalls/{new_id('vc')}/omniFlow", json={}, headers=h),
        404,
        "not-found",
    )


async def test_clear_routing(client: httpx.AsyncClient, account: Acct, rig: Rig) -> None:
    vc = await create(client, account.headers, seed_body(new_key()))
    await client.patch(
        f"/telephony/v1/voiceCalls/{vc}/omniFlow",
        json={"dialedNumber": DIALED},
        headers=account.headers,
    )
    cleared = await client.patch(
        f"/telephony/v1/voiceCalls/{vc}/clearRouting", headers=account.headers
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json() == {"voiceCallId": vc, "cleared": True, "errors": []}
    again = await client.patch(
        f"/telephony/v1/voiceCalls/{vc}/clearRouting", headers=account.headers
    )
    assert again.json() == {"voiceCallId": vc, "cleared": False, "errors": []}
    assert rig.router.cleared == [(account.id, vc, "clearRouting")] * 2


async def test_request_callback(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct, rig: Rig
) -> None:
    h = account.headers
    key = new_key()
    vc = await create(client, h, seed_body(key, callOrigin="Voicemail"))
    url = f"/telephony/v1/voiceCalls/{vc}/requestCallback"
    # no queue yet: refused with the reason
    body = problem_of(
        await client.post(url, json={"callbackNumber": "+14155550123"}, headers=h),
        422,
        "invalid-input",
    )
    assert "omniFlow" in body["detail"]
    await client.patch(
        f"/telephony/v1/voiceCalls/{vc}/omniFlow", json={"dialedNumber": DIALED}, headers=h
    )

    asked = await client.post(url, json={"callbackNumber": "(415) 555-0123"}, headers=h)
    assert asked.status_code == 200, asked.text
    record = asked.json()["recordId"]
    assert asked.json() == {"recordId": record} and is_id(record, "vc")
    callback = rig.router.placed[-1]
    assert callback == WorkRequest(account.id, record, rig.voicemail_q, Channel.CALLBACK)
    assert (await get(client, h, vc))["callbackNumber"] == "+14155550123"
    child = await get(client, h, record)
    assert (child["parentVoiceCallId"], child["initiationMethod"], child["from"]) == (
        vc,
        "Callback",
        "+14155550123",
    )
    summary = await runtime.voice_calls.summary(account.id, record)
    assert summary is not None and summary.callback_number == "+14155550123"
    # asked again: the same record, no second work item
    again = await client.post(url, json={"callbackNumber": "+14155550123"}, headers=h)
    assert again.json() == {"recordId": record}
    assert len(rig.router.items) == 2
    problem_of(
        await client.post(url, json={"callbackNumber": "12"}, headers=h),
        422,
        "invalid-phone-number",
    )
    # a call whose partner named its queue (by name) needs no omniFlow first
    named = await create(client, h, seed_body(new_key(), queue="Overflow"))
    r = await client.post(
        f"/telephony/v1/voiceCalls/{named}/requestCallback",
        json={"callbackNumber": "+14155550124"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert rig.router.placed[-1].queue_id == rig.overflow_q


async def test_without_a_work_router_routing_is_unavailable(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct, rig: Rig
) -> None:
    runtime.work_router = None
    vc = await create(client, account.headers, seed_body(new_key()))
    for method, path, body in (
        ("PATCH", "omniFlow", {"dialedNumber": DIALED}),
        ("PATCH", "clearRouting", None),
        ("POST", "requestCallback", {"callbackNumber": "+14155550123"}),
    ):
        r = await client.request(
            method, f"/telephony/v1/voiceCalls/{vc}/{path}", json=body, headers=account.headers
        )
        problem = problem_of(r, 503, "routing-unavailable")
        assert problem["title"] == "Routing unavailable"
    # an unknown call is a 404 still (the service checks the call first)
    r = await client.patch(
        f"/telephony/v1/voiceCalls/{new_id('vc')}/omniFlow", json={}, headers=account.headers
    )
    problem_of(r, 404, "not-found")
    # the rest of the API works
    r = await client.patch(
        f"/telephony/v1/voiceCalls/{vc}", json={"isActiveCall": True}, headers=account.headers
    )
    assert r.status_code == 200


async def test_local_telephony_api_runs_the_seed_steps_in_process(
    runtime: Runtime, account: Acct, rig: Rig
) -> None:
    api = runtime.local_telephony_api(account.id, rig.center["id"])
    assert isinstance(api, LocalTelephonyApi)
    key = new_key()
    start_ms = ms("2026-03-01T12:00:00Z")
    created = await api.create_voice_call(seed_body(key, start_ms, callOrigin="Voicemail"))  # type: ignore[arg-type]
    vc = created["voiceCallId"]
    assert created == {"voiceCallId": vc, "errors": []}
    assert (await api.create_voice_call(seed_body(key, start_ms))) == created  # type: ignore[arg-type]
    kept = await api.update_voice_call(vc, {"isActiveCall": True, "callOrigin": "Voicemail"})
    assert kept == {"voiceCallId": vc, "isActiveCall": True, "duration": None, "errors": []}
    assert await api.add_messages(key, transcript(start_ms, ("m", 0, 900, "hi"))) == {
        "result": "Accepted"
    }
    assert await api.route(vc, {"dialedNumber": DIALED}) == {
        "agent": None,
        "queue": rig.voicemail_q,
    }
    closed = await api.update_voice_call(
        key,
        {
            "recordingLocation": "file:///r.wav",
            "totalRecordingDuration": 3.0,
            "endTime": start_ms + 4000,
        },
    )
    assert closed == {"voiceCallId": vc, "isActiveCall": False, "duration": 4.0, "errors": []}

    with pytest.raises(TelephonyApiError) as missing:
        await api.update_voice_call("no-such-key", {})
    assert (missing.value.status, missing.value.problem["error_id"], missing.value.retryable) == (
        404,
        "not-found",
        False,
    )
    other = await api.create_voice_call(seed_body(new_key()))
    with pytest.raises(TelephonyApiError) as no_route:
        await api.route(other["voiceCallId"], {"dialedNumber": "+14155550999"})
    assert (
        no_route.value.status == 422 and no_route.value.problem["errors"][0]["code"] == "NO_ROUTE"
    )
    with pytest.raises(TelephonyApiError) as invalid:
        await api.create_voice_call({**seed_body(new_key()), "callCenterApiName": "Other"})
    assert (
        invalid.value.status == 422
        and invalid.value.problem["errors"][0]["field"] == "callCenterApiName"
    )
    runtime.work_router = None
    with pytest.raises(TelephonyApiError) as unavailable:
        await api.route(other["voiceCallId"], {"dialedNumber": DIALED})
    assert (unavailable.value.status, unavailable.value.retryable) == (503, True)


async def test_bodies_are_held_to_the_json_limit(
    client: httpx.AsyncClient, account: Acct, rig: Rig
) -> None:
    big = seed_body(new_key(), callAttributes='{"x": "' + "a" * 300_000 + '"}')
    r = await client.post("/telephony/v1/voiceCalls", json=big, headers=account.headers)
    problem_of(r, 413, "payload-too-large")
    # the bulk transcript form takes more
    key = new_key()
    start = "2026-02-01T09:00:00Z"
    await create(client, account.headers, seed_body(key, start))
    lines = [(f"m{n}", n * 1000, n * 1000 + 900, "word " * 6000) for n in range(10)]
    entries = [{"vendorCallKey": key, **transcript(ms(start), *lines)}]  # 300 KB
    r = await client.post(
        "/telephony/v1/voiceCalls/messages", json={"entries": entries}, headers=account.headers
    )
    assert r.status_code == 200, r.text


async def test_an_update_read_before_routing_does_not_undo_it(
    client: httpx.AsyncClient, runtime: Runtime, account: Acct, rig: Rig
) -> None:
    vc = await create(client, account.headers, seed_body(new_key()))
    async with runtime.uow() as uow:
        stale = await uow.voice_calls.get(account.id, vc)
    assert stale is not None and stale.routed_queue_id is None
    r = await client.patch(
        f"/telephony/v1/voiceCalls/{vc}/omniFlow",
        json={"dialedNumber": DIALED},
        headers=account.headers,
    )
    assert r.status_code == 200, r.text
    async with runtime.uow() as uow:
        await uow.voice_calls.update(replace(stale, agent="late writer"))
    stored = await get(client, account.headers, vc)
    assert stored["agent"] == "late writer"
    assert stored["routedQueueId"] == rig.calls_q
    assert stored["workItemId"] == rig.router.items[vc].work_item_id
