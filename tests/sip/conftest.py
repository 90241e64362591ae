"""SIPp runner and a tiny test UAS built on afterbeep.telephony.sip.ua (127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from afterbeep.telephony.sip.transaction import TimerConfig
from afterbeep.telephony.sip.ua import Dialog, IncomingInvite, UAConfig, UserAgent

SCENARIOS = Path(__file__).resolve().parent.parent / "sipp"
CANNED_SDP = (
    b"v=0\r\no=afterbeep 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\na=ptime:20\r\n"
)


def _ensure_sipp() -> str:
    path = shutil.which("sipp")
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, timeout=300)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "sip-tester"], check=False, env=env, timeout=300
        )
        path = shutil.which("sipp")
    if path is None:
        pytest.fail("sipp is required (Debian package sip-tester) and could not be installed")
    return path


@pytest.fixture(scope="session")
def sipp_bin() -> str:
    return _ensure_sipp()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def udp_bound(port: int) -> bool:
    """Whether a socket is bound to UDP `port`, read from /proc/net/udp: a probe that binds the
    port itself could take it from the process about to bind it."""
    suffix = f":{port:04X}"
    with open("/proc/net/udp") as table:
        next(table)
        return any(line.split()[1].endswith(suffix) for line in table)


async def wait_udp_bound(port: int, within: float = 10.0) -> None:
    """Until a process (SIPp, which signals readiness only by its socket) has bound `port`."""
    async with asyncio.timeout(within):
        while not udp_bound(port):  # noqa: ASYNC110
            await asyncio.sleep(0.02)


@dataclass
class SippResult:
    returncode: int
    output: str
    messages: str

    def to_tags(self) -> set[str]:
        """Every To tag seen in the SIPp message trace (sent and received)."""
        return set(re.findall(r"^To:[^\r\n]*?;tag=([^;>\s]+)", self.messages, flags=re.M))

    def first_lines(self) -> list[str]:
        """Start lines of the messages SIPp received, in order."""
        blocks = re.split(r"^-{10,}.*$", self.messages, flags=re.M)
        lines = []
        for block in blocks:
            m = re.search(r"message received \[\d+\] bytes :\s*\n\s*\n([^\r\n]+)", block)
            if m:
                lines.append(m.group(1).strip())
        return lines


async def run_sipp(
    sipp: str,
    scenario: str,
    tmp_path: Path,
    *,
    remote: str | None,
    transport: str = "u1",
    local_port: int | None = None,
    timeout: float = 20.0,
    extra: tuple[str, ...] = (),
) -> SippResult:
    """Run one SIPp call (-m 1) bounded by -timeout and by asyncio.wait_for."""
    trace = tmp_path / f"{Path(scenario).stem}_messages.log"
    cmd = [sipp]
    if remote is not None:
        cmd.append(remote)
    cmd += [
        "-sf",
        str(SCENARIOS / scenario),
        "-m",
        "1",
        "-t",
        transport,
        "-i",
        "127.0.0.1",
        "-timeout",
        f"{int(timeout)}s",
        "-timeout_error",
        "-recv_timeout",
        "8000",
        "-nostdin",
        "-trace_msg",
        "-message_file",
        str(trace),
        "-trace_err",
        "-error_file",
        str(tmp_path / "sipp_errors.log"),
        *extra,
    ]
    if local_port is not None:
        cmd += ["-p", str(local_port)]
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout + 10)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    messages = trace.read_text(errors="replace") if trace.exists() else ""
    errors = tmp_path / "sipp_errors.log"
    text = out.decode(errors="replace")
    if errors.exists():
        text += "\n" + errors.read_text(errors="replace")
    return SippResult(proc.returncode if proc.returncode is not None else -1, text, messages)


@dataclass
class CannedUas:
    """Answers every INVITE with CANNED_SDP after ``answer_delay`` (None: never answers)."""

    ua: UserAgent
    answer_delay: float | None = 0.0
    ring: bool = True
    invites: list[IncomingInvite] = field(default_factory=list)
    dialogs: list[Dialog] = field(default_factory=list)
    late_accepts: list[Dialog | None] = field(default_factory=list)

    def on_invite(self, invite: IncomingInvite) -> None:
        self.invites.append(invite)
        if self.ring:
            invite.ringing()
        if self.answer_delay is None:
            return
        if self.answer_delay == 0:
            self._accept(invite)
        else:
            asyncio.get_running_loop().call_later(self.answer_delay, self._accept, invite)

    def _accept(self, invite: IncomingInvite) -> None:
        dialog = invite.accept(CANNED_SDP)
        if dialog is not None:
            self.dialogs.append(dialog)


def make_config(*, t1: float = 0.5, tcp: bool = False) -> UAConfig:
    return UAConfig(
        advertise="127.0.0.1",
        listen_udp="127.0.0.1:0",
        listen_tcp="127.0.0.1:0" if tcp else None,
        timers=TimerConfig(t1=t1, t2=min(4.0, 8 * t1), t4=min(5.0, 10 * t1)),
        user_agent="afterbeep-test",
    )


@pytest.fixture
async def uas() -> AsyncIterator[CannedUas]:
    ua = UserAgent(make_config(tcp=True))
    app = CannedUas(ua)
    ua.on_invite = app.on_invite
    await ua.start()
    try:
        yield app
    finally:
        await ua.close()


def received_count(messages: str, start: str, cseq_method: str) -> int:
    """How many messages SIPp received whose start line begins with ``start``, for one method."""
    count = 0
    for block in re.split(r"^-{10,}.*$", messages, flags=re.M):
        if "message received" not in block:
            continue
        body = block.split("bytes :", 1)[-1].lstrip()
        if body.startswith(start) and re.search(rf"^CSeq:\s*\d+ {cseq_method}\s*$", body, re.M):
            count += 1
    return count
