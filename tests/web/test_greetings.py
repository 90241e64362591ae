"""Greetings and search in a real browser: a greeting uploaded on the page is what the next
SIPp caller hears; a temporary one is heard instead while set; one recorded with the
browser's (fake) microphone is set as the busy greeting; the inbox finds a message by a word
of its transcript, as `GET /v1/messages?q=` does."""

from __future__ import annotations

import io
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import Browser

from afterbeep.audio.compare import compare
from afterbeep.audio.rendition import read_wav_pcm
from afterbeep.telephony.prompts import prompt
from tests.e2e.rig import NUMBER, sent
from tests.fixtures.service import Service
from tests.web.conftest import (
    DESKTOP,
    WAIT_MS,
    Tenant,
    hear_a_call,
    labelled_controls_missing,
    leave_message,
    new_tenants,
    shoot,
    sign_in,
    wait_until,
)

pytestmark = pytest.mark.timeout(240)

GREETING_S = 2.0


@dataclass
class World:
    service: Service
    a: Tenant
    b: Tenant
    mailbox: dict[str, Any]
    admin_email: str
    b_email: str


@pytest.fixture(scope="module")
def world(service: Service) -> World:
    a, b = new_tenants(service, "Acme Clinic", "Other Co")
    a.member("admin@clinic.example", "admin")
    b.member("someone@other.example", "admin")
    mailbox = a.call(
        "POST", "/v1/mailboxes", 201,
        {"name": "Front desk", "skip_instructions": True, "min_message_seconds": 1},
    )  # fmt: skip
    a.call("POST", "/v1/numbers", 201, {"e164": NUMBER, "dest_kind": "voicemail", "dest_id": mailbox["id"]})
    return World(service, a, b, mailbox, "admin@clinic.example", "someone@other.example")


