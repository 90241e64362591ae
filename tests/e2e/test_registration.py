"""Phones registering with the real service over UDP: a Python phone doing the digest itself
(SHA-256, and MD5 when it offers only that), SIPp's `[authentication]` (MD5), baresip.
Digest challenge, contacts stored, re-register, Expires bounds, removal (Expires: 0,
Contact: *), expired contacts reaped, and 20 bad passwords locking the username out until
the lockout ends."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiosipua.message import SipResponse

from afterbeep.app import Runtime
from afterbeep.telephony.directory import RegistrationDirectory
from afterbeep.telephony.sip.auth import Credentials, DigestSession
from afterbeep.telephony.sip.message import parse_message
from tests.conftest import Backend
from tests.e2e.rig import Api, api_of, deposit_runtime, sip_port
from tests.fixtures import baresip as phone
from tests.sip import conftest as sip_rig
from tests.sip.peer import RawPeer, header, status_of

sipp_bin = sip_rig.sipp_bin

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True),
]

PASSWORD = "correct-horse-battery-9"
LOCKOUT_S = 2.0
WAIT = 20.0  # bound on waiting for the service; never a speed assertion
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


@pytest.fixture
async def rt(backend: Backend) -> AsyncIterator[Runtime]:
    async with deposit_runtime(
        backend,
        sip_min_expires=2,
        sip_reap_seconds=0.2,
        sip_auth_lockout_seconds=LOCKOUT_S,
    ) as runtime:
        yield runtime


@pytest.fixture
async def api(rt: Runtime) -> AsyncIterator[Api]:
    async with api_of(rt) as found:
        yield found


async def make_device(api: Api, extension: str, auth_username: str) -> tuple[str, str]:
    user = await api.post("/v1/users", {"username": extension})
    device = await api.post(
        "/v1/devices", {"user_id": user["id"], "auth_username": auth_username, "password": PASSWORD}
    )
    return user["id"], device["id"]


async def registrations(api: Api, user_id: str) -> list[dict[str, Any]]:
    response = await api.http.get(f"/v1/users/{user_id}/registrations", headers=api.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@dataclass
class Phone:
    """A phone over a raw UDP socket that answers the registrar's challenges itself."""

    peer: RawPeer
    server_port: int
    auth_username: str
    call_id: str = ""
    cseq: int = 0

    def __post_init__(self) -> None:
        self.call_id = secrets.token_hex(8) + "@127.0.0.1"

    @property
    def contact(self) -> str:
        return f"sip:{self.auth_username}@127.0.0.1:{self.peer.port}"

    async def send(self, extra: list[str], auth: Sequence[tuple[str, str]] = ()) -> bytes:
        self.cseq += 1
        branch = "z9hG4bK" + secrets.token_hex(8)
        lines = [
            f"REGISTER sip:127.0.0.1:{self.server_port} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.peer.port};branch={branch};rport",
            f"From: <sip:{self.auth_username}@127.0.0.1>;tag=ph{self.peer.port}",
            f"To: <sip:{self.auth_username}@127.0.0.1>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            "Max-Forwards: 70",
            "User-Agent: afterbeep-test-phone",
            *extra,
            *(f"{name}: {value}" for name, value in auth),
            "Content-Length: 0",
            "",
            "",
        ]
        self.peer.send("\r\n".join(lines).encode(), self.server_port)
        answer = await self.peer.response(branch, timeout=5.0)
        assert answer is not None, "no answer to REGISTER"
        return answer

    async def register(
        self,
        *headers: str,
        password: str = PASSWORD,
        only: str | None = None,
    ) -> bytes:
        """REGISTER with `headers`; a 401 is answered once with the digest (`only`: keep just
        the challenge of that algorithm, as a phone that knows no other would)."""
        first = await self.send(list(headers))
        if status_of(first) != 401:
            return first
        challenge = parse_message(first)
        assert isinstance(challenge, SipResponse)
        if only is not None:
            kept = [v for v in challenge.headers.get("www-authenticate") if f"algorithm={only}" in v]
            challenge.headers.remove("www-authenticate")
            for value in kept:
                challenge.headers.append("WWW-Authenticate", value)
        session = DigestSession(Credentials(self.auth_username, password))
        auth = session.answer(challenge, "REGISTER", f"sip:127.0.0.1:{self.server_port}")
        assert auth is not None
        return await self.send(list(headers), auth)


