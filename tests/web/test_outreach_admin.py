"""The outreach dashboard and the admin pages in a real browser: the dashboard's counts are
the API's stats for the same sends; the follow-up list (and its CSV); campaigns paused,
resumed and canceled from the page; drops by `answered_by`; numbers, schedules, a flow's graph
with its validation errors on the nodes, a webhook's delivery log, API keys created (shown once)
and revoked. Another account gets 404, a member who is not an admin 403, a form without its
CSRF token 403. Screenshots at desktop and phone width."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.fixtures.service import Service
from tests.ringless.support import audio
from tests.web.conftest import (
    DESKTOP,
    PHONE,
    WAIT_MS,
    Tenant,
    labelled_controls_missing,
    new_tenants,
    shoot,
    sign_in,
    wait_until,
)

pytestmark = pytest.mark.timeout(240)

SENDER = "+12125550100"
R = [f"+1212555{n:04d}" for n in range(201, 210)]  # recipients


@dataclass
class World:
    service: Service
    a: Tenant
    b: Tenant
    ringless: str
    drops: str
    campaign: str
    flow: str
    webhook: str
    mailbox: str
    schedule: str
    admin_email: str = "lead@sales.example"
    member_email: str = "rep@sales.example"
    b_email: str = "someone@other.example"


def db(service: Service) -> sqlite3.Connection:
    return sqlite3.connect(Path(service.env["AFTERBEEP_DATA_DIR"]) / "afterbeep.db")


def later() -> str:
    return (datetime.now(UTC) + timedelta(hours=2)).isoformat()


@pytest.fixture(scope="module")
def world(service: Service) -> World:
    a, b = new_tenants(service, "Sales Co", "Other Co")
    a.member(World.admin_email, "admin")
    a.member(World.member_email, "member")
    b.member(World.b_email, "admin")
    setup = a.call(
        "POST", "/v1/telephony-setups", 201,
        {"name": "trunk", "trunk_host": "127.0.0.1", "trunk_port": 9, "transport": "udp",
         "numbers": [{"e164": SENDER}], "deposit_uri": "sip:{to}@127.0.0.1:9"},
    )  # fmt: skip
    with db(service) as conn:
        conn.execute("UPDATE setup_numbers SET verified = 1")  # as an operator would
    use_cases = [
        a.call(
            "POST", "/v1/use-cases", 201,
            {"channel": channel, "name": name, "setup_id": setup["id"], "sender_selection": "fixed",
             "sender_number": SENDER},
        )["id"]
        for channel, name in (("ringless_voicemail", "Reminders"), ("voicemail_drop", "Drops"))
    ]  # fmt: skip
    uploaded = httpx.post(
        f"{service.url}/v1/media", headers=a.headers, timeout=30,
        files={"file": ("v.mp3", audio(11), "audio/mpeg")}, data={"purpose": "voicemail"},
    )  # fmt: skip
    assert uploaded.status_code == 201, uploaded.text
    media_id = uploaded.json()["id"]
    hook = a.call(
        "POST", "/v1/webhooks", 201, {"url": "http://127.0.0.1:9/hook", "events": ["voicemail.status"]}
    )

    def send(to: str) -> str:
        body = {"to": to, "use_case_id": use_cases[0], "media_id": media_id, "send_at": later()}
        return str(a.call("POST", "/v1/voicemails", 202, body)["id"])

    # Sends due in two hours (the engine leaves them alone); their endings set as the engine
    # would have recorded them.
    s1, s2, s3, s4a, _s5 = (send(to) for to in (R[0], R[1], R[2], R[3], R[4]))
    s4b = send(R[3])  # R[3] failed first, then was reached: no follow-up
    a.call("POST", f"/v1/voicemails/{s3}/cancel", 200)  # skipped, `cancelled`
    drops = [
        a.call("POST", "/v1/drops", 202,
               {"to": to, "use_case_id": use_cases[1], "media_id": media_id, "send_at": later()})["id"]
        for to in (R[5], R[6], R[7])
    ]  # fmt: skip
    with db(service) as conn:
        ended = "UPDATE voicemail_sends SET status = ?, failure_reason = ?, answered_by = ? WHERE id = ?"
        conn.execute(ended, ("failed", "carrier_rejected", None, s1))
        conn.execute(ended, ("delivered", None, None, s2))
        conn.execute(ended, ("failed", "no_deposit_answer", None, s4a))
        conn.execute(ended, ("delivered", None, None, s4b))
        conn.execute(ended, ("left_voicemail", None, "machine", drops[0]))
        conn.execute(ended, ("human_answered", None, "human", drops[1]))
    campaign = a.call(
        "POST", "/v1/campaigns", 201,
        {"use_case_id": use_cases[0], "media_id": media_id, "name": "Spring", "recipients": [R[7], R[8]],
         "start_at": later()},
    )["id"]  # fmt: skip
    mailbox = a.call("POST", "/v1/mailboxes", 201, {"name": "Sales line"})["id"]
    schedule = a.call(
        "POST", "/v1/schedules", 201,
        {"name": "Office", "timezone": "UTC", "rules": [
            {"kind": "weekly", "dow": d, "start_time": "00:00", "end_time": "23:59"} for d in range(7)]},
    )["id"]  # fmt: skip
    flow = a.call(
        "POST", "/v1/flows", 201,
        {"name": "Main line",
         "nodes": [_node("start", "entry", trigger="inbound"), _node("hours", "timeCondition", scheduleId=schedule),
                   _node("vm", "voicemail", mailboxId=mailbox), _node("bye", "hangup")],
         "edges": [_edge("e1", "start", "default", "hours"), _edge("e2", "hours", "in_hours", "vm"),
                   _edge("e3", "hours", "out_of_hours", "bye")]},
    )["id"]  # fmt: skip
    a.call("POST", "/v1/numbers", 201, {"e164": "+12125550300", "dest_kind": "flow", "dest_id": flow})
    a.call(
        "POST", "/v1/numbers", 201,
        {"e164": "+12125550301", "dest_kind": "voicemail", "dest_id": mailbox, "schedule_id": schedule,
         "closed_dest_kind": "hangup"},
    )  # fmt: skip
    return World(service, a, b, use_cases[0], use_cases[1], campaign, flow, hook["id"], mailbox, schedule)


def _node(node_id: str, kind: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": kind, "data": {"kind": kind, **data}, "position": {"x": 0, "y": 0}}


def _edge(edge_id: str, source: str, handle: str, target: str) -> dict[str, Any]:
    return {"id": edge_id, "source": source, "sourceHandle": handle, "target": target}


def no_sideways_scroll(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_the_dashboard_counts_are_the_apis_stats(browser: Browser, world: World) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, world.service.url, world.admin_email)
    page.click("nav.site >> text=Outreach")
    page.wait_for_url("**/outreach")
    start = page.get_attribute("#window-start", "datetime")
    assert start is not None
    for use_case, stats_path, rate_field in (
        (world.ringless, "/v1/voicemails/stats", "delivery_rate"),
        (world.drops, "/v1/drops/stats", "left_voicemail_rate"),
    ):
        stats = world.a.call("GET", f"{stats_path}?{httpx.QueryParams(use_case_id=use_case, created_after=start)}", 200)
        section = page.locator(f"#uc-{use_case}")
        shown = {
            cell.get_attribute("data-status"): int(cell.inner_text())
            for cell in section.locator("td[data-status]").all()
        }
        assert shown == stats["counts"] and sum(shown.values()) > 0
        assert int(section.locator("td[data-total]").inner_text()) == stats["total"]
        rate = section.locator("td[data-rate]").get_attribute("data-rate")
        assert (float(rate) if rate else None) == stats[rate_field]
        reasons = {
            cell.get_attribute("data-reason"): int(cell.inner_text())
            for cell in section.locator("td[data-reason]").all()
        }
        assert reasons == {r["reason"]: r["count"] for r in stats["failure_reasons"]}
        # The chart's bars (one per day and status) add up to the same counts.
        bars = section.locator("svg.chart rect").evaluate_all("els => els.map(e => Number(e.dataset.count))")
        assert sum(bars) == stats["total"] and len(bars) >= len([n for n in stats["counts"].values() if n])
    for row in page.locator("#setups tr[data-setup]").all():
        setup, kind = row.get_attribute("data-setup"), row.get_attribute("data-kind")
        path = "/v1/drops/stats" if kind == "drop" else "/v1/voicemails/stats"
        stats = world.a.call("GET", f"{path}?{httpx.QueryParams(setup_id=setup, created_after=start)}", 200)
        assert int(row.locator("td[data-total]").inner_text()) == stats["total"] > 0
    assert page.locator("#setups tr[data-setup]").count() == 2  # one setup, ringless and drops
    ringless = world.a.call("GET", f"/v1/voicemails/stats?use_case_id={world.ringless}", 200)
    assert ringless["counts"] == {"accepted": 3, "delivered": 2, "failed": 2, "skipped": 1, "paused": 0}
    assert labelled_controls_missing(page) == []
    shoot(page, "dashboard")
    page.set_viewport_size(PHONE)
    assert no_sideways_scroll(page)
    context.close()


def test_the_follow_up_list_and_its_csv(browser: Browser, world: World) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, world.service.url, world.admin_email)
    page.goto(f"{world.service.url}/outreach")
    rows = page.locator("#follow-up tr[data-to]")
    # R[0] failed, R[2] was skipped (cancelled); R[3] failed but a later send was delivered.
    assert {r.get_attribute("data-to") for r in rows.all()} == {R[0], R[2]}
    assert page.inner_text("[data-follow-total]") == "2"
    with page.expect_download() as downloading:
        page.click("#follow-csv")
    table = list(csv.DictReader(io.StringIO(downloading.value.path().read_text())))
    assert {(r["to"], r["last_status"], r["reason"]) for r in table} == {
        (R[0], "failed", "carrier_rejected"),
        (R[2], "skipped", "cancelled"),
    }
    assert page.inner_text('#drops td[data-answered-by="machine"]') == "1"
    assert page.inner_text('#drops td[data-answered-by="human"]') == "1"
    assert page.inner_text('#drops td[data-answered-by="none"]') == "1"
    context.close()


def test_pause_resume_and_cancel_a_campaign(browser: Browser, world: World) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, world.service.url, world.admin_email)
    page.goto(f"{world.service.url}/outreach")
    box = page.locator(f"#campaign-{world.campaign}")
    assert box.get_attribute("data-status") == "scheduled"
    assert box.locator("[data-progress]").inner_text() == "0 of 2 finished"

    def act(action: str, then: str) -> None:
        # the URL is the same after every action: wait for the navigation itself
        with page.expect_navigation():
            box.locator(f"button[data-action={action}]").click()
        expect(box).to_have_attribute("data-status", then)
        assert world.a.call("GET", f"/v1/campaigns/{world.campaign}", 200)["status"] == then

    act("pause", "paused")
    act("resume", "scheduled")
    box.locator("button[data-action=pause]").focus()  # by keyboard: Tab to it and press Enter
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(box).to_have_attribute("data-status", "paused")
    act("cancel", "canceled")
    assert box.locator("[data-progress]").inner_text() == "2 of 2 finished"
    assert box.locator("button").count() == 0
    context.close()


def test_numbers_schedules_and_webhooks(browser: Browser, world: World) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, world.service.url, world.admin_email)
    page.click("nav.site >> text=Admin")
    page.click("text=Numbers")
    page.wait_for_url("**/admin/numbers")
    numbers = page.locator("#numbers tbody tr")
    assert numbers.count() == 2
    text = page.inner_text("#numbers")
    assert "+12125550300" in text and "Main line" in text and "Sales line" in text and "Office" in text
    shoot(page, "admin-numbers")
    page.set_viewport_size(PHONE)
    assert no_sideways_scroll(page)  # the table scrolls inside its box
    page.set_viewport_size(DESKTOP)

    page.click(".admin-nav >> text=Schedules")
    state = world.a.call("GET", f"/v1/schedules/{world.schedule}/state", 200)["state"]
    assert page.get_attribute(f"#schedule-{world.schedule} [data-state]", "data-state") == state

    page.goto(f"{world.service.url}/admin/webhooks")
    page.click("text=http://127.0.0.1:9/hook")
    page.wait_for_url(f"**/admin/webhooks/{world.webhook}")
    api = world.a.call("GET", f"/v1/webhooks/{world.webhook}/deliveries", 200)["items"]
    assert len(api) >= 1  # the cancelled send's voicemail.status
    assert page.locator("#deliveries tbody tr").count() == len(api)
    assert "voicemail.status" in page.inner_text("#deliveries")
    context.close()


def test_a_flow_drawn_edited_and_refused_with_errors_on_its_nodes(browser: Browser, world: World) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, world.service.url, world.admin_email)
    page.goto(f"{world.service.url}/admin/flows")
    page.click("text=Main line")
    page.wait_for_url(f"**/admin/flows/{world.flow}")
    graph = page.locator("#flow-graph")
    assert sorted(graph.locator("g.node").evaluate_all("els => els.map(e => e.dataset.node)")) == [
        "bye", "hours", "start", "vm",
    ]  # fmt: skip
    assert graph.locator("g.edge").count() == 3
    assert graph.locator("g.node.invalid").count() == 0
    assert labelled_controls_missing(page) == []

    body = json.loads(page.input_value("#graph"))
    body["nodes"].append(_node("box", "voicemail", mailboxId="not-a-mailbox"))
    body["edges"].append(_edge("e4", "hours", "holiday", "box"))
    page.fill("#graph", json.dumps(body))
    page.click("#save-flow")
    page.locator("#flow-errors").wait_for(timeout=WAIT_MS)
    invalid = graph.locator("g.node.invalid")
    assert invalid.evaluate_all("els => els.map(e => e.dataset.node)") == ["box"]
    assert "mailboxId" in (invalid.get_attribute("data-errors") or "")
    assert world.a.call("GET", f"/v1/flows/{world.flow}", 200)["version"] == 1  # nothing saved
    shoot(page, "admin-flow")

    body["nodes"][-1] = _node("box", "voicemail", mailboxId=world.mailbox)
    page.fill("#graph", json.dumps(body))
    page.click("#save-flow")
    page.wait_for_url(f"**/admin/flows/{world.flow}?saved=1")
    saved = world.a.call("GET", f"/v1/flows/{world.flow}", 200)
    assert saved["version"] == 2 and len(saved["nodes"]) == 5
    assert graph.locator("g.node").count() == 5 and graph.locator("g.node.invalid").count() == 0
    context.close()


def test_api_keys_are_shown_once_and_revoked(browser: Browser, world: World) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, world.service.url, world.admin_email)
    page.goto(f"{world.service.url}/admin/api-keys")
    before = page.locator("#keys tbody tr").count()
    page.click("#create-key button")
    secret = page.input_value("#secret")
    headers = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(f"{world.service.url}/v1/mailboxes", headers=headers, timeout=10).status_code == 200
    assert page.locator("#keys tbody tr").count() == before + 1
    shoot(page, "admin-api-keys")
    page.goto(f"{world.service.url}/admin/api-keys")
    assert page.locator("#secret").count() == 0 and secret not in page.content()  # once only
    found = re.fullmatch(r"abk_(key_[0-9a-z]{26})_.+", secret)
    assert found is not None
    key_id = found.group(1)
    page.click(f"#key-{key_id} button")
    page.wait_for_url("**/admin/api-keys")
    assert page.locator(f"#key-{key_id}").count() == 0
    wait_until(
        lambda: httpx.get(f"{world.service.url}/v1/mailboxes", headers=headers, timeout=10).status_code == 401,
        "the revoked key refused",
    )
    context.close()


ADMIN_PATHS = ["/outreach", "/outreach/follow-up.csv", "/admin", "/admin/numbers", "/admin/schedules",
               "/admin/flows", "/admin/webhooks", "/admin/api-keys"]  # fmt: skip


def test_another_account_and_other_roles_are_refused(browser: Browser, world: World) -> None:
    other = browser.new_context(viewport=DESKTOP)
    page = sign_in(other, world.service.url, world.b_email)
    for path in (f"/admin/flows/{world.flow}", f"/admin/webhooks/{world.webhook}"):
        response = page.goto(world.service.url + path)
        assert response is not None and response.status == 404, path
    page.goto(f"{world.service.url}/outreach")
    assert page.locator("section.usecase").count() == 0 and page.locator(".campaign").count() == 0
    page.goto(f"{world.service.url}/admin/numbers")
    assert page.locator("#numbers").count() == 0
    csrf = page.evaluate("document.body.dataset.csrf")
    for path in (f"/outreach/campaigns/{world.campaign}/pause", f"/admin/flows/{world.flow}"):
        posted = other.request.post(world.service.url + path, form={"csrf": csrf, "graph": "{}"})
        assert posted.status == 404, path
    other.close()

    member = browser.new_context(viewport=DESKTOP)
    page = sign_in(member, world.service.url, world.member_email)
    assert page.locator("nav.site >> text=Admin").count() == 0
    for path in [*ADMIN_PATHS, f"/admin/flows/{world.flow}"]:
        response = page.goto(world.service.url + path)
        assert response is not None and response.status == 403, path
    csrf = page.evaluate("document.body.dataset.csrf")
    created = member.request.post(f"{world.service.url}/admin/api-keys", form={"csrf": csrf})
    assert created.status == 403
    member.close()


def test_forms_without_their_csrf_token_are_refused(browser: Browser, world: World) -> None:
    context = browser.new_context(viewport=DESKTOP)
    sign_in(context, world.service.url, world.admin_email)
    keys = len(world.a.call("GET", "/v1/api-keys", 200)["items"])
    for path, form in (
        ("/admin/api-keys", {}),
        (f"/outreach/campaigns/{world.campaign}/resume", {}),
        (f"/admin/flows/{world.flow}", {"graph": "{}"}),
    ):
        refused = context.request.post(world.service.url + path, form=form)
        assert refused.status == 403, path
        forged = context.request.post(world.service.url + path, form={**form, "csrf": "forged"})
        assert forged.status == 403, path
    assert len(world.a.call("GET", "/v1/api-keys", 200)["items"]) == keys
    context.close()
