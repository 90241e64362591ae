"""A registered phone dials an outside number through its account's telephony setup, against the
real service: a Python phone (doing the digest itself) calls, a SIPp UAS stands for the trunk.
The trunk gets the number in E.164 and the user's caller id, the phone hears 180 while it
rings, the answer is bridged (the phone's audio reaches the trunk's RTP peer) and the trunk's
BYE ends both; a busy trunk is a 486 to the phone; a phone not allowed out, or allowed without
a setup, is refused 403 with the reason."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosipua.message import SipResponse

from afterbeep.app import Runtime
from afterbeep.audio.tones import speech_like
from afterbeep.telephony.inbound import InboundCalls
from afterbeep.telephony.media import Codec
from afterbeep.telephony.sip.auth import Credentials, DigestSession
from afterbeep.telephony.sip.message import parse_message
from tests.conftest import Backend
from tests.e2e.rig import Api, api_of, deposit_runtime, sip_port
from tests.sip import conftest as sip_rig
from tests.sip.peer import RawPeer, header, status_of
from tests.telephony.bridge_rig import RtpPeer, codec_keys, device, stream_of

sipp_bin = sip_rig.sipp_bin

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True),
]

PASSWORD = "correct-horse-battery-9"
CALLER_ID = "+12125550143"
DIALED = "(415) 555-0199"  # national, in the default region (US)
DIALED_E164 = "+14155550199"
WAIT = 20.0  # bound on waiting for the service; never a speed assertion


@pytest.fixture
async def rt(backend: Backend) -> AsyncIterator[Runtime]:
    async with deposit_runtime(backend) as runtime:
        yield runtime


@pytest.fixture
async def api(rt: Runtime) -> AsyncIterator[Api]:
    async with api_of(rt) as found:
        yield found


async def desk_phone(api: Api, **user: object) -> str:
    created = await api.post("/v1/users", {"username": "301", **user})
    await api.post(
        "/v1/devices", {"user_id": created["id"], "auth_username": "desk-301", "password": PASSWORD}
    )
    return str(created["id"])


def lines_of(rt: Runtime, user_id: str) -> int:
    """How many calls the user is in on this node (the router's `UserLines`)."""
    assert rt.deposit_receiver is not None
    inbound = rt.deposit_receiver._fallback.__self__  # type: ignore[attr-defined]
    assert isinstance(inbound, InboundCalls)
    return inbound.lines.count(user_id)


async def allow_out(api: Api, trunk_port: int | None) -> None:
    body: dict[str, object] = {"allow_device_outbound": True}
    if trunk_port is not None:
        setup = await api.post(
            "/v1/telephony-setups",
            {
                "name": "trunk",
                "trunk_host": "127.0.0.1",
                "trunk_port": trunk_port,
                "transport": "udp",
                "max_calls_per_second": 5,
                "max_concurrent_calls": 2,
                "numbers": [{"e164": "+12125550100"}],
                "deposit_uri": "",
            },
        )
        body["device_outbound_setup_id"] = setup["id"]
    response = await api.http.patch("/v1/account", json=body, headers=api.headers)
    assert response.status_code == 200, response.text


class TrunkRtp(RtpPeer):
    """The trunk's RTP peer; it answers to where the relay's packets come from."""

    source_port = 0

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.source_port = int(addr[1])
        super().datagram_received(data, addr)


@dataclass
class Dialled:
    peer: RawPeer
    final: bytes
    ringing: bool  # a 180 came before the final answer


async def dial(
    rt: Runtime, peer: RawPeer, dialed: str, rtp_port: int, *, cancel: bool = False
) -> Dialled:
    """The phone's INVITE to `dialed`, sent again with the digest when challenged (`cancel`:
    CANCELled once it rings); a failure and a 200 are ACKed."""
    port = sip_port(rt)
    call_id = secrets.token_hex(8) + "@desk"
    uri = f"sip:{dialed.replace(' ', '')}@127.0.0.1:{port}"
    sdp = (
        "v=0\r\no=desk 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()
    common = ['From: "Desk" <sip:desk-301@127.0.0.1>;tag=desk1', f"Call-ID: {call_id}"]

    async def send(cseq: int, auth: Sequence[tuple[str, str]]) -> tuple[bytes, str]:
        branch = "z9hG4bK-" + secrets.token_hex(6)
        via = f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch={branch};rport"
        lines = [
            f"INVITE {uri} SIP/2.0", via, *common, f"To: <{uri}>", f"CSeq: {cseq} INVITE",
            f"Contact: <sip:desk-301@127.0.0.1:{peer.port}>", "Max-Forwards: 70",
            *(f"{name}: {value}" for name, value in auth),
            "Content-Type: application/sdp", f"Content-Length: {len(sdp)}",
        ]  # fmt: skip
        peer.send("\r\n".join(lines).encode() + b"\r\n\r\n" + sdp, port)
        if cancel and auth:
            rang = await peer.response(branch, timeout=WAIT, start=b"180", final=False)
            assert rang is not None, "no 180 before the CANCEL"
            stop = [f"CANCEL {uri} SIP/2.0", via, *common, f"To: <{uri}>", f"CSeq: {cseq} CANCEL",
                    "Max-Forwards: 70", "Content-Length: 0"]  # fmt: skip
            peer.send("\r\n".join(stop).encode() + b"\r\n\r\n", port)
            cancelled = await peer.response(branch, timeout=WAIT, start=b"200")
            assert cancelled is not None and b"CANCEL" in (header(cancelled, "CSeq") or "").encode()
        answer = await peer.wait_for(
            lambda data: (
                data.startswith(b"SIP/2.0 ")
                and not data.startswith(b"SIP/2.0 1")
                and branch.encode() in data
                and b" INVITE\r\n" in data
            ),
            WAIT,
        )
        assert answer is not None, "no final answer to the INVITE"
        to = f"To: {header(answer, 'To')}"
        status = status_of(answer) or 0
        ack_via = (
            via
            if status >= 300
            else f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bK-{secrets.token_hex(6)}"
        )
        ack = [f"ACK {uri} SIP/2.0", ack_via, *common, to, f"CSeq: {cseq} ACK",
               "Max-Forwards: 70", "Content-Length: 0"]  # fmt: skip
        peer.send("\r\n".join(ack).encode() + b"\r\n\r\n", port)
        return answer, branch

    first, _ = await send(1, ())
    assert status_of(first) == 407, first.decode()
    challenge = parse_message(first)
    assert isinstance(challenge, SipResponse)
    auth = DigestSession(Credentials("desk-301", PASSWORD)).answer(challenge, "INVITE", uri)
    assert auth is not None
    final, branch = await send(2, auth)
    ringing = any(
        data.startswith(b"SIP/2.0 180") and branch.encode() in data for data in peer.received
    )
    return Dialled(peer, final, ringing)


def sdp_port(message: bytes) -> int:
    found = re.search(rb"^m=audio (\d+) ", message, re.M)
    assert found is not None, message.decode()
    return int(found.group(1))


async def test_an_allowed_phone_calls_out_through_the_setup_and_the_trunk_hangs_up(
    rt: Runtime, api: Api, sipp_bin: str, tmp_path: Path
) -> None:
    user_id = await desk_phone(api, out_cid_number=CALLER_ID)
    phone_rtp, trunk_rtp = await RtpPeer.open(), await TrunkRtp.open()
    peer = await RawPeer.open()
    try:
        trunk, trunk_port = await device(
            sipp_bin, "bridge_uas_answer_bye.xml", tmp_path, *codec_keys(Codec.PCMU, trunk_rtp.port),
            answer_ms=500, talk_ms=3500,
        )  # fmt: skip
        await allow_out(api, trunk_port)
        dialled = await dial(rt, peer, DIALED, phone_rtp.port)
        assert status_of(dialled.final) == 200, dialled.final.decode()
        assert dialled.ringing, "the phone heard no 180 while the trunk rang"
        assert lines_of(rt, user_id) == 1  # the call out is one of the user's calls
        # the phone talks; its audio goes through the relay to the trunk's RTP peer
        await phone_rtp.play(
            sdp_port(dialled.final), stream_of(Codec.PCMU, speech_like(1000, seed=3), "")
        )
        assert isinstance(trunk_rtp, TrunkRtp) and trunk_rtp.source_port, (
            "nothing reached the trunk"
        )
        said_by_far_end = stream_of(Codec.PCMU, speech_like(800, seed=4), "")
        await trunk_rtp.play(trunk_rtp.source_port, said_by_far_end)
        # the trunk hangs up: the phone gets a BYE, and answers it
        bye = await peer.wait_for(lambda data: data.startswith(b"BYE "), WAIT)
        assert bye is not None, "the trunk's BYE did not reach the phone"
        reply = [
            "SIP/2.0 200 OK",
            *(f"{name}: {header(bye, name)}" for name in ("Via", "From", "To", "Call-ID", "CSeq")),
            "Content-Length: 0",
        ]
        peer.send("\r\n".join(reply).encode() + b"\r\n\r\n", sip_port(rt))
        result = await asyncio.wait_for(trunk, WAIT)
    finally:
        peer.close()
        phone_rtp.close()
        trunk_rtp.close()
    assert result.returncode == 0, result.output
    invite = result.messages[result.messages.index("INVITE sip:") :]
    assert invite.startswith(f"INVITE sip:{DIALED_E164}@127.0.0.1:{trunk_port} SIP/2.0")
    assert re.search(rf"^From: <sip:\{CALLER_ID}@127\.0\.0\.1>;tag=", invite, re.M), invite[:600]
    assert len(trunk_rtp.packets) >= 25, "the phone's audio did not reach the trunk"
    assert {p.payload_type for p in trunk_rtp.packets} == {0}
    assert len(phone_rtp.packets) >= 20, "the far end's audio did not reach the phone"
    async with asyncio.timeout(WAIT):  # both calls end, the user's line is free again
        while (rt.telephony is not None and rt.telephony.media.sessions) or lines_of(rt, user_id):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_a_busy_trunk_is_busy_to_the_phone(
    rt: Runtime, api: Api, sipp_bin: str, tmp_path: Path
) -> None:
    await desk_phone(api)  # no caller id of its own: the setup's number
    peer = await RawPeer.open()
    try:
        trunk, trunk_port = await device(sipp_bin, "uas_busy.xml", tmp_path)
        await allow_out(api, trunk_port)
        dialled = await dial(rt, peer, DIALED_E164, 40000)
        result = await asyncio.wait_for(trunk, WAIT)
    finally:
        peer.close()
    assert status_of(dialled.final) == 486, dialled.final.decode()
    assert result.returncode == 0, result.output
    assert re.search(r"^From: <sip:\+12125550100@127\.0\.0\.1>;tag=", result.messages, re.M)


async def test_the_phones_cancel_cancels_the_trunks_invite(
    rt: Runtime, api: Api, sipp_bin: str, tmp_path: Path
) -> None:
    await desk_phone(api, out_cid_number=CALLER_ID)
    peer = await RawPeer.open()
    try:
        trunk, trunk_port = await device(sipp_bin, "media_uas_ring_no_answer.xml", tmp_path)
        await allow_out(api, trunk_port)
        dialled = await dial(rt, peer, DIALED_E164, 40000, cancel=True)
        result = await asyncio.wait_for(trunk, WAIT)
    finally:
        peer.close()
    assert status_of(dialled.final) == 487, dialled.final.decode()
    assert result.returncode == 0, result.output  # it got our CANCEL, answered 487, got the ACK
    assert "CANCEL sip:" in result.messages
    async with asyncio.timeout(WAIT):
        while rt.telephony is not None and rt.telephony.media.sessions:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_a_phone_not_allowed_out_or_without_a_setup_is_refused_with_the_reason(
    rt: Runtime, api: Api
) -> None:
    await desk_phone(api, out_cid_number=CALLER_ID)
    peer = await RawPeer.open()
    try:
        refused = await dial(rt, peer, DIALED_E164, 40000)
        assert status_of(refused.final) == 403, refused.final.decode()
        await allow_out(api, None)  # allowed, but through no setup
        no_setup = await dial(rt, peer, DIALED_E164, 40000)
        assert status_of(no_setup.final) == 403, no_setup.final.decode()
        assert no_setup.final.startswith(b"SIP/2.0 403 No Telephony Setup For Outside Calls\r\n")
    finally:
        peer.close()
