"""End-to-end rig: a real Runtime (workers on) or `afterbeep serve`, SIPp and Python callers,
an SMTP server and a webhook receiver, all on 127.0.0.1.

Callers' audio is a pcap made by `tests.fixtures.rtp_pcap` and replayed by SIPp from the ACK on;
what a caller hears is recorded by a Python caller (`dial()` from a second TelephonyServer).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import random
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf

from afterbeep.app import Runtime
from afterbeep.audio.rendition import read_wav_pcm
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.interface import Audio
from afterbeep.telephony.media import Codec
from afterbeep.telephony.server import TelephonyServer, telephony_configs
from tests.conftest import Backend, make_settings
from tests.fixtures.rtp_pcap import RtpStreamBuilder, g711_roundtrip, write_pcap
from tests.sip.conftest import free_udp_port

SCENARIOS = Path(__file__).resolve().parent.parent / "sipp"
CALLER = "+12025550123"  # the From of the deposit_* scenarios
NUMBER = "+12025550100"
DIALLED = "2025550100"  # national form in the request-URI
OWNER = "owner@clinic.example"
HOOK_SECRET = "e2e-webhook-secret-0123456789abcdef"
WAIT = 30.0  # bound on waiting for background work; never a speed assertion
GREETING_S = 2.735  # the English vm-greeting prompt
BEEP_S = 0.25


def speech(seconds: float, seed: int = 1) -> Audio:
    """Speech-like noise under a 4 Hz envelope, loud in every 20 ms frame (never "silence")."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 8000)
    envelope = 0.55 + 0.45 * np.sin(np.arange(n) * 2 * np.pi * 4 / 8000)
    return (rng.normal(0, 3000, n) * envelope).clip(-32768, 32767).astype(np.int16)


def sent(pcm: Audio) -> Audio:
    """What the service decodes from `pcm` sent as PCMU: the exact reference."""
    return g711_roundtrip(Codec.PCMU, pcm)


def silence(ms: int) -> Audio:
    return np.zeros(ms * 8, dtype=np.int16)


def caller_pcap(directory: Path, *parts: Audio | str) -> Path:
    """`caller.pcap` in `directory`: audio arrays (silence is sent as audio) and key strings."""
    builder = RtpStreamBuilder(Codec.PCMU, 20, 101)
    for part in parts:
        if isinstance(part, str):
            builder.digits(part)
        else:
            builder.audio(part)
    directory.mkdir(parents=True, exist_ok=True)
    return write_pcap(directory / "caller.pcap", builder.take())


def rtp_range() -> tuple[int, int]:
    """200 RTP ports at random in 10000-19999, in this pytest-xdist worker's own lane.

    Below the kernel's ephemeral ports (32768-60999), so that a port the kernel picked for a
    SIP or HTTP listener (`free_port()`) is never taken by a call's RTP socket meanwhile."""
    lanes = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    lane = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % lanes
    width = 10000 // lanes // 200 * 200
    base = random.randrange(10000 + lane * width, 10000 + (lane + 1) * width - 199, 200)
    return base, base + 199


# --- SIPp -------------------------------------------------------------------------------------


@dataclass
class SippRun:
    returncode: int
    output: str
    messages: str

    def received(self, start_line: str) -> int:
        """How many received messages start with `start_line` (e.g. `SIP/2.0 503`)."""
        pattern = r"message received \[\d+\] bytes :\s*\n\s*\n" + re.escape(start_line)
        return len(re.findall(pattern, self.messages))

    def sent_times(self, method: str) -> dict[str, datetime]:
        """Call-ID → when the first `method` request of that call was sent."""
        times: dict[str, datetime] = {}
        blocks = re.split(r"^-{10,} (\S+ \S+)", self.messages, flags=re.M)
        for stamp, block in zip(blocks[1::2], blocks[2::2], strict=True):
            if "message sent" not in block:
                continue
            body = block.split("\n\n", 1)[-1].lstrip()
            if not body.startswith(method + " "):
                continue
            call = re.search(r"^Call-ID: *(\S+)", body, flags=re.M)
            if call and call.group(1) not in times:
                times[call.group(1)] = datetime.strptime(stamp, "%Y-%m-%d\t%H:%M:%S.%f")
        return times


