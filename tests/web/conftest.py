"""Browser tests: Playwright for Python driving Debian's `chromium` (never a browser that
Playwright downloads) against the real `afterbeep serve`, with a real SMTP server and SIPp
callers. One service and one browser per test module; each test opens its own context.

Screenshots go to `artifacts/screenshots/` at the repository root (git-ignored)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from afterbeep.app import Runtime
from afterbeep.config import Settings
from tests.conftest import ADMIN_KEY
from tests.e2e.rig import (
    BEEP_S,
    DIALLED,
    GREETING_S,
    NUMBER,
    caller_pcap,
    rtp_range,
    silence,
    speech,
)
from tests.fixtures.rtp_pcap import RtpCapture
from tests.fixtures.service import Service, running_service
from tests.fixtures.smtp import SmtpServer, smtp_server
from tests.sip.conftest import SCENARIOS, free_udp_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A fake microphone (a beeping tone) that pages may use without asking: greetings
    # recorded in the browser.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}
WAIT_MS = 30_000  # bound on waiting for the page; never a speed assertion
PASSWORD = "correct horse battery staple"
LEAD_MS = int((GREETING_S + BEEP_S) * 1000) + 600  # the caller speaks after the beep
SPEECH_S = 2.5


def _ensure_chromium() -> str:
    """Debian's chromium, installed when missing (as `make test` does) if we are root."""
    if not os.path.exists(CHROMIUM) and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
            check=False, env=env, timeout=600,
        )  # fmt: skip
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is required (Debian package chromium) and could not be installed")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = _ensure_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer) -> Iterator[Service]:
    low, high = rtp_range()
    env = {
        "AFTERBEEP_SMTP_URL": smtp.url(),
        "AFTERBEEP_SMTP_FROM": "voicemail@afterbeep.test",
        "AFTERBEEP_RTP_PORT_MIN": str(low),
        "AFTERBEEP_RTP_PORT_MAX": str(high),
        "AFTERBEEP_ADMIN_KEY": ADMIN_KEY,
    }
    with running_service(tmp_path_factory.mktemp("web") / "var", env) as svc:
        yield svc


@dataclass
class Tenant:
    """An account seen through its API key."""

    service: Service
    account_id: str
    headers: dict[str, str]

    def call(self, method: str, path: str, status: int, body: dict[str, Any] | None = None) -> Any:
        response = httpx.request(
            method, self.service.url + path, json=body, headers=self.headers, timeout=30
        )
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    def member(self, email: str, role: str, **extra: Any) -> dict[str, Any]:
        body = {"email": email, "name": email.split("@")[0].title(), "role": role, **extra}
        created: dict[str, Any] = self.call("POST", "/v1/members", 201, {**body, "password": PASSWORD})
        return created


def new_tenants(service: Service, *names: str) -> list[Tenant]:
    """New accounts in the service's database, as `afterbeep account create` makes them (in
    this process: one more CLI process costs seconds of imports)."""

    async def create() -> list[tuple[str, str]]:
        runtime = Runtime(Settings(data_dir=Path(service.env["AFTERBEEP_DATA_DIR"])))
        await runtime.start(workers=False)
        try:
            issued = [await runtime.accounts.create_account(name) for name in names]
        finally:
            await runtime.stop()
        return [(i.account_id, i.secret) for i in issued]

    # A thread of its own: Playwright's sync API keeps an event loop running in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        created = pool.submit(asyncio.run, create()).result(timeout=120)
    return [Tenant(service, account_id, {"Authorization": f"Bearer {key}"}) for account_id, key in created]


def sign_in(context: BrowserContext, base_url: str, email: str) -> Page:
    page = context.new_page()
    page.goto(base_url + "/sign-in")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("#password-form button[type=submit]")
    page.wait_for_url(lambda url: "/sign-in" not in url, timeout=WAIT_MS)
    return page


def leave_message(service: Service, workdir: Path, seed: int = 7) -> None:
    """A SIPp caller dials NUMBER, waits through the greeting and beep, speaks, hangs up."""
    workdir.mkdir(parents=True, exist_ok=True)
    caller_pcap(workdir, silence(LEAD_MS), speech(SPEECH_S, seed=seed))
    sip_port = service.env["AFTERBEEP_SIP_ADDR"].rsplit(":", 1)[1]
    sipp = shutil.which("sipp")
    assert sipp is not None, "sipp (sip-tester) is required"
    hold_ms = LEAD_MS + int(SPEECH_S * 1000) + 500
    command = [
        sipp, f"127.0.0.1:{sip_port}", "-sf", str(SCENARIOS / "deposit_uac.xml"),
        "-s", DIALLED, "-m", "1", "-l", "1", "-t", "u1", "-i", "127.0.0.1",
        "-p", str(free_udp_port()), "-mp", str(free_udp_port()), "-d", str(hold_ms),
        "-timeout", "60s", "-timeout_error", "-nostdin",
    ]  # fmt: skip
    run = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, run.stdout + run.stderr


def hear_a_call(service: Service, workdir: Path, hold_ms: int) -> npt.NDArray[np.int16]:
    """A SIPp caller dials NUMBER, listens `hold_ms` and hangs up; what reached it (the RTP
    the service sent, captured on the port its SDP offered), decoded."""
    workdir.mkdir(parents=True, exist_ok=True)
    sip_port = service.env["AFTERBEEP_SIP_ADDR"].rsplit(":", 1)[1]
    sipp = shutil.which("sipp")
    assert sipp is not None, "sipp (sip-tester) is required"

    async def call() -> npt.NDArray[np.int16]:
        capture = await RtpCapture.open()
        try:
            command = [
                sipp, f"127.0.0.1:{sip_port}", "-sf", str(SCENARIOS / "media_uac_listen_then_bye.xml"),
                "-s", DIALLED, "-m", "1", "-l", "1", "-t", "u1", "-i", "127.0.0.1",
                "-p", str(free_udp_port()), "-key", "rtp_port", str(capture.port), "-d", str(hold_ms),
                "-timeout", "60s", "-timeout_error", "-nostdin",
            ]  # fmt: skip
            process = await asyncio.create_subprocess_exec(
                *command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            output, _ = await asyncio.wait_for(process.communicate(), 90)
            assert process.returncode == 0, output.decode(errors="replace")
        finally:
            capture.close()
        return capture.audio()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, call()).result(timeout=120)


def labelled_controls_missing(page: Page) -> list[str]:
    """The visible form controls of the page that have no label (nor aria-label)."""
    missing: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter((el) => el.type !== 'hidden' && el.offsetParent !== null)
            .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
            .map((el) => el.outerHTML.slice(0, 80))"""
    )
    return missing


def shoot(page: Page, name: str) -> None:
    """Screenshots of the page at desktop and phone width (the viewport is put back)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    before = page.viewport_size or DESKTOP
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(before)


def wait_until(predicate: Any, what: str, timeout: float = WAIT_MS / 1000) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


__all__ = ["NUMBER"]