async def test_a_phone_registers_with_sha256_and_md5_and_unregisters(rt: Runtime, api: Api) -> None:
    user_id, device_id = await make_device(api, "201", "desk-201")
    peer = await RawPeer.open()
    try:
        ph = Phone(peer, sip_port(rt), "desk-201")
        challenged = await ph.send([f"Contact: <{ph.contact}>", "Expires: 120"])
        assert status_of(challenged) == 401
        offered = [
            line for line in challenged.decode().split("\r\n") if line.lower().startswith("www-authenticate")
        ]
        assert len(offered) == 2 and "algorithm=SHA-256" in offered[0] and "algorithm=MD5" in offered[1]
        assert all('qop="auth"' in line and 'realm="afterbeep"' in line for line in offered)
        assert await registrations(api, user_id) == []

        path = "<sip:edge.example;lr>"
        ok = await ph.register(f"Contact: <{ph.contact}>", "Expires: 120", f"Path: {path}")
        assert status_of(ok) == 200, ok.decode()
        assert f"<{ph.contact}>;expires=120" in (header(ok, "Contact") or "")
        [found] = await registrations(api, user_id)
        assert found["contact"] == ph.contact and found["device_id"] == device_id
        assert found["source"] == f"127.0.0.1:{peer.port}" and found["transport"] == "udp"
        assert found["path"] == [path] and found["user_agent"] == "afterbeep-test-phone"

        # re-register: the same contact refreshed (asked 7200: clamped to 3600), not doubled;
        # a second contact by MD5 (a phone that knows only MD5)
        first_expiry = found["expires_at"]
        ok = await ph.register(f"Contact: <{ph.contact}>", "Expires: 7200")
        assert status_of(ok) == 200 and f"<{ph.contact}>;expires=3600" in (header(ok, "Contact") or "")
        other = f"sip:desk-201@127.0.0.1:{peer.port};line=2"
        ok = await ph.register(f"Contact: <{other}>;expires=300", only="MD5")
        assert status_of(ok) == 200, ok.decode()
        found_two = await registrations(api, user_id)
        assert sorted(r["contact"] for r in found_two) == sorted([ph.contact, other])
        assert next(r for r in found_two if r["contact"] == ph.contact)["expires_at"] > first_expiry
        # what the call applications ring: the Directory over the same rows
        directory = RegistrationDirectory(rt.lookups, rt.clock)
        targets = await directory.user_targets(api.account_id, user_id)
        assert sorted(t.uri for t in targets) == sorted([ph.contact, other])
        assert all(t.label == f"{user_id}/{device_id}" for t in targets)
        assert all(t.source == ("127.0.0.1", peer.port) and t.transport == "udp" for t in targets)
        assert await directory.device_targets(api.account_id, device_id) == targets
        assert await directory.user_targets("acc_01jg8asp59ps9rtt7azhrhvcre", user_id) == []

        # too brief: 423 with Min-Expires (this service's minimum is lowered to 2 s)
        brief = await ph.register(f"Contact: <{ph.contact}>", "Expires: 1")
        assert status_of(brief) == 423 and header(brief, "Min-Expires") == "2"

        # Expires: 0 on one contact removes it; Contact: * removes the rest
        ok = await ph.register(f"Contact: <{other}>", "Expires: 0")
        assert status_of(ok) == 200
        assert [r["contact"] for r in await registrations(api, user_id)] == [ph.contact]
        ok = await ph.register("Contact: *", "Expires: 0")
        assert status_of(ok) == 200 and header(ok, "Contact") is None
        assert await registrations(api, user_id) == []
        # a wrong password is challenged again, and stores nothing
        wrong = await ph.register(f"Contact: <{ph.contact}>", password="wrong-horse-battery-9")
        assert status_of(wrong) == 401 and await registrations(api, user_id) == []
    finally:
        peer.close()


async def test_expired_contacts_are_reaped(rt: Runtime, api: Api) -> None:
    user_id, device_id = await make_device(api, "202", "desk-202")
    peer = await RawPeer.open()
    try:
        ph = Phone(peer, sip_port(rt), "desk-202")
        ok = await ph.register(f"Contact: <{ph.contact}>", "Expires: 2")
        assert status_of(ok) == 200
        async with rt.lookups() as uow:
            assert len(await uow.registrations.of_device(device_id, LONG_AGO)) == 1
        async with asyncio.timeout(WAIT):
            while True:
                async with rt.lookups() as uow:  # every row, expired or not
                    if not await uow.registrations.of_device(device_id, LONG_AGO):
                        break
                await asyncio.sleep(0.2)
        assert await registrations(api, user_id) == []
    finally:
        peer.close()


