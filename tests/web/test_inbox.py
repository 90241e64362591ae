"""The visual voicemail in a real browser: sign in, a SIPp caller's message appears in the open
inbox without a reload, play and seek it, move it, delete it and undo; what another account,
another member and a forged form get. Screenshots at desktop and phone width."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser

from tests.e2e.rig import NUMBER
from tests.fixtures.service import Service
from tests.fixtures.smtp import SmtpServer
from tests.web.conftest import (
    DESKTOP,
    PASSWORD,
    WAIT_MS,
    Tenant,
    leave_message,
    new_tenants,
    shoot,
    sign_in,
    wait_until,
)

pytestmark = pytest.mark.timeout(240)


@dataclass
class World:
    service: Service
    a: Tenant
    b: Tenant
    front_desk: dict[str, Any]
    sales: dict[str, Any]
    admin_email: str
    sales_email: str
    b_email: str


@pytest.fixture(scope="module")
def world(service: Service) -> World:
    a, b = new_tenants(service, "Acme Clinic", "Other Co")
    a.member("admin@clinic.example", "admin")
    seller = a.member("sales@clinic.example", "member")
    front_desk = a.call(
        "POST", "/v1/mailboxes", 201,
        {"name": "Front desk", "skip_instructions": True, "min_message_seconds": 1, "timezone": "America/New_York"},
    )  # fmt: skip
    a.call("POST", "/v1/numbers", 201, {"e164": NUMBER, "dest_kind": "voicemail", "dest_id": front_desk["id"]})
    sales = a.call("POST", "/v1/mailboxes", 201, {"name": "Sales", "owner_member_id": seller["id"]})
    assert sales["owner_member_id"] == seller["id"]
    b.member("someone@other.example", "admin")
    return World(
        service, a, b, front_desk, sales,
        "admin@clinic.example", "sales@clinic.example", "someone@other.example",
    )  # fmt: skip


@dataclass
class Left:
    message: dict[str, Any]


@pytest.fixture(scope="module")
def left() -> Left:
    return Left({})


def test_a_message_left_by_a_caller_appears_in_the_open_inbox(
    browser: Browser, world: World, left: Left, tmp_path: Path
) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, world.service.url, world.admin_email)
    assert page.url.endswith(f"/inbox/{world.front_desk['id']}")  # the first mailbox (by name)
    assert page.locator("#no-messages").is_visible()
    page.evaluate("window.stillTheSamePage = true")

    leave_message(world.service, tmp_path)

    row = page.locator("ol.messages li").first
    row.wait_for(timeout=WAIT_MS)
    assert page.evaluate("window.stillTheSamePage === true")  # no reload happened
    [message] = world.a.call("GET", f"/v1/mailboxes/{world.front_desk['id']}/messages", 200)["items"]
    left.message = message
    assert row.get_attribute("id") == f"row-{message['id']}"
    text = row.inner_text()
    assert "SIPp Caller" in text and "+12025550123" in text
    seconds = message["duration_ms"] // 1000
    assert f"{seconds // 60}:{seconds % 60:02d}" in text  # the duration as the player shows it
    assert "unread" in (row.get_attribute("class") or "")
    nav = page.locator('nav.mailboxes a[aria-current="page"]')
    assert nav.locator("[data-unread]").inner_text() == "1"
    assert nav.locator(".count").inner_text() == "1"
    shoot(page, "inbox")
    context.close()


def test_play_and_seek_the_message(browser: Browser, world: World, left: Left) -> None:
    message_id = left.message["id"]
    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, world.service.url, world.admin_email)
    ranges: list[int] = []
    errors: list[str] = []
    requested: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: requested.append(r.url))
    page.on(
        "response",
        lambda r: ranges.append(r.status) if "/v1/links/messages/" in r.url else None,
    )
    page.click(f"#row-{message_id} a")
    page.wait_for_url(f"**/messages/{message_id}", timeout=WAIT_MS)
    assert "Received" in page.inner_text("dl.facts") and "EST" in page.inner_text("dl.facts")
    assert page.locator("#wave rect").count() > 10

    page.click("#toggle-read")  # a user gesture first: the browser lets the page play audio
    page.locator("#toggle-read").filter(has_text="Mark unread").wait_for(timeout=WAIT_MS)
    page.evaluate("document.getElementById('player').play()")
    page.wait_for_function(
        "() => document.getElementById('player').currentTime > 0.5", timeout=WAIT_MS
    )
    duration = page.evaluate("document.getElementById('player').duration")
    assert abs(duration - left.message["duration_ms"] / 1000) < 0.1

    box = page.locator("#wave").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] / 2)
    seeked = page.evaluate("document.getElementById('player').currentTime")
    assert abs(seeked - 0.75 * duration) < 0.5, seeked
    page.wait_for_function(
        f"() => document.getElementById('player').currentTime > {seeked + 0.3}", timeout=WAIT_MS
    )
    assert 206 in ranges  # the browser fetched a byte range of the recording
    page.evaluate("document.getElementById('player').pause()")

    with page.expect_download() as downloading:
        page.click("#download")
    download = downloading.value
    assert download.suggested_filename == f"voicemail-{message_id}.wav"
    saved = download.path()
    assert saved.read_bytes()[:4] == b"RIFF" and saved.stat().st_size == left.message["size_bytes"]
    assert errors == []  # no script error, no Content-Security-Policy violation
    assert requested and all(url.startswith(world.service.url + "/") for url in requested)
    shoot(page, "message")
    context.close()


def test_move_to_saved(browser: Browser, world: World, left: Left) -> None:
    message_id = left.message["id"]
    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, world.service.url, world.admin_email)
    page.goto(f"{world.service.url}/messages/{message_id}")
    page.select_option("#folder", "saved")
    page.click("#move")
    page.locator("#state [data-folder]").filter(has_text="saved").wait_for(timeout=WAIT_MS)
    assert page.url.endswith(f"/messages/{message_id}")  # swapped in place by htmx
    assert world.a.call("GET", f"/v1/messages/{message_id}", 200)["folder"] == "saved"
    page.goto(f"{world.service.url}/inbox/{world.front_desk['id']}?folder=saved")
    assert page.locator(f"#row-{message_id}").is_visible()
    page.goto(f"{world.service.url}/inbox/{world.front_desk['id']}?folder=new")
    assert page.locator(f"#row-{message_id}").count() == 0
    context.close()


def test_delete_and_undo(browser: Browser, world: World, left: Left) -> None:
    message_id = left.message["id"]
    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, world.service.url, world.admin_email)
    page.goto(f"{world.service.url}/messages/{message_id}")
    page.click("#delete")
    page.wait_for_url(re.compile(rf".*/inbox/{world.front_desk['id']}\?undo={message_id}$"))
    assert page.locator(f"#row-{message_id}").count() == 0
    assert "Message deleted" in page.inner_text(".undo")
    world.a.call("GET", f"/v1/messages/{message_id}", 404)  # gone from the API too

    page.click(".undo button")
    page.wait_for_url(f"**/messages/{message_id}", timeout=WAIT_MS)
    back = world.a.call("GET", f"/v1/messages/{message_id}", 200)
    assert back["folder"] == "saved"
    page.goto(f"{world.service.url}/inbox/{world.front_desk['id']}")
    assert page.locator(f"#row-{message_id}").is_visible()
    context.close()


def test_another_account_gets_404(browser: Browser, world: World, left: Left) -> None:
    message_id = left.message["id"]
    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, world.service.url, world.b_email)
    for path in (
        f"/messages/{message_id}",
        f"/inbox/{world.front_desk['id']}",
        f"/inbox/{world.front_desk['id']}/live",
    ):
        response = page.goto(world.service.url + path)
        assert response is not None and response.status == 404, path
        assert "Not found" in page.inner_text("h1")
    audio = context.request.get(f"{world.service.url}/messages/{message_id}/audio", max_redirects=0)
    assert audio.status == 404
    for action in ("read", "delete", "restore"):
        csrf = page.evaluate("document.body.dataset.csrf")
        posted = context.request.post(
            f"{world.service.url}/messages/{message_id}/{action}", form={"csrf": csrf}
        )
        assert posted.status == 404, action
    assert world.a.call("GET", f"/v1/messages/{message_id}", 200)["read"] is True
    context.close()


def test_a_member_sees_only_their_own_mailbox(browser: Browser, world: World, left: Left) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, world.service.url, world.sales_email)
    assert page.url.endswith(f"/inbox/{world.sales['id']}")
    names = page.locator("nav.mailboxes li").all_inner_texts()
    assert len(names) == 1 and "Sales" in names[0]
    for path in (f"/inbox/{world.front_desk['id']}", f"/messages/{left.message['id']}"):
        response = page.goto(world.service.url + path)
        assert response is not None and response.status == 404, path
    context.close()


def test_a_form_posted_without_its_csrf_token_is_refused(
    browser: Browser, world: World, left: Left
) -> None:
    message_id = left.message["id"]
    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, world.service.url, world.admin_email)
    url = f"{world.service.url}/messages/{message_id}/folder"
    refused = context.request.post(url, form={"folder": "urgent"})  # the session cookie, no token
    assert refused.status == 403 and "Refused" in refused.text()
    forged = context.request.post(url, form={"folder": "urgent", "csrf": "forged"})
    assert forged.status == 403
    assert world.a.call("GET", f"/v1/messages/{message_id}", 200)["folder"] == "saved"
    csrf = page.evaluate("document.body.dataset.csrf")
    accepted = context.request.post(url, form={"folder": "urgent", "csrf": csrf}, max_redirects=0)
    assert accepted.status == 303
    assert world.a.call("GET", f"/v1/messages/{message_id}", 200)["folder"] == "urgent"
    # Before signing in too: the sign-in form carries a token of its own.
    anonymous = browser.new_context()
    signin = anonymous.request.post(
        f"{world.service.url}/sign-in", form={"email": world.admin_email, "password": PASSWORD}
    )
    assert signin.status == 403
    anonymous.close()
    context.close()


def test_sign_in_by_emailed_link_and_sign_out_everywhere(
    browser: Browser, world: World, smtp: SmtpServer
) -> None:
    before = len(smtp.messages())
    laptop = browser.new_context(viewport=DESKTOP)
    kept = sign_in(laptop, world.service.url, world.sales_email)
    phone = browser.new_context(viewport={"width": 375, "height": 740})
    page = phone.new_page()
    page.goto(f"{world.service.url}/messages/{'msg_' + '0' * 26}")  # asks to sign in first
    page.wait_for_url("**/sign-in?next=*")
    page.fill("#link-email", world.sales_email)
    page.click("#link-form button[type=submit]")
    assert "Check your email" in page.inner_text("h1")
    wait_until(lambda: len(smtp.messages()) > before, "the sign-in email")
    mail = smtp.messages()[-1]
    assert mail.rcpt_tos == [world.sales_email]
    [link] = re.findall(r"http://\S+/sign-in/link/\S+", mail.message.get_body(("plain",)).get_content())
    page.goto(link)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/messages/msg_{'0' * 26}")  # where it was going: not found, not theirs
    assert "Not found" in page.inner_text("h1")
    used_again = httpx.post(link, timeout=10)
    assert used_again.status_code == 403  # no CSRF token; and a used link is refused anyway:
    page2 = phone.new_page()
    page2.goto(link)
    page2.click("button[type=submit]")
    assert "Link expired" in page2.inner_text("h1")

    page.goto(f"{world.service.url}/inbox")
    page.click("text=Sign out everywhere")
    page.wait_for_url("**/sign-in")
    kept.goto(f"{world.service.url}/inbox")
    assert "/sign-in" in kept.url  # the laptop's session is gone too
    laptop.close()
    phone.close()


def test_bad_passwords_are_rate_limited(world: World) -> None:
    with httpx.Client(base_url=world.service.url, timeout=30) as client:
        page = client.get("/sign-in")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        statuses = []
        for _ in range(6):
            answer = client.post(
                "/sign-in",
                data={"csrf": csrf.group(1), "email": world.b_email, "password": "wrong password"},
            )
            statuses.append(answer.status_code)
        assert statuses == [401] * 5 + [429]
        right = client.post(
            "/sign-in", data={"csrf": csrf.group(1), "email": world.b_email, "password": PASSWORD}
        )
        assert right.status_code == 429  # the address waits even with the right password


def test_live_streams_are_limited_per_member(world: World) -> None:
    with httpx.Client(base_url=world.service.url, timeout=30) as client:
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/sign-in").text)
        assert csrf is not None
        signed = client.post(
            "/sign-in", data={"csrf": csrf.group(1), "email": world.sales_email, "password": PASSWORD}
        )
        assert signed.status_code == 303
        live = f"/inbox/{world.sales['id']}/live"
        with contextlib.ExitStack() as streams:
            opened = [streams.enter_context(client.stream("GET", live)) for _ in range(4)]
            assert all(s.status_code == 200 for s in opened)
            assert opened[0].headers["content-type"].startswith("text/event-stream")
            assert client.get(live).status_code == 429
            opened[0].close()

            def another_opens() -> bool:
                with client.stream("GET", live) as extra:
                    return extra.status_code == 200

            wait_until(another_opens, "a stream to be closed on the server")