def tone_wav(path: Path, hz: float) -> Path:
    """A tone under a slow swell, 16 kHz WAV: unlike the system greeting, and unlike another hz."""
    rate = 16000
    t = np.arange(int(rate * GREETING_S)) / rate
    voice = 0.3 * np.sin(2 * np.pi * hz * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    buffer = io.BytesIO()
    sf.write(buffer, voice.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    path.write_bytes(buffer.getvalue())
    return path


def telephony_audio(tenant: Tenant, media_id: str) -> Any:
    answer = httpx.get(
        f"{tenant.service.url}/v1/media/{media_id}/audio",
        params={"rendition": "telephony"}, headers=tenant.headers, timeout=30,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    pcm, rate = read_wav_pcm(answer.content)
    assert rate == 8000
    return pcm


def heard_greeting(world: World, workdir: Path, media_id: str) -> None:
    greeting = telephony_audio(world.a, media_id)
    heard = hear_a_call(world.service, workdir, hold_ms=int(len(greeting) / 8 + 1500))
    result = compare(sent(greeting), heard, max_lag_ms=3000)
    print(f"greeting heard: {result}")
    assert result.snr_db >= 20 and result.missing_head_ms <= 20 and result.missing_tail_ms <= 20
    assert compare(sent(prompt("vm-greeting")), heard, max_lag_ms=3000).snr_db < 5


def test_a_greeting_uploaded_on_the_page_is_heard_on_the_next_call(
    browser: Browser, world: World, tmp_path: Path
) -> None:
    mailbox_id = world.mailbox["id"]
    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, world.service.url, world.admin_email)
    page.click("#greetings-link")
    page.wait_for_url(f"**/inbox/{mailbox_id}/greetings")
    assert "None set" in page.inner_text("#greeting-unavailable")
    assert labelled_controls_missing(page) == []
    page.select_option("#greeting-kind", "unavailable")
    page.set_input_files("#greeting-file", str(tone_wav(tmp_path / "hello.wav", 440)))
    page.click("#upload-greeting")
    page.locator("#saved").wait_for(timeout=WAIT_MS)
    greeting_id = world.a.call("GET", f"/v1/mailboxes/{mailbox_id}", 200)["greeting_media_id"]
    assert greeting_id is not None
    assert page.inner_text("#playing") == "unavailable"

    # Listen to it on the page.
    page.click("h1")  # a user gesture: the browser then lets the page play audio
    page.evaluate("document.querySelector('#greeting-unavailable audio').play()")
    page.wait_for_function(
        "() => document.querySelector('#greeting-unavailable audio').currentTime > 0.3",
        timeout=WAIT_MS,
    )
    part = context.request.get(
        f"{world.service.url}/inbox/{mailbox_id}/greetings/unavailable/audio", headers={"Range": "bytes=0-99"}
    )
    assert part.status == 206 and part.body()[:4] == b"RIFF" and len(part.body()) == 100
    shoot(page, "greetings")

    heard_greeting(world, tmp_path / "call1", greeting_id)

    # A temporary greeting is heard instead while it is set.
    page.select_option("#greeting-kind", "temporary")
    page.set_input_files("#greeting-file", str(tone_wav(tmp_path / "away.wav", 660)))
    page.click("#upload-greeting")
    page.locator("#saved").wait_for(timeout=WAIT_MS)
    mailbox = world.a.call("GET", f"/v1/mailboxes/{mailbox_id}", 200)
    temporary = mailbox["temp_greeting_media_id"]
    assert temporary not in (None, greeting_id) and mailbox["greeting_media_id"] == greeting_id
    assert page.inner_text("#playing") == "temporary"
    heard_greeting(world, tmp_path / "call2", temporary)

    page.click("#greeting-temporary button.danger")
    page.wait_for_url(f"**/inbox/{mailbox_id}/greetings")
    assert world.a.call("GET", f"/v1/mailboxes/{mailbox_id}", 200)["temp_greeting_media_id"] is None
    assert page.inner_text("#playing") == "unavailable"
    context.close()


def test_a_greeting_recorded_in_the_browser_is_set(browser: Browser, world: World) -> None:
    mailbox_id = world.mailbox["id"]
    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, world.service.url, world.admin_email)
    page.goto(f"{world.service.url}/inbox/{mailbox_id}/greetings")
    page.locator("#recorder").wait_for(state="visible", timeout=WAIT_MS)
    page.select_option("#greeting-kind", "busy")
    page.click("#record-start")
    page.locator("#record-state").filter(has_text="Recording").wait_for(timeout=WAIT_MS)
    page.wait_for_timeout(1500)
    page.click("#record-stop")
    page.locator("#record-save:not([disabled])").wait_for(timeout=WAIT_MS)
    assert page.locator("#record-preview").is_visible()
    page.click("#record-save")
    page.wait_for_url("**/greetings?saved=busy", timeout=WAIT_MS)
    busy = world.a.call("GET", f"/v1/mailboxes/{mailbox_id}", 200)["busy_greeting_media_id"]
    assert busy is not None
    media = world.a.call("GET", f"/v1/media/{busy}", 200)
    assert media["format"] == "wav" and 800 <= media["duration_ms"] <= 10_000
    assert "recorded greeting" in page.inner_text("#greeting-busy")
    context.close()


def test_greetings_of_another_account_and_forms_without_csrf(browser: Browser, world: World) -> None:
    mailbox_id = world.mailbox["id"]
    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, world.service.url, world.b_email)
    for path in (f"/inbox/{mailbox_id}/greetings", f"/inbox/{mailbox_id}/greetings/unavailable/audio"):
        response = page.goto(world.service.url + path)
        assert response is not None and response.status == 404, path
    csrf = page.evaluate("document.body.dataset.csrf")
    cleared = context.request.post(
        f"{world.service.url}/inbox/{mailbox_id}/greetings/unavailable/clear", form={"csrf": csrf}
    )
    assert cleared.status == 404
    context.close()

    own = browser.new_context(viewport=DESKTOP)
    sign_in(own, world.service.url, world.admin_email)
    upload = {"kind": "unavailable", "file": {"name": "x.wav", "mimeType": "audio/wav", "buffer": b"RIFF"}}
    refused = own.request.post(f"{world.service.url}/inbox/{mailbox_id}/greetings", multipart=upload)
    assert refused.status == 403
    cleared = own.request.post(f"{world.service.url}/inbox/{mailbox_id}/greetings/unavailable/clear")
    assert cleared.status == 403
    assert world.a.call("GET", f"/v1/mailboxes/{mailbox_id}", 200)["greeting_media_id"] is not None
    # Only the greeting upload takes a file past the pages' 64 KB.
    big = {"file": {"name": "x.wav", "mimeType": "audio/wav", "buffer": b"0" * 100_000}}
    elsewhere = own.request.post(f"{world.service.url}/sign-out", multipart=big)
    assert elsewhere.status == 413
    own.close()


