"""Ring groups and queues over real SIP against the real service: SIPp and Python callers dial a
number, phones registered by digest (Python phones that ring and never answer) are rung by the
service's SipRinger, and what nobody picks up ends in the overflow mailboxes with the caller's
audio. The order phones are rung in is read from when each got its INVITE and its CANCEL."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from afterbeep.app import Runtime
from afterbeep.audio.compare import compare
from afterbeep.telephony.server import TelephonyServer, telephony_configs
from tests.conftest import Backend
from tests.e2e.rig import (
    BEEP_S,
    CALLER,
    DIALLED,
    NUMBER,
    SHORT_GREETING_S,
    Api,
    api_of,
    caller_pcap,
    deposit_runtime,
    rtp_range,
    sent,
    settle,
    short_greeting,
    silence,
    sip_port,
    sipp_calls,
    speech,
)
from tests.e2e.test_registration import PASSWORD, WAIT, Phone
from tests.sip import conftest as sip_rig
from tests.sip.peer import RawPeer, status_of

sipp_bin = sip_rig.sipp_bin

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True),
]

_KEPT = re.compile(rb"^(via|v|from|f|to|t|call-id|i|cseq):", re.I)


def _reply(request: bytes, code: int, reason: str, cseq: bytes | None = None) -> bytes:
    lines = []
    for line in request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        if not _KEPT.match(line):
            continue
        if re.match(rb"^(to|t):", line, re.I) and b";tag=" not in line:
            line += b";tag=ringing-phone"
        if cseq is not None and re.match(rb"^cseq:", line, re.I):
            line = b"CSeq: " + cseq
        lines.append(line)
    head = f"SIP/2.0 {code} {reason}".encode()
    return b"\r\n".join([head, *lines, b"Content-Length: 0", b"", b""])


def _answer(invite: bytes, port: int) -> bytes:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port + 1} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    ).encode()
    head = _reply(invite, 200, "OK").removesuffix(b"Content-Length: 0\r\n\r\n")
    return (
        head
        + (
            f"Contact: <sip:phone@127.0.0.1:{port}>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(sdp)}\r\n\r\n"
        ).encode()
        + sdp
    )


def _call_id(data: bytes) -> bytes:
    found = re.search(rb"^(?:call-id|i):\s*(\S+)", data, re.I | re.M)
    return found.group(1) if found else b""


@dataclass
class RingingPhone(RawPeer):
    """A phone that rings (180) on every INVITE and never answers; a CANCEL ends the ring
    (200, then 487). Keeps when each INVITE and CANCEL arrived (event loop time)."""

    invites: list[float] = field(default_factory=list)
    answer: bool = False  # answer every INVITE (200 with an SDP for PCMU), BYE answered 200
    answered: list[float] = field(default_factory=list)  # when our 200 was ACKed
    cancels: list[float] = field(default_factory=list)
    _pending: dict[bytes, bytes] = field(default_factory=dict)
    _sip_port: int = 0

    def __post_init__(self) -> None:
        RawPeer.__init__(self)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = asyncio.get_running_loop().time()
        if data.startswith(b"INVITE "):
            if _call_id(data) not in self._pending:
                self.invites.append(now)
                self._pending[_call_id(data)] = data
            self.transport_send(_reply(data, 180, "Ringing"), addr)
            if self.answer:
                self.transport_send(_answer(data, self.port), addr)
            return
        if data.startswith(b"CANCEL "):
            self.cancels.append(now)
            self.transport_send(_reply(data, 200, "OK"), addr)
            invite = self._pending.get(_call_id(data))
            if invite is not None:
                self.transport_send(_reply(invite, 487, "Request Terminated"), addr)
            return
        if data.startswith(b"ACK "):
            if self.answer:
                self.answered.append(now)
            return
        if data.startswith(b"BYE "):
            self.transport_send(_reply(data, 200, "OK"), addr)
            return
        super().datagram_received(data, addr)

    def transport_send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    @property
    def ringing(self) -> bool:
        return len(self.invites) > len(self.cancels)


async def ringing_phone() -> RingingPhone:
    loop = asyncio.get_running_loop()
    _, phone = await loop.create_datagram_endpoint(RingingPhone, local_addr=("127.0.0.1", 0))
    return phone


async def person(
    api: Api, rt: Runtime, extension: str, *, agent: bool = False
) -> tuple[str, RingingPhone]:
    """A user with one device, registered from a RingingPhone."""
    user = await api.post("/v1/users", {"username": extension, "is_agent": agent})
    name = f"desk-{extension}"
    await api.post(
        "/v1/devices", {"user_id": user["id"], "auth_username": name, "password": PASSWORD}
    )
    phone = await ringing_phone()
    registering = Phone(phone, sip_port(rt), name)
    assert status_of(await registering.register(f"Contact: <{registering.contact}>")) == 200
    return user["id"], phone


async def until(check: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    async with asyncio.timeout(WAIT):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(0.05)


# The mailboxes here have a half-second greeting (`mailbox()`): a caller speaks 0.85 s after
# the mailbox answers.
LEAD_MS = int((SHORT_GREETING_S + BEEP_S) * 1000) + 600


async def leave_message(
    sipp: str, cwd: Path, rt: Runtime, api: Api, box: str, count: int, wait_ms: int = 0
) -> None:
    """A SIPp caller dials NUMBER, hears nothing for `wait_ms` (ringing, or queue music), then
    speaks after the mailbox's beep: its words must be the `count`th message in `box`."""
    lead = wait_ms + LEAD_MS
    words = speech(1.5, seed=count)
    caller_pcap(cwd, silence(lead), words)
    run = await sipp_calls(sipp, "deposit_uac.xml", cwd, sip_port(rt), hold_ms=lead + 2500)
    assert run.returncode == 0, run.output
    found = await api.wait_messages(box, count)
    newest = max(found, key=lambda m: str(m["created_at"]))
    heard = compare(sent(words), await api.audio(newest["id"]))
    print(f"message vs the caller's words: {heard}")
    assert heard.snr_db >= 30, heard


