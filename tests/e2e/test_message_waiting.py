"""Message-waiting lights against the real `afterbeep serve` (one instance for the module, MD5
digests for SIPp and baresip 1.0): SIPp subscribes, refreshes and unsubscribes (489, 423, the
challenge, 481 after the end); baresip, registered as the user and subscribed by its `mwi`
module, shows the right counts in its log after a deposit (stored by the post-call process),
after `PATCH read`, after `DELETE`, after a restart of the service and after the owner listens
to a message and deletes it in the phone menu (a SIPp call pressing RFC 4733 keys); a second
device of the same user that does not subscribe gets the same counts by unsolicited NOTIFYs, and
none when nothing changed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from aiosipua.message import SipResponse

from afterbeep.domain.mwi import WaitingCounts, parse_summary
from afterbeep.telephony.sip.auth import Credentials, DigestSession
from afterbeep.telephony.sip.message import parse_message
from tests.e2e.rig import (
    BEEP_S,
    DIALLED,
    NUMBER,
    SHORT_GREETING_S,
    Api,
    caller_pcap,
    rtp_range,
    short_greeting,
    silence,
    speech,
)
from tests.e2e.test_phone_menu import MENU_NUMBER, Owner, owner_sipp
from tests.fixtures import baresip as phone
from tests.fixtures.service import Service, free_port, free_sip_port, running_service
from tests.sip import conftest as sip_rig
from tests.sip.conftest import SCENARIOS, free_udp_port
from tests.sip.peer import RawPeer, header, status_of

sipp_bin = sip_rig.sipp_bin

pytestmark = [pytest.mark.timeout(600)]

PASSWORD = "correct-horse-battery-9"
WAIT = 30.0  # bound on waiting for the service or a phone; never a speed assertion
# The post-call process stores deposits at idle CPU priority: on a busy machine it starts late.
DEPOSIT_WAIT = 180.0
EXTENSION = "201"
PIN = "2580"
# The mailbox has a half-second greeting (rig's `short_greeting`): callers need not wait.
LEAD_MS = int((SHORT_GREETING_S + BEEP_S) * 1000) + 600


# --- the served instance -----------------------------------------------------------------------


@dataclass
class Served:
    """`afterbeep serve` on fixed ports (kept across `restart`) and one account's API."""

    data_dir: Path
    env: dict[str, str]
    service: Service | None = None
    headers: dict[str, str] = field(default_factory=dict)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def start(self) -> None:
        self.service = self._stack.enter_context(running_service(self.data_dir, self.env))

    def stop(self) -> None:
        self._stack.close()
        self.service = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def url(self) -> str:
        return f"http://{self.env['AFTERBEEP_HTTP_ADDR']}"

    @property
    def sip_port(self) -> int:
        return int(self.env["AFTERBEEP_SIP_ADDR"].rsplit(":", 1)[1])

    async def call(
        self, method: str, path: str, status: int, body: dict[str, Any] | None = None
    ) -> Any:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            response = await http.request(method, path, json=body, headers=self.headers)
        assert response.status_code == status, response.text
        return response.json() if response.content else None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    low, high = rtp_range()
    env = {
        "AFTERBEEP_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        "AFTERBEEP_SIP_ADDR": f"127.0.0.1:{free_sip_port()}",
        "AFTERBEEP_SIP_DIGEST_ALGORITHMS": "MD5",  # SIPp 3.6 and baresip 1.0 know only MD5
        "AFTERBEEP_RTP_PORT_MIN": str(low),
        "AFTERBEEP_RTP_PORT_MAX": str(high),
    }
    served = Served(tmp_path_factory.mktemp("mwi") / "var", env)
    served.start()
    try:
        assert served.service is not None
        created = json.loads(served.service.cli("account", "create", "Acme", "--json").stdout)
        served.headers = {"Authorization": f"Bearer {created['api_key']}"}
        yield served
    finally:
        served.stop()


async def user_with_mailbox(served: Served, extension: str, *devices: str) -> str:
    """A user `extension` whose mailbox is its own, with a device per auth username; the
    mailbox id."""
    mailbox = await served.call(
        "POST",
        "/v1/mailboxes",
        201,
        {"name": f"Ext {extension}", "min_message_seconds": 1, "skip_instructions": True},
    )
    user = await served.call(
        "POST", "/v1/users", 201, {"username": extension, "voicemail_id": mailbox["id"]}
    )
    for auth_username in devices:
        await served.call(
            "POST",
            "/v1/devices",
            201,
            {"user_id": user["id"], "auth_username": auth_username, "password": PASSWORD},
        )
    return str(mailbox["id"])