async def sipp_calls(
    sipp: str,
    scenario: str,
    cwd: Path,
    sip_port: int,
    *,
    calls: int = 1,
    hold_ms: int = 0,
    timeout: float = 60.0,
    started: asyncio.Event | None = None,
    process: list[asyncio.subprocess.Process] | None = None,
) -> SippRun:
    """`calls` simultaneous SIPp calls (all started within about 100 ms) to the dialled number."""
    trace = cwd / "messages.log"
    cmd = [
        sipp,
        f"127.0.0.1:{sip_port}",
        "-sf",
        str(SCENARIOS / scenario),
        "-s",
        DIALLED,
        "-m",
        str(calls),
        "-l",
        str(calls),
        "-r",
        str(max(calls, 1) * 10),
        "-rp",
        "1000",
        "-t",
        "u1",
        "-i",
        "127.0.0.1",
        "-p",
        str(free_udp_port()),
        "-mp",
        str(free_udp_port()),
        "-d",
        str(hold_ms),
        "-timeout",
        f"{int(timeout)}s",
        "-timeout_error",
        "-recv_timeout",
        "60000",
        "-nostdin",
        "-trace_msg",
        "-message_file",
        str(trace),
        "-trace_err",
        "-error_file",
        str(cwd / "errors.log"),
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    if process is not None:
        process.append(proc)
    if started is not None:
        started.set()
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout + 15)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    errors = cwd / "errors.log"
    if errors.exists():
        text += "\n" + errors.read_text(errors="replace")
    messages = trace.read_text(errors="replace") if trace.exists() else ""
    return SippRun(proc.returncode if proc.returncode is not None else -1, text, messages)


# --- the service in this process --------------------------------------------------------------


@contextlib.asynccontextmanager
async def deposit_runtime(
    backend: Backend,
    smtp_url: str = "smtp://127.0.0.1:9",
    *,
    workers: bool = True,
    **overrides: Any,
) -> AsyncIterator[Runtime]:
    low, high = rtp_range()
    settings = make_settings(
        backend,
        sip_addr="127.0.0.1:0",
        rtp_port_min=low,
        rtp_port_max=high,
        smtp_url=smtp_url,
        smtp_from="voicemail@afterbeep.test",
        webhook_allowed_hosts="127.0.0.1",
        **overrides,
    )
    rt = Runtime(settings)
    await rt.start(workers=workers)
    try:
        yield rt
    finally:
        await rt.stop()


def sip_port(rt: Runtime) -> int:
    assert rt.telephony is not None and rt.telephony.udp_port is not None
    return rt.telephony.udp_port


