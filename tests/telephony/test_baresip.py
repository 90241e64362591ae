"""A real softphone (Debian's baresip, headless) calling the service on 127.0.0.1.

baresip's microphone is a WAV of known speech-like audio (its aufile module), its keys are
sent as RFC 4733 events (ctrl_tcp ``sndcode``). What the service recorded is compared with the
G.711 round trip of that audio: baresip adds no processing of its own with these modules, so
the comparison is as strict as with SIPp, except for the length, which depends on when the
softphone's keys and hang-up land.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from afterbeep.app import Runtime
from afterbeep.audio.compare import compare
from afterbeep.audio.tones import speech_like
from afterbeep.config import Settings
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.interface import Audio, EndedBy
from afterbeep.telephony.media import Codec
from afterbeep.telephony.server import Route, Router, TelephonyServer
from afterbeep.telephony.sip import IncomingInvite
from afterbeep.telephony.sip.errors import SipTransportError
from tests.fixtures.baresip import (
    PhonePorts,
    available,
    baresip_phone,
    pick_ports,
    write_wav,
)
from tests.fixtures.rtp_pcap import g711_roundtrip
from tests.fixtures.smtp import SmtpServer, smtp_server

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not available(), reason="needs Debian's baresip (apt-get install baresip)"),
]

NUMBER = "+12025550100"


class MemorySink:
    def __init__(self) -> None:
        self.blocks: list[Audio] = []

    def write(self, pcm: Audio) -> None:
        self.blocks.append(pcm.copy())

    @property
    def pcm(self) -> Audio:
        return np.concatenate(self.blocks) if self.blocks else np.zeros(0, dtype=np.int16)


def silence(ms: int) -> Audio:
    return np.zeros(ms * 8, dtype=np.int16)


def make_runtime(tmp_path: Path, smtp_url: str = "smtp://127.0.0.1:9") -> Runtime:
    return Runtime(
        Settings(
            data_dir=tmp_path / "var",
            secret_key="test-secret-" + "x" * 32,
            sip_addr="127.0.0.1:0",
            rtp_port_min=24000,
            rtp_port_max=24999,
            smtp_url=smtp_url,
            allow_private_networks="127.0.0.0/8",
            transcribe=False,
        )
    )


async def start_telephony(runtime: Runtime, router: Router) -> TelephonyServer:
    """SIP for `router`, on a port chosen again if another process took it meanwhile."""
    for attempt in range(3):
        try:
            return await runtime.start_telephony(router=router)
        except SipTransportError:
            if attempt == 2:
                raise
            runtime.settings = runtime.settings.model_copy(
                update={"sip_addr": "127.0.0.1:0"}
            )
    raise AssertionError("unreachable")


async def started_runtime(tmp_path: Path, smtp_url: str) -> Runtime:
    """A runtime with its workers and SIP, started again on another SIP port if one was taken."""
    for attempt in range(3):
        runtime = make_runtime(tmp_path, smtp_url)
        try:
            await runtime.start(workers=True)
        except SipTransportError:
            await runtime.stop()
            if attempt == 2:
                raise
            continue
        return runtime
    raise AssertionError("unreachable")


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = make_runtime(tmp_path)
    await rt.start(workers=False)
    try:
        yield rt
    finally:
        await rt.stop()


def _wait_emails(smtp: SmtpServer, count: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while len(smtp.messages()) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(smtp.messages())


async def test_a_baresip_call_is_recorded_and_its_keys_arrive(runtime: Runtime, tmp_path: Path) -> None:
    speech = speech_like(3000, seed=5)
    sink = MemorySink()
    seen: dict[str, Any] = {}
    done = asyncio.Event()

    async def script(call: SipCall) -> None:
        try:
            await call.answer()
            seen["recording"] = await call.record(sink, max_seconds=20, silence_seconds=20, finish_on="#")
            seen["digits"] = await call.collect_digits(3, timeout=10, terminator="#")
            seen["caller"] = call.caller
        finally:
            done.set()

    async def router(invite: IncomingInvite) -> Route:
        return script

    server = await start_telephony(runtime, router)
    async with baresip_phone(tmp_path, np.concatenate([speech, silence(5000)])) as phone:
        await phone.dial(f"sip:{NUMBER}@127.0.0.1:{server.udp_port}")
        await phone.wait_event("CALL_ESTABLISHED", timeout=10)
        await asyncio.sleep(3.6)  # the speech, then a little of the silence after it
        await phone.send_digits("#")
        await asyncio.sleep(0.5)
        await phone.send_digits("42#")
        async with asyncio.timeout(15):
            await done.wait()
        await phone.wait_event("CALL_CLOSED", timeout=10)  # the script returned: hung up

    assert seen["recording"].ended_by is EndedBy.FINISH_KEY
    assert seen["digits"] == "42"
    result = compare(g711_roundtrip(Codec.PCMU, speech), sink.pcm)
    print(f"baresip → record: {result}, {len(sink.pcm) / 8000:.2f} s recorded")
    assert result.snr_db >= 30
    assert result.missing_head_ms == 0
    assert result.missing_tail_ms <= 20
    assert len(sink.pcm) >= len(speech)


async def test_a_baresip_call_to_a_number_leaves_a_message(tmp_path: Path) -> None:
    with smtp_server() as smtp:
        runtime = await started_runtime(tmp_path, smtp.url())  # SIP, the spool and email workers
        try:
            await _leave_message(runtime, smtp, tmp_path)
        finally:
            await runtime.stop()


async def _leave_message(runtime: Runtime, smtp: SmtpServer, tmp_path: Path) -> None:
    assert runtime.telephony is not None and runtime.telephony.udp_port is not None
    issued = await runtime.accounts.create_account("Acme Clinic")
    headers = {"Authorization": f"Bearer {issued.secret}"}
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://afterbeep.test/v1", headers=headers) as api:
        mailbox = await api.post("/mailboxes", json={"name": "Front desk", "notify_email": "desk@example.com"})
        assert mailbox.status_code == 201, mailbox.text
        box = mailbox.json()["id"]
        number = await api.post("/numbers", json={"e164": NUMBER, "dest_kind": "voicemail", "dest_id": box})
        assert number.status_code == 201, number.text

        speech = speech_like(3000, seed=9)
        spoken = write_wav(tmp_path / "speech.wav", np.concatenate([speech, silence(6000)]))
        spool = runtime.data_dir / "spool"
        async with baresip_phone(tmp_path, silence(30_000)) as phone:
            await phone.dial(f"sip:2025550100@127.0.0.1:{runtime.telephony.udp_port}")
            await phone.wait_event("CALL_ESTABLISHED", timeout=10)
            # Greeting, instructions, beep; then the recording fills the spool file (the
            # entry itself is created while the greeting plays).
            async with asyncio.timeout(20):
                while not any(p.stat().st_size for p in spool.glob("*.pcm")):  # noqa: ASYNC110 (no event to wait on)
                    await asyncio.sleep(0.05)
            await phone.set_source(spoken)  # the caller speaks after the beep
            await asyncio.sleep(5.0)  # 3 s of speech, and room for baresip to switch its source late
            await phone.send_digits("#")  # ends the message; "saved, goodbye", then the service hangs up
            await phone.wait_event("CALL_CLOSED", timeout=15)

        async with asyncio.timeout(20):
            while not (items := (await api.get(f"/mailboxes/{box}/messages")).json()["items"]):  # noqa: ASYNC110 (the spool worker stores it; no event to wait on)
                await asyncio.sleep(0.2)
        assert len(items) == 1
        message = items[0]
        audio = await api.get(f"/messages/{message['id']}/audio")
        assert audio.status_code == 200
        with wave.open(io.BytesIO(audio.content), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
            stored = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)

    result = compare(g711_roundtrip(Codec.PCMU, speech), stored)
    print(f"baresip → message: {result}, {len(stored) / 8000:.2f} s stored, caller {message['caller']}")
    assert result.snr_db >= 30
    assert result.missing_head_ms == 0
    assert result.missing_tail_ms <= 20
    assert await asyncio.to_thread(_wait_emails, smtp, 1) == 1
    attachments = list(smtp.messages()[0].message.iter_attachments())
    assert [a.get_content_type() for a in attachments] == ["audio/wav"]


# --- the fixture's ports --------------------------------------------------------------------


def held_socket(kind: str, port: int) -> socket.socket:
    """Another process's socket on `port`: a TCP listener, or a bound UDP socket."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    if kind != "udp":
        sock.listen()
    return sock


