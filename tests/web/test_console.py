"""The representatives' console and the admin pages of users, devices and queues, in a real
browser against `afterbeep serve`: an agent sets itself available, a work item routed through
the API is offered without a reload (with its countdown), accepted, its transcript arrives
without a reload, its voicemail plays, wrap-up notes and complete; the completed list shows it.
A member linked to a user sees that user's mailbox (and no other); an agent sees no mailbox;
another account gets 404; a form without its CSRF token 403. The users page shows a SIPp phone
registered; the queues page the stats `GET /v1/queues/{id}/stats` gives. Screenshots of the
console at desktop and phone width."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.api.telephony_support import API_NAME, ORG_ID, public_pem
from tests.e2e.rig import NUMBER, rtp_range
from tests.fixtures.service import Service, running_service
from tests.fixtures.smtp import SmtpServer
from tests.sip.conftest import SCENARIOS, free_udp_port
from tests.web.conftest import (
    DESKTOP,
    WAIT_MS,
    Tenant,
    labelled_controls_missing,
    leave_message,
    new_tenants,
    shoot,
    sign_in,
    wait_until,
)

pytestmark = pytest.mark.timeout(240)

CALLER = "+12025550123"  # the From of deposit_uac.xml
DEVICE_PASSWORD = "a device password 123"
NOTES = "Called back, booked for Tuesday."
CALL_START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer) -> Iterator[Service]:
    """As the other modules' (conftest.py), offering MD5 digests only: SIPp registers a phone
    and knows only MD5."""
    low, high = rtp_range()
    env = {
        "AFTERBEEP_SMTP_URL": smtp.url(),
        "AFTERBEEP_SMTP_FROM": "voicemail@afterbeep.test",
        "AFTERBEEP_RTP_PORT_MIN": str(low),
        "AFTERBEEP_RTP_PORT_MAX": str(high),
        "AFTERBEEP_SIP_DIGEST_ALGORITHMS": "MD5",
    }
    with running_service(tmp_path_factory.mktemp("console") / "var", env) as svc:
        yield svc


@dataclass
class World:
    service: Service
    a: Tenant
    b: Tenant
    agent_user: str
    ann_user: str
    queue: str
    ann_box: str
    front_desk: str
    device: str
    b_agent_user: str
    agent_email: str = "rita@support.example"
    ann_email: str = "ann@support.example"
    admin_email: str = "boss@support.example"
    b_email: str = "agent@other.example"


@dataclass
class Shared:
    """What one test leaves to the next (the module's tests run in order)."""

    message: dict[str, Any]
    item: dict[str, Any]


@pytest.fixture(scope="module")
def shared() -> Shared:
    return Shared({}, {})


@pytest.fixture(scope="module")
def world(service: Service) -> World:
    a, b = new_tenants(service, "Support Co", "Other Co")
    front_desk = a.call("POST", "/v1/mailboxes", 201, {"name": "Front desk"})["id"]
    ann_box = a.call(
        "POST", "/v1/mailboxes", 201,
        {"name": "Ann's line", "skip_instructions": True, "min_message_seconds": 1},
    )["id"]  # fmt: skip
    a.call("POST", "/v1/numbers", 201, {"e164": NUMBER, "dest_kind": "voicemail", "dest_id": ann_box})
    agent = a.call("POST", "/v1/users", 201, {"username": "301", "display_name": "Rita", "is_agent": True})
    ann = a.call("POST", "/v1/users", 201, {"username": "302", "display_name": "Ann", "voicemail_id": ann_box})
    device = a.call(
        "POST", "/v1/devices", 201,
        {"user_id": agent["id"], "auth_username": "rita-desk", "password": DEVICE_PASSWORD},
    )["id"]  # fmt: skip
    queue = a.call(
        "POST", "/v1/queues", 201, {"name": "Support", "members": [{"user_id": agent["id"]}]}
    )["id"]
    a.call(
        "POST", "/v1/call-centers", 201,
        {
            "call_center_api_name": API_NAME, "org_id": ORG_ID, "public_key_pem": public_pem(),
            "routes": [{"dialed_number": NUMBER, "voicemail_queue_id": queue}],
        },
    )  # fmt: skip
    a.member(World.agent_email, "agent", user_id=agent["id"])
    a.member(World.ann_email, "member", user_id=ann["id"])
    a.member(World.admin_email, "admin")
    b_agent = b.call("POST", "/v1/users", 201, {"username": "301", "is_agent": True})
    b.member(World.b_email, "agent", user_id=b_agent["id"])
    return World(
        service, a, b, agent["id"], ann["id"], queue, ann_box, front_desk, device, b_agent["id"]
    )


def route_a_voicemail(world: World, message: dict[str, Any]) -> tuple[str, str]:
    """A voice call for the message (as the Telephony API gets one) routed into the queue:
    (its vendor call key, its work item)."""
    key = str(uuid.uuid4())
    call = world.a.call(
        "POST", "/telephony/v1/voiceCalls", 201,
        {
            "callCenterApiName": API_NAME, "vendorCallKey": key, "to": NUMBER, "from": CALLER,
            "initiationMethod": "Inbound", "callOrigin": "Voicemail",
            "startTime": CALL_START.isoformat(),
            "participants": [{"participantKey": CALLER, "type": "END_USER"}],
        },
    )  # fmt: skip
    world.a.call(
        "PATCH", f"/telephony/v1/voiceCalls/{call['voiceCallId']}", 200,
        {
            "isActiveCall": False, "endTime": (CALL_START + timedelta(seconds=30)).isoformat(),
            "recordingLocation": f"/v1/messages/{message['id']}/audio",
            "totalRecordingDuration": message["duration_ms"] / 1000,
        },
    )  # fmt: skip
    # Routed as a contact center does (omniFlow): the voice call then knows its queue, and
    # its later transcript reaches the agent.
    routed = world.a.call(
        "PATCH", f"/telephony/v1/voiceCalls/{call['voiceCallId']}/omniFlow", 200, {"dialedNumber": NUMBER}
    )
    assert routed == {"agent": world.agent_user, "queue": world.queue}, routed
    stored = world.a.call("GET", f"/telephony/v1/voiceCalls/{call['voiceCallId']}", 200)
    return key, stored["workItemId"]


def test_a_member_linked_to_a_user_sees_that_users_mailbox_only(
    browser: Browser, world: World, shared: Shared, tmp_path: Path
) -> None:
    leave_message(world.service, tmp_path)
    path = f"/v1/mailboxes/{world.ann_box}/messages"
    wait_until(lambda: bool(world.a.call("GET", path, 200)["items"]), "the message to be stored")
    [message] = world.a.call("GET", path, 200)["items"]
    shared.message = message
    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, world.service.url, world.ann_email)
    assert page.url.endswith(f"/inbox/{world.ann_box}")
    boxes = page.locator("nav.mailboxes a")
    assert boxes.count() == 1 and "Ann's line" in boxes.inner_text()
    expect(page.locator(f"#row-{message['id']}")).to_be_visible()
    assert page.goto(f"{world.service.url}/messages/{message['id']}").status == 200
    assert page.goto(f"{world.service.url}/inbox/{world.front_desk}").status == 404
    assert page.goto(f"{world.service.url}/console").status == 403  # a member, not an agent
    # Unlinked, the user's mailbox is no longer hers.
    [ann] = [m for m in world.a.call("GET", "/v1/members", 200)["items"] if m["email"] == world.ann_email]
    world.a.call("PATCH", f"/v1/members/{ann['id']}", 200, {"user_id": None})
    try:
        assert page.goto(f"{world.service.url}/messages/{message['id']}").status == 404
    finally:
        world.a.call("PATCH", f"/v1/members/{ann['id']}", 200, {"user_id": world.ann_user})
    context.close()