async def mailbox(api: Api, name: str) -> str:
    box = await api.post(
        "/v1/mailboxes", {"name": name, "min_message_seconds": 1, "skip_instructions": True}
    )
    await short_greeting(api, box["id"])
    return str(box["id"])


async def test_ring_groups_sequential_and_ring_all_then_the_exit_mailbox(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    async with deposit_runtime(backend) as rt, api_of(rt) as api:
        box = await mailbox(api, "Sales overflow")
        first_id, first = await person(api, rt, "201")
        second_id, second = await person(api, rt, "202")
        try:
            members = [
                {"user_id": first_id, "position": 1, "timeout_sec": 2},
                {"user_id": second_id, "position": 2, "timeout_sec": 2},
            ]
            group = await api.post(
                "/v1/ring-groups",
                {
                    "name": "Sales", "strategy": "sequential", "ring_timeout_sec": 2,
                    "members": members, "exit_dest_kind": "voicemail", "exit_dest_id": box,
                },
            )  # fmt: skip
            await api.post(
                "/v1/numbers", {"e164": NUMBER, "dest_kind": "ring_group", "dest_id": group["id"]}
            )
            await leave_message(sipp_bin, tmp_path / "sequential", rt, api, box, 1)
            # in order: the second phone rang only once the first one's ring was cancelled
            assert len(first.invites) == len(first.cancels) == 1
            assert len(second.invites) == len(second.cancels) == 1
            assert first.invites[0] < first.cancels[0] <= second.invites[0] < second.cancels[0]

            patched = await api.http.patch(
                f"/v1/ring-groups/{group['id']}",
                json={"strategy": "ring_all", "ring_timeout_sec": 3},
                headers=api.headers,
            )
            assert patched.status_code == 200, patched.text
            await leave_message(sipp_bin, tmp_path / "ring-all", rt, api, box, 2)
            # all at once: both rang before either was cancelled
            assert len(first.invites) == len(second.invites) == 2
            assert max(first.invites[1], second.invites[1]) < min(
                first.cancels[1], second.cancels[1]
            )
            await settle(rt)
        finally:
            first.close()
            second.close()
        assert rt.telephony is not None and rt.telephony.stats.handler_errors == 0


async def stats(api: Api, queue_id: str) -> dict[str, Any]:
    response = await api.http.get(f"/v1/queues/{queue_id}/stats", headers=api.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def set_status(api: Api, user_id: str, status: str) -> None:
    response = await api.http.patch(
        f"/v1/agents/{user_id}", json={"status": status}, headers=api.headers
    )
    assert response.status_code == 200, response.text


async def test_a_queue_offers_to_one_agent_then_the_next_and_overflows_to_its_mailboxes(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    async with deposit_runtime(backend) as rt, api_of(rt) as api:
        timeout_box = await mailbox(api, "Waited too long")
        no_agents_box = await mailbox(api, "Nobody there")
        ada_id, ada = await person(api, rt, "301", agent=True)
        bob_id, bob = await person(api, rt, "302", agent=True)
        try:
            listed = await api.http.get("/v1/agents", headers=api.headers)
            assert {a["user_id"] for a in listed.json()["items"]} == {ada_id, bob_id}
            queue = await api.post(
                "/v1/queues",
                {
                    "name": "Support", "strategy": "longest_idle", "agent_ring_timeout_sec": 2,
                    "max_wait_sec": 5, "wrap_up_sec": 0, "max_no_answer": 10,
                    "members": [{"user_id": ada_id}, {"user_id": bob_id}],
                    "timeout_dest_kind": "voicemail", "timeout_dest_id": timeout_box,
                    "no_agents_dest_kind": "voicemail", "no_agents_dest_id": no_agents_box,
                },
            )  # fmt: skip
            await api.post(
                "/v1/numbers", {"e164": NUMBER, "dest_kind": "queue", "dest_id": queue["id"]}
            )

            # nobody logged in: the no_agents mailbox at once, no phone rung
            await leave_message(sipp_bin, tmp_path / "no-agents", rt, api, no_agents_box, 1)
            assert ada.invites == [] and bob.invites == []

            # both available, neither answers: offered to one, then the other, then max_wait
            await set_status(api, bob_id, "available")  # idle longest: offered first
            await set_status(api, ada_id, "available")
            await leave_message(
                sipp_bin, tmp_path / "timeout", rt, api, timeout_box, 1, wait_ms=5000
            )
            rings = sorted([(t, "ada") for t in ada.invites] + [(t, "bob") for t in bob.invites])
            assert len(rings) >= 2, rings
            assert [who for _, who in rings[:2]] == ["bob", "ada"], rings  # then the next agent
            for phone in (ada, bob):  # every offer ended with a CANCEL: nothing rings now
                assert not phone.ringing
            body = await stats(api, queue["id"])
            assert body["waiting"] == 0, body

            # the caller hangs up while an agent's phone rings: abandoned, nothing left behind
            rung = len(ada.invites) + len(bob.invites)
            await hang_up_while_waiting(rt, lambda: len(ada.invites) + len(bob.invites) > rung)
            await until(lambda: not ada.ringing and not bob.ringing, "offers cancelled")
            body = await stats(api, queue["id"])
            assert body["waiting"] == 0 and body["abandoned"] == 1, body

            # ada answers a call; a second call right after it goes to bob, not to ada in wrap-up
            patched = await api.http.patch(
                f"/v1/queues/{queue['id']}", json={"wrap_up_sec": 30}, headers=api.headers
            )
            assert patched.status_code == 200, patched.text
            for agent in (ada_id, bob_id):  # back from any break the missed offers caused
                await set_status(api, agent, "available")
            ada.answer = True
            await until(lambda: not bob.ringing, "idle")
            await hang_up_while_waiting(rt, lambda: bool(ada.answered))
            rung = len(ada.invites), len(bob.invites)
            await hang_up_while_waiting(rt, lambda: len(bob.invites) > rung[1])
            assert len(ada.invites) == rung[0]  # ada was in wrap-up: not offered
            agents = await api.http.get(f"/v1/agents/{ada_id}", headers=api.headers)
            assert agents.json()["state"] == "wrap_up", agents.text
            await settle(rt)
        finally:
            ada.close()
            bob.close()
        assert rt.telephony is not None and rt.telephony.stats.handler_errors == 0


async def hang_up_while_waiting(rt: Runtime, offered: Callable[[], bool]) -> None:
    """A Python caller dials NUMBER, is answered by the queue, hangs up once `offered()`."""
    low, high = rtp_range()
    ua_config, media_config = telephony_configs("127.0.0.1:0", None, low, high)
    async with TelephonyServer(ua_config, media_config) as phone:
        outbound = await phone.dial(
            f"sip:{DIALLED}@127.0.0.1:{sip_port(rt)}", f"sip:{CALLER}@127.0.0.1", timeout=10
        )
        call = await outbound.wait_answered()
        try:
            await until(offered, "an agent's phone rings")
        finally:
            await call.hangup()