@pytest.mark.parametrize("taken", ["sip/udp", "sip/tls", "ctrl"])
async def test_a_phone_whose_port_is_taken_is_started_again_on_other_ports(
    tmp_path: Path, taken: str
) -> None:
    first = pick_ports()
    port = {"sip/udp": first.sip, "sip/tls": first.tls, "ctrl": first.ctrl}[taken]
    picks = iter([first])

    def ports() -> PhonePorts:
        return next(picks, None) or pick_ports()

    with held_socket("udp" if taken == "sip/udp" else "tcp", port):
        async with baresip_phone(tmp_path, silence(1000), ports=ports) as phone:
            assert phone.starts == 2 and port not in {p for _, p in phone.ports.bound()}
            about = await phone.command("about")  # the ctrl connection is our baresip's
            assert about["ok"] and "baresip" in about["data"]
    assert "Address already in use" in (tmp_path / "baresip-1.log").read_text(errors="replace")


def listening(pid: int) -> set[tuple[str, str, int]]:
    """(protocol, address, port) of the TCP listeners and UDP sockets of process `pid`."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = fd.readlink().name
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for proto in ("tcp", "udp", "tcp6", "udp6"):
        for line in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
            fields = line.split()
            address, port = fields[1].rsplit(":", 1)
            if fields[9] not in inodes or (proto.startswith("tcp") and fields[3] != "0A"):
                continue  # not this process's, or a TCP connection rather than a listener
            host = "127.0.0.1" if address == "0100007F" else "*" if set(address) == {"0"} else address
            found.add((proto.rstrip("6"), host, int(port, 16)))
    return found


async def test_baresip_binds_only_the_ports_the_fixture_gave_it(tmp_path: Path) -> None:
    async with baresip_phone(tmp_path, silence(1000)) as phone:
        sockets = listening(phone.process.pid)
    on_loopback = {(proto, port) for proto, host, port in sockets if host == "127.0.0.1"}
    assert on_loopback == phone.ports.bound(), sockets
    # The rest are its DNS client's sockets: UDP on the wildcard address, on ports the kernel
    # chose (bound to port 0), which no other process can hold.
    assert {(proto, host) for proto, host, _ in sockets if host != "127.0.0.1"} <= {("udp", "*")}