# --- SIPp --------------------------------------------------------------------------------------


def notifies(trace: str) -> list[str]:
    """The NOTIFY requests SIPp received, in order."""
    blocks = re.split(r"^-{10,}.*$", trace, flags=re.M)
    found = []
    for block in blocks:
        if "message received" not in block:
            continue
        text = block.split("\n\n", 1)[-1].lstrip()
        if text.startswith("NOTIFY "):
            found.append(text)
    return found


async def test_sipp_subscribes_refreshes_and_unsubscribes(
    served: Served, sipp_bin: str, tmp_path: Path
) -> None:
    await user_with_mailbox(served, "301", "sipp-301")
    result = await sip_rig.run_sipp(
        sipp_bin,
        "mwi_subscribe_uac.xml",
        tmp_path,
        remote=f"127.0.0.1:{served.sip_port}",
        local_port=free_udp_port(),
        extra=("-s", "sipp-301", "-au", "sipp-301", "-ap", PASSWORD),
        timeout=40,
    )
    assert result.returncode == 0, result.output + result.messages[-4000:]
    got = notifies(result.messages)
    assert len(got) == 3, result.messages[-4000:]
    for number, notify in enumerate(got, start=1):
        assert re.search(rf"^CSeq: {number} NOTIFY", notify, re.M), notify
        assert re.search(r"^Message-Account: sip:301@127\.0\.0\.1", notify, re.M), notify
        parsed = parse_summary(notify.split("\n\n", 1)[-1])
        assert parsed == (False, WaitingCounts()), notify
    assert "Subscription-State: active;expires=1" in got[0]  # 120 s, less the time gone
    assert "Subscription-State: active;expires=" in got[1]
    assert "Subscription-State: terminated" in got[2]


# --- a phone that does not subscribe -----------------------------------------------------------


class DeskPhone(RawPeer):
    """A raw UDP phone that answers every NOTIFY 200 and keeps their bodies."""

    def __init__(self) -> None:
        super().__init__()
        self.notified: list[WaitingCounts] = []
        self._seen: set[str] = set()
        self._notified = asyncio.Condition()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data.startswith(b"NOTIFY "):
            super().datagram_received(data, addr)
            return
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        kept = ("via", "from", "call-id", "cseq")
        keep = [line for line in lines[1:] if line.split(":", 1)[0].lower() in kept]
        to = next(line for line in lines if line.lower().startswith("to:"))
        answer = ["SIP/2.0 200 OK", *keep, f"{to};tag=desk", "Content-Length: 0", "", ""]
        assert self.transport is not None
        self.transport.sendto("\r\n".join(answer).encode(), addr)
        key = f"{header(data, 'Call-ID')}|{header(data, 'CSeq')}"
        if key in self._seen:  # a retransmission
            return
        self._seen.add(key)
        parsed = parse_summary(body.decode())
        assert parsed is not None, data
        assert header(data, "Event") == "message-summary"
        assert (header(data, "Subscription-State") or "").startswith("terminated")
        self.notified.append(parsed[1])
        asyncio.get_running_loop().create_task(self._tell())

    async def _tell(self) -> None:
        async with self._notified:
            self._notified.notify_all()

    async def wait_notified(self, count: int, wait: float = WAIT) -> list[WaitingCounts]:
        async with asyncio.timeout(wait), self._notified:
            await self._notified.wait_for(lambda: len(self.notified) >= count)
        return self.notified

    async def register(self, server_port: int, auth_username: str) -> None:
        call_id = secrets.token_hex(8) + "@127.0.0.1"
        contact = f"sip:{auth_username}@127.0.0.1:{self.port}"
        auth: list[tuple[str, str]] = []
        for cseq in (1, 2):
            branch = "z9hG4bK" + secrets.token_hex(8)
            lines = [
                f"REGISTER sip:127.0.0.1:{server_port} SIP/2.0",
                f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport",
                f"From: <sip:{auth_username}@127.0.0.1>;tag=desk{self.port}",
                f"To: <sip:{auth_username}@127.0.0.1>",
                f"Call-ID: {call_id}",
                f"CSeq: {cseq} REGISTER",
                f"Contact: <{contact}>",
                "Expires: 600",
                "Max-Forwards: 70",
                *(f"{name}: {value}" for name, value in auth),
                "Content-Length: 0",
                "",
                "",
            ]
            self.send("\r\n".join(lines).encode(), server_port)
            answer = await self.response(branch, timeout=5.0)
            if status_of(answer) == 200:
                return
            assert status_of(answer) == 401, answer
            challenge = parse_message(answer or b"")
            assert isinstance(challenge, SipResponse)
            found = DigestSession(Credentials(auth_username, PASSWORD)).answer(
                challenge, "REGISTER", f"sip:127.0.0.1:{server_port}"
            )
            assert found is not None
            auth = found
        raise AssertionError("not registered")