def test_an_agent_takes_an_offer_and_completes_it(
    browser: Browser, world: World, shared: Shared
) -> None:
    message = shared.message
    assert message, "the first test leaves the message"
    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, world.service.url, world.agent_email)
    assert page.url.endswith("/console")  # an agent's home is the console
    expect(page.locator("nav.site")).not_to_contain_text("Inbox")
    page.click('#status-form button[data-status="available"]')
    expect(page.locator('#status-form button[data-status="available"]')).to_have_attribute("aria-pressed", "true")
    me = world.a.call("GET", "/v1/agents", 200)["items"]
    assert [a["status"] for a in me if a["user_id"] == world.agent_user] == ["available"]
    page.evaluate("window.stillTheSamePage = true")

    key, item_id = route_a_voicemail(world, message)
    offered = page.locator(f"#item-{item_id}.offered")
    offered.wait_for(timeout=WAIT_MS)
    assert page.evaluate("window.stillTheSamePage === true")  # no reload happened
    assert CALLER in offered.inner_text()
    countdown = offered.locator("[data-countdown]")
    first = int(countdown.inner_text())
    assert first > 0
    wait_until(lambda: int(countdown.inner_text()) < first, "the offer's countdown to go down")
    shoot(page, "console-offer")

    offered.locator("button.accept").click()
    held = page.locator(f"#item-{item_id}")
    expect(held).to_have_attribute("data-state", "assigned", timeout=WAIT_MS)
    expect(held.locator("button.callback")).to_be_visible()
    expect(held.locator(".transcript")).to_contain_text("No transcript yet")
    page.evaluate("window.stillTheSamePage = true")

    # The transcript arrives after the offer: the page shows it without a reload.
    start = int(CALL_START.timestamp() * 1000) + 2000  # within the call
    world.a.call(
        "POST", f"/telephony/v1/voiceCalls/{key}/messages", 200,
        {"messages": [
            {"participantId": CALLER, "messageId": "m1", "startTime": start, "endTime": start + 1500,
             "content": "Hello, please call me back about my appointment.", "senderType": "END_USER"},
        ]},
    )  # fmt: skip
    transcript = held.locator(".transcript")
    expect(transcript).to_contain_text("call me back about my appointment", timeout=WAIT_MS)
    assert transcript.locator("button.time").inner_text() == "0:02"  # its time in the call
    assert page.evaluate("window.stillTheSamePage === true")

    # The voicemail plays (a fresh signed link behind the console's own path).
    player = held.locator("audio")
    assert player.get_attribute("src") == f"/console/items/{item_id}/recording"
    player.evaluate("a => { a.muted = true; return a.play(); }")
    wait_until(lambda: player.evaluate("a => a.currentTime") > 0.2, "the voicemail to play")
    player.evaluate("a => a.pause()")
    assert labelled_controls_missing(page) == []
    shoot(page, "console")

    held.locator("textarea").fill(NOTES)
    held.locator("button.complete-button").click()
    page.wait_for_load_state()
    expect(page.locator(f"#item-{item_id}")).to_have_count(0)
    done = page.locator("#completed li").first
    expect(done).to_contain_text("Support")
    expect(done).to_contain_text(NOTES)
    stored = world.a.call("GET", f"/v1/work-items/{item_id}", 200)
    assert stored["state"] == "completed" and stored["notes"] == NOTES and stored["agent_id"] == world.agent_user
    shared.item = stored
    shoot(page, "console-completed")

    # A second voicemail, declined: the queue's only available agent declined it, so the
    # round starts over and a new offer comes (the page shows it, with its own forms).
    _, second = route_a_voicemail(world, message)
    offered = page.locator(f"#item-{second}.offered")
    offered.wait_for(timeout=WAIT_MS)
    declining = offered.locator("form").last.get_attribute("action")
    offered.locator("button.decline").click()
    expect(page.locator(f"#item-{second}.offered form").last).not_to_have_attribute(
        "action", declining or "", timeout=WAIT_MS
    )
    again = world.a.call("GET", f"/v1/work-items/{second}", 200)
    assert [(o["agent_id"], o["status"]) for o in again["offers"]] == [
        (world.agent_user, "declined"), (world.agent_user, "pending"),
    ], again

    # An agent never sees a mailbox.
    assert page.goto(f"{world.service.url}/messages/{message['id']}").status == 404
    assert page.goto(f"{world.service.url}/inbox/{world.ann_box}").status == 404
    assert page.goto(f"{world.service.url}/admin/users").status == 403
    context.close()


