"""Calls to a user through a number over real SIP (SIPp callers, a registered Python phone),
down to the user's mailbox: no answer, do not disturb, nothing registered. The ringing itself
is the engine's (another branch): here a test Ringer records what it was asked to ring and
reports no answer, so the call application's wiring (number → user → Directory → Ringer →
mailbox, with the caller's audio stored) is what is checked."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from afterbeep.app import Runtime
from afterbeep.audio.compare import compare
from afterbeep.audio.tones import speech_like
from afterbeep.telephony.interface import Call
from afterbeep.telephony.media import Codec
from afterbeep.telephony.scripts.ringer import (
    BridgeEnd,
    Leg,
    RingOutcome,
    RingResult,
    RingTarget,
)
from tests.conftest import Backend, make_settings
from tests.e2e.rig import (
    BEEP_S,
    GREETING_S,
    NUMBER,
    Api,
    api_of,
    caller_pcap,
    deposit_runtime,
    rtp_range,
    sent,
    settle,
    silence,
    sip_port,
    sipp_calls,
    speech,
)
from tests.e2e.test_number_routing import _leave_message
from tests.e2e.test_registration import (
    PASSWORD,
    WAIT,
    Phone,
    make_device,
    registrations,
)
from tests.fixtures import baresip as phone
from tests.fixtures.rtp_pcap import g711_roundtrip
from tests.sip import conftest as sip_rig
from tests.sip.conftest import free_udp_port
from tests.sip.peer import RawPeer, status_of
from tests.telephony.bridge_rig import RtpPeer, caller, codec_keys

sipp_bin = sip_rig.sipp_bin

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True),
]


@dataclass
class NobodyAnswers:
    """A Ringer whose phones never answer (it rings nothing: it records the targets)."""

    rings: list[tuple[list[RingTarget], float, bool]] = field(default_factory=list)

    async def ring(
        self,
        call: Call,
        targets: Sequence[RingTarget],
        *,
        timeout: float,
        sequential: bool = False,
        caller_id: str | None = None,
        ringback: bool = True,
    ) -> RingResult:
        self.rings.append((list(targets), timeout, sequential))
        return RingResult(RingOutcome.NO_ANSWER)

    async def bridge(self, call: Call, leg: Leg) -> BridgeEnd:
        raise AssertionError("nobody answered")


@contextlib.asynccontextmanager
async def user_runtime(backend: Backend, ringer: NobodyAnswers) -> AsyncIterator[Runtime]:
    low, high = rtp_range()
    settings = make_settings(
        backend,
        sip_addr=f"127.0.0.1:{free_udp_port()}",
        rtp_port_min=low,
        rtp_port_max=high,
        smtp_url="smtp://127.0.0.1:9",
        smtp_from="voicemail@afterbeep.test",
    )
    rt = Runtime(settings)
    rt.ringer = ringer
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


async def test_no_answer_dnd_and_unregistered_reach_the_users_mailbox(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    ringer = NobodyAnswers()
    async with user_runtime(backend, ringer) as rt, api_of(rt) as api:
        await _scenario(rt, api, ringer, sipp_bin, tmp_path)


async def make_device_of(api: Api, user_id: str, auth_username: str) -> str:
    device = await api.post(
        "/v1/devices", {"user_id": user_id, "auth_username": auth_username, "password": PASSWORD}
    )
    return str(device["id"])


async def _scenario(rt: Runtime, api: Api, ringer: NobodyAnswers, sipp: str, tmp_path: Path) -> None:
    box = await api.post(
        "/v1/mailboxes", {"name": "Alice", "min_message_seconds": 1, "skip_instructions": True}
    )
    user_id, _ = await make_device(api, "201", "desk-201")
    patched = await api.http.patch(
        f"/v1/users/{user_id}", json={"voicemail_id": box["id"], "ring_timeout_sec": 15},
        headers=api.headers,
    )  # fmt: skip
    assert patched.status_code == 200, patched.text
    await api.post("/v1/numbers", {"e164": NUMBER, "dest_kind": "user", "dest_id": user_id})
    peer = await RawPeer.open()
    try:
        phone = Phone(peer, sip_port(rt), "desk-201")
        assert status_of(await phone.register(f"Contact: <{phone.contact}>")) == 200

        # registered, nobody answers: rung for 15 s, then the mailbox
        await _leave_message(sipp, tmp_path / "no-answer", rt)
        [first] = await api.wait_messages(box["id"], 1)
        assert first["callee"] == NUMBER and first["duration_ms"] >= 1000
        [(targets, timeout, sequential)] = ringer.rings
        assert [t.uri for t in targets] == [phone.contact] and timeout == 15.0 and not sequential

        # do not disturb: not rung, the mailbox (busy greeting)
        dnd = await api.http.patch(f"/v1/users/{user_id}", json={"dnd": True}, headers=api.headers)
        assert dnd.status_code == 200
        await _leave_message(sipp, tmp_path / "dnd", rt)
        await api.wait_messages(box["id"], 2)
        assert len(ringer.rings) == 1

        # nothing registered: not rung, the mailbox at once
        await api.http.patch(f"/v1/users/{user_id}", json={"dnd": False}, headers=api.headers)
        assert status_of(await phone.register("Contact: *", "Expires: 0")) == 200
        await _leave_message(sipp, tmp_path / "unregistered", rt)
        await api.wait_messages(box["id"], 3)
        assert len(ringer.rings) == 1
    finally:
        peer.close()
    await settle(rt)
    assert rt.telephony is not None and rt.telephony.stats.handler_errors == 0


# --- the real engine: two softphones of one user ---------------------------------------------

CALLED = "+12025550111"  # what the bridge rig's SIPp caller dials


@pytest.mark.skipif(not phone.available(), reason="baresip is not installed")
async def test_a_call_to_a_user_rings_both_phones_one_answers_and_the_caller_hears_it(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    said = speech_like(6000, seed=21)  # the answering phone's microphone, from its answer on
    caller_peer = await RtpPeer.open()
    for side in ("a", "b"):
        (tmp_path / side).mkdir()
    async with (
        deposit_runtime(backend, sip_digest_algorithms="MD5") as rt,  # baresip 1.0: MD5 only
        api_of(rt) as api,
        phone.baresip_phone(tmp_path / "a", said) as desk,
        phone.baresip_phone(tmp_path / "b", said) as mobile,
    ):
        box = await api.post("/v1/mailboxes", {"name": "Alice", "min_message_seconds": 1})
        user_id, _ = await make_device(api, "201", "bare-desk")
        await make_device_of(api, user_id, "bare-mobile")
        await api.http.patch(
            f"/v1/users/{user_id}", json={"voicemail_id": box["id"]}, headers=api.headers
        )
        await api.post("/v1/numbers", {"e164": CALLED, "dest_kind": "user", "dest_id": user_id})
        for bare, name in ((desk, "bare-desk"), (mobile, "bare-mobile")):
            await bare.command(
                "uanew",
                f"<sip:{name}@127.0.0.1:{sip_port(rt)};transport=udp>;auth_pass={PASSWORD};"
                "regint=300;audio_codecs=PCMU",
            )
        async with asyncio.timeout(WAIT):
            while len(await registrations(api, user_id)) < 2:  # noqa: ASYNC110 (polls the API)
                await asyncio.sleep(0.1)

        uac = caller(
            sipp_bin, "bridge_uac_hangup.xml", tmp_path, sip_port(rt),
            *codec_keys(Codec.PCMU, caller_peer.port), talk_ms=5000,
        )  # fmt: skip
        await desk.wait_event("CALL_INCOMING", timeout=10)
        await mobile.wait_event("CALL_INCOMING", timeout=10)  # both ring
        await desk.command("accept")
        await desk.wait_event("CALL_ESTABLISHED", timeout=10)
        await mobile.wait_event("CALL_CLOSED", timeout=10)  # the other fork is cancelled
        result = await asyncio.wait_for(uac, 30)
        assert result.returncode == 0, result.output
        await desk.wait_event("CALL_CLOSED", timeout=10)  # the caller's BYE ended both sides
        assert not mobile.seen("CALL_ESTABLISHED")
        await settle(rt)
        assert await api.messages(box["id"]) == []  # answered: nothing in the mailbox
    heard = compare(g711_roundtrip(Codec.PCMU, said), caller_peer.audio())
    caller_peer.close()
    print(f"caller heard {heard}")
    assert heard.snr_db >= 30, heard


@pytest.mark.skipif(not phone.available(), reason="baresip is not installed")
async def test_nobody_answers_the_users_phone_the_caller_leaves_a_message(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    """The real engine rings the registered softphone for ring_timeout_sec (5 s), nobody
    picks up, the fork is cancelled and the caller's words end up in the user's mailbox."""
    lead_ms = int((GREETING_S + BEEP_S) * 1000) + 600
    words = speech(2.0, seed=31)
    caller_pcap(tmp_path / "caller", silence(lead_ms), words)
    (tmp_path / "desk").mkdir()
    async with (
        deposit_runtime(backend, sip_digest_algorithms="MD5") as rt,
        api_of(rt) as api,
        phone.baresip_phone(tmp_path / "desk", speech_like(1000, seed=3)) as desk,
    ):
        box = await api.post(
            "/v1/mailboxes", {"name": "Alice", "min_message_seconds": 1, "skip_instructions": True}
        )
        user_id, _ = await make_device(api, "201", "bare-desk")
        await api.http.patch(
            f"/v1/users/{user_id}",
            json={"voicemail_id": box["id"], "ring_timeout_sec": 5},
            headers=api.headers,
        )
        await api.post("/v1/numbers", {"e164": NUMBER, "dest_kind": "user", "dest_id": user_id})
        await desk.command(
            "uanew",
            f"<sip:bare-desk@127.0.0.1:{sip_port(rt)};transport=udp>;auth_pass={PASSWORD};"
            "regint=300;audio_codecs=PCMU",
        )
        async with asyncio.timeout(WAIT):
            while not await registrations(api, user_id):  # noqa: ASYNC110 (polls the API)
                await asyncio.sleep(0.1)
        run = await sipp_calls(
            sipp_bin, "deposit_uac.xml", tmp_path / "caller", sip_port(rt), hold_ms=lead_ms + 2500
        )
        assert run.returncode == 0, run.output
        assert run.received("SIP/2.0 180") == 1  # the caller heard it ring
        assert desk.seen("CALL_INCOMING") and not desk.seen("CALL_ESTABLISHED")
        await desk.wait_event("CALL_CLOSED", timeout=10)  # its fork was cancelled
        [message] = await api.wait_messages(box["id"], 1)
        heard = compare(sent(words), await api.audio(message["id"]))
        print(f"message vs the caller's words: {heard}")
        assert heard.snr_db >= 30 and heard.missing_head_ms == 0
        await settle(rt)


@pytest.mark.skipif(not phone.available(), reason="baresip is not installed")
async def test_a_softphone_dials_another_users_extension(
    backend: Backend, tmp_path: Path
) -> None:
    """A device's INVITE is challenged (407) and answered by the softphone; the extension it
    dialled rings the other user's softphone, which answers."""
    for side in ("a", "b"):
        (tmp_path / side).mkdir()
    async with (
        deposit_runtime(backend, sip_digest_algorithms="MD5") as rt,
        api_of(rt) as api,
        phone.baresip_phone(tmp_path / "a", speech_like(3000, seed=4)) as alice,
        phone.baresip_phone(tmp_path / "b", speech_like(3000, seed=5)) as bob,
    ):
        alice_id, _ = await make_device(api, "201", "bare-alice")
        bob_id, _ = await make_device(api, "202", "bare-bob")
        aors = {}
        for bare, name in ((alice, "bare-alice"), (bob, "bare-bob")):
            aors[name] = f"sip:{name}@127.0.0.1:{sip_port(rt)};transport=udp"
            await bare.command(
                "uanew", f"<{aors[name]}>;auth_pass={PASSWORD};regint=300;audio_codecs=PCMU"
            )
        async with asyncio.timeout(WAIT):
            while not (await registrations(api, alice_id) and await registrations(api, bob_id)):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        # the new account is alice's current one (its fixture starts with an unregistered one)
        await alice.command("uafind", aors["bare-alice"].split(";")[0])
        await alice.dial(f"sip:202@127.0.0.1:{sip_port(rt)}")
        await bob.wait_event("CALL_INCOMING", timeout=10)
        await bob.command("accept")
        await alice.wait_event("CALL_ESTABLISHED", timeout=10)
        await alice.hangup()
        await bob.wait_event("CALL_CLOSED", timeout=10)
        await settle(rt)