async def test_twenty_bad_passwords_lock_the_username_until_the_lockout_ends(
    rt: Runtime, api: Api
) -> None:
    user_id, _ = await make_device(api, "203", "desk-203")
    _, _ = await make_device(api, "204", "desk-204")
    peer = await RawPeer.open()
    try:
        ph = Phone(peer, sip_port(rt), "desk-203")
        contact = f"Contact: <{ph.contact}>"
        for attempt in range(1, 20):
            answer = await ph.register(contact, password=f"guess-number-{attempt:04d}")
            assert status_of(answer) == 401, (attempt, answer.decode())
        locked = await ph.register(contact, password="guess-number-0020")
        assert status_of(locked) == 403, locked.decode()
        # while locked, even the right password is refused (it is not checked)
        refused = await ph.register(contact)
        assert status_of(refused) == 403 and await registrations(api, user_id) == []
        # the lock is the username's: another phone at the same address still registers
        neighbour = Phone(peer, sip_port(rt), "desk-204")
        assert status_of(await neighbour.register(f"Contact: <{neighbour.contact}>")) == 200
        await asyncio.sleep(LOCKOUT_S + 0.5)
        ok = await ph.register(contact)
        assert status_of(ok) == 200, ok.decode()
        assert len(await registrations(api, user_id)) == 1
    finally:
        peer.close()


@pytest.fixture
async def md5_only(backend: Backend) -> AsyncIterator[tuple[Runtime, Api]]:
    """A service offering MD5 only (AFTERBEEP_SIP_DIGEST_ALGORITHMS=MD5): SIPp 3.6 knows only
    MD5 and reads only the first challenge ("authentication must use MD5" when SHA-256 comes
    first); baresip 1.0 (libre) gives up on any SHA-256 challenge ("Function not
    implemented"), even when an MD5 one is offered too."""
    async with (
        deposit_runtime(backend, sip_digest_algorithms="MD5") as runtime,
        api_of(runtime) as found,
    ):
        yield runtime, found


async def test_sipp_registers_with_md5_then_unregisters(
    md5_only: tuple[Runtime, Api], sipp_bin: str, tmp_path: Path
) -> None:
    rt, api = md5_only
    user_id, _ = await make_device(api, "205", "sipp-205")
    run = asyncio.create_task(
        sip_rig.run_sipp(
            sipp_bin,
            "register_uac.xml",
            tmp_path,
            remote=f"127.0.0.1:{sip_port(rt)}",
            extra=("-s", "sipp-205", "-au", "sipp-205", "-ap", PASSWORD),
        )
    )
    seen: list[list[dict[str, Any]]] = []
    async with asyncio.timeout(WAIT):
        while not run.done():
            found = await registrations(api, user_id)
            if not seen or found != seen[-1]:
                seen.append(found)
            await asyncio.sleep(0.1)
    result = await run
    assert result.returncode == 0, result.output
    stored = [s for s in seen if s]
    assert stored, "the registration was never seen"
    assert stored[0][0]["contact"].startswith("sip:sipp-205@127.0.0.1:")
    # re-registered with Expires: 7200, kept 3600 s: the expiry moved later
    assert any(s[0]["expires_at"] > stored[0][0]["expires_at"] for s in stored[1:]), seen
    assert await registrations(api, user_id) == []  # Contact: *, Expires: 0
    assert result.messages.count("SIP/2.0 401") >= 1


async def test_baresip_registers_and_unregisters_when_it_quits(
    md5_only: tuple[Runtime, Api], tmp_path: Path
) -> None:
    rt, api = md5_only
    user_id, _ = await make_device(api, "206", "bare-206")
    account = (
        f"<sip:bare-206@127.0.0.1:{sip_port(rt)};transport=udp>;auth_pass={PASSWORD};"
        "regint=120;audio_codecs=PCMU"
    )
    async with phone.baresip_phone(tmp_path, np.zeros(800, dtype=np.int16)) as bare:
        await bare.command("uanew", account)
        async with asyncio.timeout(WAIT):
            while not (found := await registrations(api, user_id)):  # noqa: ASYNC110 (polls the API)
                await asyncio.sleep(0.1)
        assert found[0]["contact"].startswith("sip:bare-206")  # baresip adds a suffix
        assert found[0]["source"] == f"127.0.0.1:{bare.sip_port}"
        assert "baresip" in (found[0]["user_agent"] or "")
    # quitting, it unregisters
    async with asyncio.timeout(WAIT):
        while await registrations(api, user_id):  # noqa: ASYNC110 (polls the API)
            await asyncio.sleep(0.1)