# --- baresip -----------------------------------------------------------------------------------


def summaries(log: Path) -> list[WaitingCounts]:
    """What baresip logged of each message-summary NOTIFY (`----- MWI for ... -----` and the
    body), in order."""
    text = log.read_text(errors="replace")
    found = []
    for part in text.split("----- MWI for ")[1:]:
        parsed = parse_summary(part.split("\n", 1)[-1].split("\n\n", 1)[0])
        if parsed is not None:
            found.append(parsed[1])
    return found


async def shows(
    bare: phone.Baresip, counts: WaitingCounts, after: int = 0, wait: float = WAIT
) -> int:
    """Wait (bounded) until baresip has logged more than `after` summaries, the last showing
    `counts`; how many it has logged then."""
    async with asyncio.timeout(wait):
        while True:
            found = await asyncio.to_thread(summaries, bare.log)
            if len(found) > after and found[-1] == counts:
                return len(found)
            await asyncio.sleep(0.1)


async def leave_message(served: Served, workdir: Path, seed: int) -> None:
    """A SIPp caller dials NUMBER, waits through the greeting and the beep, speaks, hangs up."""
    await asyncio.to_thread(caller_pcap, workdir, silence(LEAD_MS), speech(1.5, seed=seed))
    sipp = shutil.which("sipp")
    assert sipp is not None
    command = [
        sipp, f"127.0.0.1:{served.sip_port}", "-sf", str(SCENARIOS / "deposit_uac.xml"),
        "-s", DIALLED, "-m", "1", "-l", "1", "-t", "u1", "-i", "127.0.0.1",
        "-p", str(free_udp_port()), "-mp", str(free_udp_port()), "-d", str(LEAD_MS + 2000),
        "-timeout", "60s", "-timeout_error", "-nostdin",
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 0, out.decode(errors="replace")[-3000:]


@contextlib.asynccontextmanager
async def owner_on_the_menu(served: Served, workdir: Path) -> AsyncIterator[Owner]:
    """A SIPp owner calls the menu number (its RTP the `Owner` the block drives, keys by RFC
    4733); the call must end by the service's BYE once the block is done."""
    sipp = shutil.which("sipp")
    assert sipp is not None
    await asyncio.to_thread(workdir.mkdir)
    owner = await Owner.open()
    assert isinstance(owner, Owner)
    run = asyncio.ensure_future(owner_sipp(sipp, workdir, served.sip_port, owner.port))
    try:
        yield owner
        code, output = await asyncio.wait_for(run, WAIT)
        assert code == 0, output[-3000:]
    finally:
        run.cancel()
        owner.close()


async def test_baresip_and_a_desk_phone_show_the_counts_through_every_change(
    served: Served, tmp_path: Path
) -> None:
    mailbox_id = await user_with_mailbox(served, EXTENSION, "bare-201", "desk-201")
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        await short_greeting(Api(http, served.headers), mailbox_id)
    await served.call(
        "POST",
        "/v1/numbers",
        201,
        {"e164": NUMBER, "dest_kind": "voicemail", "dest_id": mailbox_id},
    )
    await served.call(
        "POST", "/v1/numbers", 201, {"e164": MENU_NUMBER, "dest_kind": "voicemail_main"}
    )
    await served.call("PUT", f"/v1/mailboxes/{mailbox_id}/pin", 204, {"pin": PIN})
    desk = DeskPhone()
    await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: desk, local_addr=("127.0.0.1", 0)
    )
    account = (
        f"<sip:bare-201@127.0.0.1:{served.sip_port};transport=udp>;auth_pass={PASSWORD};"
        "regint=600;audio_codecs=PCMU"
    )
    try:
        async with phone.baresip_phone(
            tmp_path, np.zeros(800, dtype=np.int16), extra_modules=("mwi",)
        ) as bare:
            await bare.command("uanew", account)
            # registered, subscribed: told the (empty) mailbox at once
            seen = await shows(bare, WaitingCounts(0, 0))
            # the desk phone registers and subscribes to nothing: told by an unsolicited NOTIFY
            await desk.register(served.sip_port, "desk-201")
            assert await desk.wait_notified(1) == [WaitingCounts(0, 0)]

            # a deposit (stored by the post-call process)
            await leave_message(served, tmp_path / "first", seed=3)
            seen = await shows(bare, WaitingCounts(1, 0), seen, DEPOSIT_WAIT)
            assert (await desk.wait_notified(2))[1] == WaitingCounts(1, 0)
            page = await served.call("GET", f"/v1/mailboxes/{mailbox_id}/messages", 200)
            [message] = page["items"]

            # PATCH read: 0 new, 1 old; the same PATCH again changes nothing and sends nothing
            await served.call("PATCH", f"/v1/messages/{message['id']}", 200, {"read": True})
            seen = await shows(bare, WaitingCounts(0, 1), seen)
            assert (await desk.wait_notified(3))[2] == WaitingCounts(0, 1)
            await served.call("PATCH", f"/v1/messages/{message['id']}", 200, {"read": True})

            # DELETE: empty again (the desk phone's next NOTIFY says so: no repeat of 0/1)
            await served.call("DELETE", f"/v1/messages/{message['id']}", 204)
            seen = await shows(bare, WaitingCounts(0, 0), seen)
            assert (await desk.wait_notified(4))[3] == WaitingCounts(0, 0)

            # another deposit, then a restart: both phones are told the counts again
            await leave_message(served, tmp_path / "second", seed=4)
            seen = await shows(bare, WaitingCounts(1, 0), seen, DEPOSIT_WAIT)
            assert (await desk.wait_notified(5))[4] == WaitingCounts(1, 0)
            await asyncio.to_thread(served.restart)
            # baresip in its subscription (kept in the database), the desk phone unsolicited
            seen = await shows(bare, WaitingCounts(1, 0), seen, DEPOSIT_WAIT)
            assert (await desk.wait_notified(6))[5] == WaitingCounts(1, 0)
            states = await asyncio.to_thread(summaries, bare.log)
            assert states[-2:] == [WaitingCounts(1, 0)] * 2  # told again after the restart

            # the owner calls the menu: 1 listens (read: 0 new, 1 old), 7 deletes, # hangs up;
            # the deletion applies when the call ends: empty again
            async with owner_on_the_menu(served, tmp_path / "menu") as owner:
                await owner.send(f"{EXTENSION}#{PIN}#", "1")
                seen = await shows(bare, WaitingCounts(0, 1), seen)
                await owner.send("7", "#")
            seen = await shows(bare, WaitingCounts(0, 0), seen)
            assert (await desk.wait_notified(8))[6:] == [WaitingCounts(0, 1), WaitingCounts(0, 0)]
            page = await served.call("GET", f"/v1/mailboxes/{mailbox_id}/messages", 200)
            assert page["items"] == []

            assert desk.notified == [
                WaitingCounts(0, 0),
                WaitingCounts(1, 0),
                WaitingCounts(0, 1),
                WaitingCounts(0, 0),
                WaitingCounts(1, 0),
                WaitingCounts(1, 0),
                WaitingCounts(0, 1),
                WaitingCounts(0, 0),
            ]
            # baresip saw each state in order (the first maybe twice: REGISTER and SUBSCRIBE)
            states = await asyncio.to_thread(summaries, bare.log)
            distinct = [c for i, c in enumerate(states) if i == 0 or c != states[i - 1]]
            assert distinct == [
                WaitingCounts(0, 0),
                WaitingCounts(1, 0),
                WaitingCounts(0, 1),
                WaitingCounts(0, 0),
                WaitingCounts(1, 0),
                WaitingCounts(0, 1),
                WaitingCounts(0, 0),
            ]
            assert states.count(WaitingCounts(0, 1)) == 2  # the second PATCH sent nothing
    finally:
        desk.close()