def test_search_the_inbox_by_a_word_of_the_transcript(
    browser: Browser, world: World, tmp_path: Path
) -> None:
    mailbox_id = world.mailbox["id"]
    leave_message(world.service, tmp_path / "first", seed=3)
    leave_message(world.service, tmp_path / "second", seed=4)

    def stored() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = world.a.call("GET", f"/v1/mailboxes/{mailbox_id}/messages", 200)["items"]
        return found

    wait_until(lambda: len(stored()) == 2, "both messages stored")
    items = stored()
    # Transcription is off in these tests: the transcripts are written as the worker would.
    texts = {items[0]["id"]: "please call. the dentist tomorrow", items[1]["id"]: "the invoice is late"}
    with sqlite3.connect(Path(world.service.env["AFTERBEEP_DATA_DIR"]) / "afterbeep.db") as db:
        for message_id, text in texts.items():
            first, _, second = text.partition(". ")
            segments = [{"start_ms": 0, "end_ms": 1000, "text": first}]
            if second:
                segments.append({"start_ms": 1500, "end_ms": 2400, "text": second})
            body = {"text": text, "language": "en", "segments": segments, "confidence": 0.9}
            db.execute(
                "UPDATE messages SET transcript = ?, transcription_status = 'done' WHERE id = ?",
                (json.dumps(body), message_id),
            )
    [dentist] = [m for m, t in texts.items() if "dentist" in t]
    api = world.a.call("GET", "/v1/messages?q=dentist", 200)["items"]
    assert [m["id"] for m in api] == [dentist]

    context = browser.new_context(viewport=DESKTOP)
    page = sign_in(context, world.service.url, world.admin_email)
    page.goto(f"{world.service.url}/inbox/{mailbox_id}")
    assert page.locator("ol.messages li").count() == 2
    page.fill("#q", "dentist")
    page.press("#q", "Enter")
    page.wait_for_url("**q=dentist*")
    rows = page.locator("ol.messages li")
    assert [rows.nth(i).get_attribute("id") for i in range(rows.count())] == [f"row-{dentist}"]
    assert "dentist" in rows.first.inner_text()
    assert "dentist" in page.inner_text("#search-state")
    page.fill("#q", "zebra")
    page.press("#q", "Enter")
    page.wait_for_url("**q=zebra*")
    assert page.locator("ol.messages li").count() == 0
    assert page.locator("#no-messages").is_visible()

    # The message's transcript, sentence by sentence with their times: a click seeks there.
    page.goto(f"{world.service.url}/messages/{dentist}")
    sentences = page.locator(".transcript p")
    assert sentences.all_inner_texts() == ["0:00please call", "0:01the dentist tomorrow"]
    page.click("h1")  # a user gesture: the player may then play
    seeked = page.evaluate(
        """() => { document.querySelectorAll('.transcript button')[1].click();
                   return document.getElementById('player').currentTime; }"""
    )
    assert abs(seeked - 1.5) < 0.05
    page.wait_for_function("() => document.getElementById('player').currentTime > 1.6", timeout=WAIT_MS)
    context.close()