# --- INVITEs from devices ----------------------------------------------------------------------

SDP = (
    b"v=0\r\no=desk 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


async def device_invite(
    peer: RawPeer, rt: Runtime, dialed: str, auth_username: str, password: str | None
) -> tuple[bytes, bytes | None]:
    """An INVITE from the device to `dialed`: the first answer, and (when it was a 407 and a
    `password` is given) the answer to the INVITE sent again with the digest. Both ACKed."""
    port = sip_port(rt)
    call_id = secrets.token_hex(8) + "@desk"
    uri = f"sip:{dialed}@127.0.0.1:{port}"

    async def send(cseq: int, auth: Sequence[tuple[str, str]]) -> bytes:
        branch = "z9hG4bK-" + secrets.token_hex(6)
        common = [
            f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch={branch};rport",
            f'From: "Desk" <sip:{auth_username}@127.0.0.1>;tag=desk1',
        ]
        lines = [
            f"INVITE {uri} SIP/2.0",
            *common,
            f"To: <{uri}>",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} INVITE",
            f"Contact: <sip:{auth_username}@127.0.0.1:{peer.port}>",
            "Max-Forwards: 70",
            *(f"{name}: {value}" for name, value in auth),
            "Content-Type: application/sdp",
            f"Content-Length: {len(SDP)}",
        ]
        peer.send("\r\n".join(lines).encode() + b"\r\n\r\n" + SDP, port)
        answer = await peer.response(branch, timeout=10)
        assert answer is not None, "no final answer to the INVITE"
        if (status_of(answer) or 0) >= 300:
            to = next(line for line in answer.decode().split("\r\n") if line.lower().startswith("to:"))
            ack = [f"ACK {uri} SIP/2.0", *common, to, f"Call-ID: {call_id}", f"CSeq: {cseq} ACK",
                   "Max-Forwards: 70", "Content-Length: 0"]  # fmt: skip
            peer.send("\r\n".join(ack).encode() + b"\r\n\r\n", port)
        return answer

    first = await send(1, ())
    if status_of(first) != 407 or password is None:
        return first, None
    challenge = parse_message(first)
    assert isinstance(challenge, SipResponse)
    auth = DigestSession(Credentials(auth_username, password)).answer(challenge, "INVITE", uri)
    assert auth is not None and auth[0][0] == "Proxy-Authorization"
    return first, await send(2, auth)


async def test_a_devices_invite_is_challenged_and_verified(rt: Runtime, api: Api) -> None:
    await make_device(api, "301", "desk-301")
    await make_device(api, "302", "desk-302")
    peer = await RawPeer.open()
    try:
        challenged, _ = await device_invite(peer, rt, "302", "desk-301", None)
        assert status_of(challenged) == 407, challenged.decode()
        offered = [
            line for line in challenged.decode().split("\r\n") if line.lower().startswith("proxy-authenticate")
        ]
        assert len(offered) == 2 and "algorithm=SHA-256" in offered[0]

        # a wrong password is challenged again; the right one reaches the extension: 302 has
        # no phone registered and no mailbox, so the call is turned down (480) at once
        _, wrong = await device_invite(peer, rt, "302", "desk-301", "wrong-horse-battery-9")
        assert status_of(wrong) == 407
        _, right = await device_invite(peer, rt, "302", "desk-301", PASSWORD)
        assert status_of(right) == 480, right and right.decode()

        # an outside number: refused, the account does not allow its devices out
        _, outside = await device_invite(peer, rt, "+33142685300", "desk-301", PASSWORD)
        assert status_of(outside) == 403, outside and outside.decode()
        # an extension of no one: outside too (not a number held here)
        _, nobody = await device_invite(peer, rt, "399", "desk-301", PASSWORD)
        assert status_of(nobody) == 403
        # allowed out, but through no telephony setup: refused with that reason
        # (calls out through a setup: tests/e2e/test_device_outbound.py)
        allowed = await api.http.patch(
            "/v1/account", json={"allow_device_outbound": True}, headers=api.headers
        )
        assert allowed.status_code == 200 and allowed.json()["allow_device_outbound"] is True
        _, out = await device_invite(peer, rt, "+33142685300", "desk-301", PASSWORD)
        assert status_of(out) == 403, out and out.decode()
        assert out is not None and b"No Telephony Setup" in out.split(b"\r\n", 1)[0]
    finally:
        peer.close()