@dataclass
class Api:
    """The HTTP API of a runtime (in process) or of a service (over TCP), as one account."""

    http: httpx.AsyncClient
    headers: dict[str, str]
    account_id: str = ""

    async def verify_sender(self, number: str) -> None:
        """The operator verifies `number` for this account (the admin API)."""
        from tests.conftest import ADMIN_HEADERS

        body = {"account_id": self.account_id, "number": number}
        response = await self.http.post("/v1/admin/numbers/verify", json=body, headers=ADMIN_HEADERS)
        assert response.status_code == 200, response.text

    async def post(self, path: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
        response = await self.http.post(path, json=body, headers=self.headers)
        assert response.status_code == status, response.text
        data: dict[str, Any] = response.json()
        return data

    async def mailbox(self, **settings: Any) -> dict[str, Any]:
        """A mailbox with OWNER told by email, and NUMBER leading to it."""
        body = {"name": "Front desk", "notify_email": OWNER, "min_message_seconds": 1, **settings}
        mailbox = await self.post("/v1/mailboxes", body)
        await self.post(
            "/v1/numbers", {"e164": NUMBER, "dest_kind": "voicemail", "dest_id": mailbox["id"]}
        )
        return mailbox

    async def messages(self, mailbox_id: str) -> list[dict[str, Any]]:
        response = await self.http.get(
            f"/v1/mailboxes/{mailbox_id}/messages", params={"limit": 100}, headers=self.headers
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def wait_messages(self, mailbox_id: str, count: int) -> list[dict[str, Any]]:
        async with asyncio.timeout(WAIT):
            while len(found := await self.messages(mailbox_id)) < count:  # noqa: ASYNC110 (polls the API)
                await asyncio.sleep(0.1)
        return found

    async def audio(self, message_id: str) -> Audio:
        response = await self.http.get(f"/v1/messages/{message_id}/audio", headers=self.headers)
        assert response.status_code == 200, response.text
        pcm, rate = read_wav_pcm(response.content)
        assert rate == 8000
        return pcm


@contextlib.asynccontextmanager
async def api_of(rt: Runtime, name: str = "Acme Clinic") -> AsyncIterator[Api]:
    issued = await rt.accounts.create_account(name)
    transport = httpx.ASGITransport(app=rt.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://afterbeep.test") as http:
        yield Api(http, {"Authorization": f"Bearer {issued.secret}"}, issued.account_id)


async def settle(rt: Runtime) -> None:
    """Every call over and every recording handed to the spool worker stored."""
    assert rt.telephony is not None and rt.spool_worker is not None
    async with asyncio.timeout(WAIT):
        await rt.telephony.idle()
        await rt.spool_worker.wait_idle()


# --- a Python caller that records what it hears -----------------------------------------------


class Heard:
    """A RecordingSink keeping everything (the caller's ears)."""

    def __init__(self) -> None:
        self.blocks: list[Audio] = []

    def write(self, pcm: Audio) -> None:
        self.blocks.append(pcm.copy())

    @property
    def pcm(self) -> Audio:
        return np.concatenate(self.blocks) if self.blocks else np.zeros(0, dtype=np.int16)


@dataclass
class PythonCall:
    heard: Heard = field(default_factory=Heard)
    remote_hangup: bool = False


async def python_caller(
    rt: Runtime, act: Callable[[SipCall], Awaitable[None]] | None = None, *, limit: float = 40.0
) -> PythonCall:
    """Dial NUMBER on `rt` from a second TelephonyServer; record what is heard until the service
    hangs up (bounded by `limit`), while `act` (speak, press keys) runs."""
    low, high = rtp_range()
    ua_config, media_config = telephony_configs("127.0.0.1:0", None, low, high)
    result = PythonCall()
    async with TelephonyServer(ua_config, media_config) as phone:
        outbound = await phone.dial(
            f"sip:{DIALLED}@127.0.0.1:{sip_port(rt)}", f"sip:{CALLER}@127.0.0.1", timeout=10
        )
        call = await outbound.wait_answered()
        listening = asyncio.ensure_future(
            call.record(result.heard, max_seconds=limit, silence_seconds=limit)
        )
        try:
            if act is not None:
                await act(call)
            async with asyncio.timeout(limit + 5):
                await listening
            result.remote_hangup = call.end_reason == "remote"
        finally:
            listening.cancel()
            await call.hangup()
    return result


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- webhook receiver -------------------------------------------------------------------------


@dataclass
class Hook:
    headers: dict[str, str]
    body: bytes


class HookReceiver:
    """A minimal HTTP/1.1 server on 127.0.0.1 keeping every request; answers 200."""

    def __init__(self) -> None:
        self.requests: list[Hook] = []
        self._arrived = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> HookReceiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def wait_for(self, count: int) -> list[Hook]:
        async with asyncio.timeout(WAIT):
            while len(self.requests) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return list(self.requests)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            headers = {}
            for line in head.split("\r\n")[1:]:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Hook(headers, body))
            self._arrived.set()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


# --- a short greeting, for tests whose callers need not wait for the system one ---------------

SHORT_GREETING_S = 0.5


async def short_greeting(api: Api, mailbox_id: str, *fields: str) -> Audio:
    """A half-second greeting (speech-like, uploaded as a WAV) set as the mailbox's `fields`
    (`greeting_media_id` when none is named); the audio, as uploaded."""
    audio = speech(SHORT_GREETING_S, seed=5)
    wav = io.BytesIO()
    sf.write(wav, audio, 8000, format="WAV", subtype="PCM_16")
    files = {"file": ("short.wav", wav.getvalue(), "audio/wav")}
    media = await api.http.post("/v1/media", files=files, headers=api.headers)
    assert media.status_code in (200, 201), media.text  # 200: the same audio is stored already
    body = {name: media.json()["id"] for name in fields or ("greeting_media_id",)}
    patched = await api.http.patch(f"/v1/mailboxes/{mailbox_id}", json=body, headers=api.headers)
    assert patched.status_code == 200, patched.text
    return audio
