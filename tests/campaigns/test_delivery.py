"""A campaign of 200 recipients delivered by the real engine against local callees.

Runtime A runs its delivery worker and SIP stack; its use case deposits over SIP into a SIPp
UAS on 127.0.0.1 (`uas_deposit.xml`: answers and takes the audio, or 486 for +1202555099X),
whose RTP goes to a counter here. Some recipients are numbers of A routed to a mailbox (local
deposit, no call) and some are suppressed (skipped, no call). The campaign is created from a CSV
through the API and followed through the API until it completes; then every send must be in a
final state, the counts must add up, and each callee must have received the whole recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from afterbeep.app import Runtime
from afterbeep.domain.ringless import FINAL_STATUSES
from tests.conftest import Backend, make_settings
from tests.e2e.rig import Api, api_of
from tests.ringless.support import audio as mp3
from tests.ringless.test_delivery import SQLITE
from tests.sip.conftest import free_udp_port, sipp_bin

__all__ = ["sipp_bin"]  # the session fixture, used by name

pytestmark = pytest.mark.timeout(240)

UAS = Path(__file__).resolve().parent / "uas_deposit.xml"
SENDER = "+12025550177"
AUDIO_S = 10.5
CAMPAIGN_WAIT = 150.0  # a bound on the whole delivery, never a speed assertion

ANSWERED = [f"+1202555{n:04d}" for n in range(2000, 2120)]  # SIP deposit, answered
BUSY = [f"+1202555{n:04d}" for n in range(990, 1000)]  # SIP deposit, 486
LOCAL = [f"+1202555{n:04d}" for n in range(3000, 3040)]  # numbers of A: local deposit
SUPPRESSED = [f"+1202555{n:04d}" for n in range(4000, 4030)]  # skipped, no call


class RtpCounter(asyncio.DatagramProtocol):
    """Counts the RTP packets reaching its port, per SSRC (one SSRC per deposit call)."""

    def __init__(self) -> None:
        self.packets: Counter[bytes] = Counter()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if len(data) >= 12 and data[0] >> 6 == 2 and not 192 <= data[1] <= 223:  # RTP, not RTCP
            self.packets[data[8:12]] += 1


@contextlib.asynccontextmanager
async def rtp_counter() -> AsyncIterator[tuple[RtpCounter, int]]:
    loop = asyncio.get_running_loop()
    transport, counter = await loop.create_datagram_endpoint(
        RtpCounter, local_addr=("127.0.0.1", 0)
    )
    try:
        yield counter, int(transport.get_extra_info("sockname")[1])
    finally:
        transport.close()


@contextlib.asynccontextmanager
async def sipp_callee(
    sipp: str, cwd: Path, rtp_port: int, calls: int
) -> AsyncIterator[tuple[int, asyncio.subprocess.Process]]:
    """SIPp as the deposit callee; it exits on its own after `calls` calls."""
    port = free_udp_port()
    proc = await asyncio.create_subprocess_exec(
        sipp,
        "-sf", str(UAS),
        "-t", "u1",
        "-i", "127.0.0.1",
        "-p", str(port),
        "-m", str(calls),
        "-l", "1000",
        "-key", "rtp_port", str(rtp_port),
        "-timeout", f"{int(CAMPAIGN_WAIT + 30)}s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-error_file", str(cwd / "sipp_errors.log"),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with asyncio.timeout(5):
            while not _bound(port):  # noqa: ASYNC110 (SIPp signals readiness only by its socket)
                await asyncio.sleep(0.02)
        yield port, proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@contextlib.asynccontextmanager
async def sender_runtime(backend: Backend) -> AsyncIterator[Runtime]:
    base = random.randrange(20000, 29600, 400)  # below the kernel's ephemeral ports
    settings = make_settings(
        backend,
        sip_addr="127.0.0.1:0",
        rtp_port_min=base,
        rtp_port_max=base + 399,
        smtp_url="smtp://127.0.0.1:9",
        delivery_batch_size=200,
    )
    rt = Runtime(settings)
    await rt.start(workers=True)
    try:
        yield rt
    finally:
        await rt.stop()


async def deposit_use_case(api: Api, sip_port: int) -> str:
    setup = await api.post(
        "/v1/telephony-setups",
        {
            "name": "test callees",
            "trunk_host": "127.0.0.1",
            "trunk_port": sip_port,
            "transport": "udp",
            "max_calls_per_second": 100,
            "max_concurrent_calls": 80,
            "numbers": [{"e164": SENDER}],
            "deposit_uri": f"sip:{{to}}@127.0.0.1:{sip_port}",
        },
    )
    await api.verify_sender(SENDER)
    use_case = await api.post(
        "/v1/use-cases",
        {
            "channel": "ringless_voicemail",
            "name": "campaign",
            "setup_id": setup["id"],
            "sender_selection": "fixed",
            "sender_number": SENDER,
            "require_consent": False,
            "calling_window": {"start": "00:00", "end": "00:00"},
            "max_attempts": 1,
        },
    )
    return str(use_case["id"])


async def all_sends(api: Api, campaign_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"campaign_id": campaign_id, "limit": 200}
    while True:
        r = await api.http.get("/v1/voicemails", params=params, headers=api.headers)
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        if not r.json()["next_cursor"]:
            return items
        params["cursor"] = r.json()["next_cursor"]


@SQLITE
async def test_a_campaign_of_200_recipients_finishes_with_counts_adding_up(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    recipients = ANSWERED + BUSY + LOCAL + SUPPRESSED
    assert len(set(recipients)) == 200
    random.Random(6).shuffle(recipients)
    calls = len(ANSWERED) + len(BUSY)
    async with (
        rtp_counter() as (rtp, rtp_port),
        sipp_callee(sipp_bin, tmp_path, rtp_port, calls) as (sip_port, sipp),
        sender_runtime(backend) as rt,
        api_of(rt) as api,
    ):
        use_case_id = await deposit_use_case(api, sip_port)
        mailbox = await api.post("/v1/mailboxes", {"name": "Desk", "min_message_seconds": 1})
        for number in LOCAL:
            await api.post(
                "/v1/numbers", {"e164": number, "dest_kind": "voicemail", "dest_id": mailbox["id"]}
            )
        for number in SUPPRESSED:
            await api.post("/v1/suppressions", {"e164": number, "reason": "opt-out"})
        media = await api.http.post(
            "/v1/media",
            files={"file": ("campaign.mp3", mp3(AUDIO_S), "audio/mpeg")},
            headers=api.headers,
        )
        assert media.status_code == 201, media.text
        duration_ms = media.json()["duration_ms"]

        csv = "name,to\n" + "".join(f"r{i},{n}\n" for i, n in enumerate(recipients))
        created = await api.http.post(
            "/v1/campaigns",
            files={"recipients": ("numbers.csv", csv.encode(), "text/csv")},
            data={"use_case_id": use_case_id, "media_id": media.json()["id"], "name": "200"},
            headers=api.headers,
        )
        assert created.status_code == 201, created.text
        campaign_id = created.json()["id"]
        assert created.json()["recipients_total"] == 200

        seen_statuses = set()
        async with asyncio.timeout(CAMPAIGN_WAIT):
            while True:
                r = await api.http.get(f"/v1/campaigns/{campaign_id}", headers=api.headers)
                campaign = r.json()
                assert sum(campaign["progress"].values()) == 200, campaign
                seen_statuses.add(campaign["status"])
                if campaign["status"] == "completed":
                    break
                await asyncio.sleep(0.5)
        assert seen_statuses <= {"running", "completed"}

        assert campaign["recipients_total"] == campaign["recipients_finished"] == 200
        assert campaign["progress"] == {
            "accepted": 0,
            "paused": 0,
            "delivered": len(ANSWERED) + len(LOCAL),
            "failed": len(BUSY),
            "skipped": len(SUPPRESSED),
        }
        sends = await all_sends(api, campaign_id)
        assert len(sends) == 200 and {s["to"] for s in sends} == set(recipients)
        assert all(s["status"] in FINAL_STATUSES for s in sends)
        outcome = {
            s["to"]: (s["status"], s["method"], s["failure_reason"] or s["skip_reason"])
            for s in sends
        }
        for number in ANSWERED:
            assert outcome[number] == ("delivered", "sip_deposit", None), number
        for number in LOCAL:
            assert outcome[number] == ("delivered", "local_deposit", None), number
        for number in BUSY:
            assert outcome[number] == ("failed", "sip_deposit", "486 Busy Here"), number
        for number in SUPPRESSED:
            assert outcome[number] == ("skipped", None, "suppressed"), number

        messages = await api.wait_messages(mailbox["id"], len(LOCAL))
        assert sorted(m["callee"] for m in messages) == sorted(LOCAL)

        async with asyncio.timeout(30):
            out, _ = await sipp.communicate()
        assert sipp.returncode == 0, out.decode(errors="replace")[-3000:]
        # Every answered callee received the whole recording (20 ms packets), each call once.
        assert len(rtp.packets) == len(ANSWERED), len(rtp.packets)
        expected = duration_ms // 20
        short = {ssrc.hex(): n for ssrc, n in rtp.packets.items() if n < expected * 0.95}
        assert not short, (expected, short)