def test_others_get_404_and_forms_need_their_csrf_token(
    browser: Browser, world: World, shared: Shared
) -> None:
    item_id = shared.item["id"]
    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, world.service.url, world.b_email)
    assert page.url.endswith("/console")
    url = world.service.url
    assert page.goto(f"{url}/console/items/{item_id}/recording").status == 404
    assert page.goto(f"{url}/messages/{shared.message['id']}").status == 404
    csrf = page.locator("body").get_attribute("data-csrf") or ""
    for path in (f"/console/items/{item_id}/complete", f"/console/items/{item_id}/callback"):
        answer = context.request.post(url + path, form={"csrf": csrf, "notes": "mine now"})
        assert answer.status == 404, path
    assert page.goto(f"{url}/admin/users").status == 403  # an agent, not an admin
    # Without its CSRF token a form is refused, and the status stays.
    refused = context.request.post(url + "/console/status", form={"status": "available"})
    assert refused.status == 403
    agents = world.b.call("GET", "/v1/agents", 200)["items"]
    assert all(a["status"] != "available" for a in agents)
    context.close()

    # An admin of A not linked to an agent user has no console.
    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, url, world.admin_email)
    assert page.goto(f"{url}/console").status == 403
    context.close()


def test_admin_pages_show_users_devices_and_queues(
    browser: Browser, world: World, shared: Shared, tmp_path: Path
) -> None:
    sipp = shutil.which("sipp")
    assert sipp is not None, "sipp (sip-tester) is required"
    sip_port = world.service.env["AFTERBEEP_SIP_ADDR"].rsplit(":", 1)[1]
    command = [
        sipp, f"127.0.0.1:{sip_port}", "-sf", str(SCENARIOS / "register_uac.xml"),
        "-s", "rita-desk", "-au", "rita-desk", "-ap", DEVICE_PASSWORD,
        "-m", "1", "-t", "u1", "-i", "127.0.0.1", "-p", str(free_udp_port()),
        "-timeout", "30s", "-timeout_error", "-nostdin",
    ]  # fmt: skip
    registering = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        path = f"/v1/users/{world.agent_user}/registrations"
        wait_until(lambda: bool(world.a.call("GET", path, 200)["items"]), "the phone to register")
        context = browser.new_context(viewport=DESKTOP)
        page = sign_in(context, world.service.url, world.admin_email)
        page.goto(f"{world.service.url}/admin/users")
        rows = page.locator("#users tbody tr")
        expect(rows).to_have_count(2)
        rita = page.locator(f"#user-{world.agent_user}")
        expect(rita).to_contain_text("Rita")
        expect(rita).to_contain_text(world.agent_email)
        device = page.locator(f"#device-{world.device}")
        expect(device).to_have_attribute("data-registered", "yes")
        expect(device).to_contain_text("registered")
        expect(device).to_contain_text("SIPp register_uac")
        ann = page.locator(f"#user-{world.ann_user}")
        expect(ann).to_contain_text("Ann's line")
        expect(ann).to_contain_text("no devices")
        shoot(page, "admin-users")
    finally:
        output, _ = registering.communicate(timeout=60)
    assert registering.returncode == 0, output.decode(errors="replace")
    page.reload()
    expect(page.locator(f"#device-{world.device}")).to_have_attribute("data-registered", "no")

    page.goto(f"{world.service.url}/admin/queues")
    stats = world.a.call("GET", f"/v1/queues/{world.queue}/stats", 200)
    row = page.locator(f"#queue-{world.queue}")
    expect(row).to_contain_text("Support")
    for name in ("waiting", "answered", "abandoned", "timed_out"):
        assert row.locator(f'[data-stat="{name}"]').inner_text() == str(stats[name])
    shown = {
        el.get_attribute("data-agents"): int(re.sub(r"\D", "", el.inner_text()))
        for el in row.locator("[data-agents]").all()
    }
    assert shown == stats["agents_by_state"] and shown, shown
    expect(page.locator(f'#agent-{world.agent_user} [data-status]')).to_have_attribute("data-status", "available")
    shoot(page, "admin-queues")
    page.goto(f"{world.service.url}/admin/call-centers")
    expect(page.locator("#call-centers")).to_contain_text(API_NAME)
    context.close()

    # Another account's admin sees none of it.
    other = browser.new_context(viewport=DESKTOP)
    b_admin = "admin@other.example"
    world.b.member(b_admin, "admin")
    page = sign_in(other, world.service.url, b_admin)
    page.goto(f"{world.service.url}/admin/users")
    expect(page.locator(f"#user-{world.agent_user}")).to_have_count(0)
    expect(page.locator(f"#user-{world.b_agent_user}")).to_have_count(1)
    page.goto(f"{world.service.url}/admin/queues")
    expect(page.locator(f"#queue-{world.queue}")).to_have_count(0)
    other.close()
    assert httpx.get(world.service.url + "/console").status_code == 303  # to sign in
