"""Calls to a user over real SIP against the real service. First with a test Ringer that
records what it was asked to ring and reports no answer (number → user → Directory → Ringer →
mailbox: no answer, do not disturb with and without fwd_busy, nothing registered); then with
the engine's ringer: baresip softphones, and a registered SIPp phone with small RTP peers on
both sides (audio and digits both ways through the relay, hold and resume from the phone, its
BYE ending the caller's side), and a flow's user node."""

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
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.interface import Call
from afterbeep.telephony.media import Codec
from afterbeep.telephony.scripts.ringer import (
    BridgeEnd,
    Leg,
    RingOutcome,
    RingResult,
    RingTarget,
)
from tests.api.test_flows import _edge, _node
from tests.conftest import Backend, make_settings
from tests.e2e.rig import (
    BEEP_S,
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
from tests.sip.peer import RawPeer, status_of
from tests.telephony.bridge_rig import RtpPeer, caller, codec_keys, device, stream_of

sipp_bin = sip_rig.sipp_bin

# The mailboxes here get a half-second greeting (`short_greeting`), for the busy path too: a
# caller speaks 0.85 s after the answer. The system's greetings are heard in
# tests/e2e/test_phone_menu.py (the extension read out) and tests/e2e/test_endings.py.
GREETING_S = SHORT_GREETING_S
LEAD_MS = int((GREETING_S + BEEP_S) * 1000) + 600

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
        sip_addr="127.0.0.1:0",
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


async def _leave_message(sipp: str, cwd: Path, rt: Runtime) -> None:
    caller_pcap(cwd, silence(LEAD_MS), speech(1.5, seed=5))
    run = await sipp_calls(sipp, "deposit_uac.xml", cwd, sip_port(rt), hold_ms=LEAD_MS + 2000)
    assert run.returncode == 0, run.output


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
    await short_greeting(api, box["id"], "greeting_media_id", "busy_greeting_media_id")
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

        # do not disturb with fwd_busy: the busy chain goes there first
        busy_box = await api.post(
            "/v1/mailboxes", {"name": "Front desk", "min_message_seconds": 1, "skip_instructions": True}
        )
        await short_greeting(api, busy_box["id"], "greeting_media_id", "busy_greeting_media_id")
        fwd = {"fwd_busy_kind": "voicemail", "fwd_busy_id": busy_box["id"]}
        patched = await api.http.patch(f"/v1/users/{user_id}", json=fwd, headers=api.headers)
        assert patched.status_code == 200, patched.text
        await _leave_message(sipp, tmp_path / "dnd-forwarded", rt)
        await api.wait_messages(busy_box["id"], 1)
        assert len(await api.messages(box["id"])) == 2 and len(ringer.rings) == 1
        await api.http.patch(f"/v1/users/{user_id}", json={"fwd_busy_kind": None}, headers=api.headers)

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


async def test_nobody_answers_the_users_phone_the_caller_leaves_a_message(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    """The real engine rings the registered softphone for ring_timeout_sec (5 s), nobody
    picks up, the fork is cancelled and the caller's words end up in the user's mailbox."""
    lead_ms = LEAD_MS
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
        await short_greeting(api, box["id"])
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


# --- the relay of a call to a user, measured on both sides ------------------------------------


class BridgeSpy:
    """Keeps the calls the service's ringer bridges (to find the relay's RTP ports)."""

    def __init__(self, rt: Runtime) -> None:
        assert rt.ringer is not None
        self._ringer = rt.ringer
        self._bridge = rt.ringer.bridge
        self.bridged: asyncio.Future[tuple[SipCall, SipCall]] = asyncio.Future()
        self.ended: asyncio.Future[BridgeEnd] = asyncio.Future()
        rt.ringer.bridge = self.bridge  # type: ignore[method-assign]

    async def bridge(self, call: Call, leg: Leg) -> BridgeEnd:
        assert isinstance(call, SipCall) and isinstance(leg, SipCall)
        self.bridged.set_result((call, leg))
        end = await self._bridge(call, leg)
        self.ended.set_result(end)
        return end

    async def relaying(self) -> tuple[int, int]:
        """The service's RTP ports toward the caller and toward the phone, once relaying."""
        call, leg = await asyncio.wait_for(asyncio.shield(self.bridged), 15)
        async with asyncio.timeout(5):
            while call.media is None or call.media.on_rtp is None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert leg.media is not None
        return call.media.local_port, leg.media.local_port


async def test_a_call_to_a_registered_phone_relays_audio_and_digits_both_ways_hold_and_bye(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    """The real service: a number leads to a user whose phone (SIPp, registered with digest
    from the port it then listens on) answers; the caller and the phone each send known audio
    and keys, and each must receive the other's exactly; the phone puts the caller on hold and
    resumes (its re-INVITEs are passed to the caller), then hangs up: the caller gets BYE."""
    caller_rtp, phone_rtp = await RtpPeer.open(), await RtpPeer.open()
    said_by_caller, said_by_phone = speech_like(1500, seed=41), speech_like(1500, seed=42)
    try:
        # the phone's port passes from the registering peer to SIPp: no unsolicited NOTIFY
        async with deposit_runtime(backend, sip_mwi_unsolicited=False) as rt, api_of(rt) as api:
            spy = BridgeSpy(rt)
            box = await api.post("/v1/mailboxes", {"name": "Alice", "min_message_seconds": 1})
            user_id, _ = await make_device(api, "201", "desk-201")
            await api.http.patch(
                f"/v1/users/{user_id}", json={"voicemail_id": box["id"]}, headers=api.headers
            )
            await api.post(
                "/v1/numbers", {"e164": CALLED, "dest_kind": "user", "dest_id": user_id}
            )
            # register from the port the phone (SIPp) then listens on: the service sends the
            # INVITE to where the REGISTER came from
            peer = await RawPeer.open()
            port = peer.port
            registering = Phone(peer, sip_port(rt), "desk-201")
            contact = f"Contact: <sip:desk-201@127.0.0.1:{port}>"
            assert status_of(await registering.register(contact)) == 200
            peer.close()
            answering, _ = await device(
                sipp_bin, "user_uas_hold_bye.xml", tmp_path,
                *codec_keys(Codec.PCMU, phone_rtp.port),
                port=port, answer_ms=300, talk_ms=3500, hold_ms=1000,
            )  # fmt: skip
            uac = caller(
                sipp_bin, "user_uac_held_wait_bye.xml", tmp_path, sip_port(rt),
                *codec_keys(Codec.PCMU, caller_rtp.port),
            )  # fmt: skip
            to_caller, to_phone = await spy.relaying()
            await asyncio.gather(
                caller_rtp.play(to_caller, stream_of(Codec.PCMU, said_by_caller, "5#")),
                phone_rtp.play(to_phone, stream_of(Codec.PCMU, said_by_phone, "7")),
            )
            results = await asyncio.wait_for(asyncio.gather(uac, answering), 30)
            end = await asyncio.wait_for(asyncio.shield(spy.ended), 10)
            await settle(rt)
            assert await api.messages(box["id"]) == []  # answered: nothing in the mailbox
            assert rt.telephony is not None and rt.telephony.stats.handler_errors == 0
    finally:
        caller_rtp.close()
        phone_rtp.close()
    for result in results:  # the caller got the hold, the resume and the BYE
        assert result.returncode == 0, result.output
    assert end is BridgeEnd.CALLEE_HUNG_UP
    phone_heard = compare(said_by_caller, phone_rtp.audio())
    caller_heard = compare(said_by_phone, caller_rtp.audio())
    print(f"phone heard {phone_heard}\ncaller heard {caller_heard}")
    assert phone_heard.snr_db >= 30 and phone_heard.missing_tail_ms <= 20
    assert caller_heard.snr_db >= 30 and caller_heard.missing_tail_ms <= 20
    assert phone_rtp.digits() == "5#" and caller_rtp.digits() == "7"


async def test_a_flow_sends_the_call_to_a_user_whose_phone_does_not_answer(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    """entry → user: the flow answers, the user's registered phone (SIPp) rings for
    ring_timeout_sec (5 s) and is cancelled, and the caller's words end up in the user's
    mailbox."""
    ring_s = 5
    lead_ms = ring_s * 1000 + int((GREETING_S + BEEP_S) * 1000) + 1200
    words = speech(2.0, seed=51)
    caller_pcap(tmp_path / "caller", silence(lead_ms), words)
    # the phone's port passes from the registering peer to SIPp: no unsolicited NOTIFY
    async with deposit_runtime(backend, sip_mwi_unsolicited=False) as rt, api_of(rt) as api:
        box = await api.post(
            "/v1/mailboxes", {"name": "Alice", "min_message_seconds": 1, "skip_instructions": True}
        )
        await short_greeting(api, box["id"])
        user_id, _ = await make_device(api, "201", "desk-201")
        await api.http.patch(
            f"/v1/users/{user_id}",
            json={"voicemail_id": box["id"], "ring_timeout_sec": ring_s},
            headers=api.headers,
        )
        flow = await api.post(
            "/v1/flows",
            {
                "name": "Reception",
                "nodes": [_node("start", "entry", trigger="inbound"), _node("u", "user", userId=user_id)],
                "edges": [_edge("e1", "start", "default", "u")],
            },
        )
        await api.post("/v1/numbers", {"e164": NUMBER, "dest_kind": "flow", "dest_id": flow["id"]})
        peer = await RawPeer.open()
        port = peer.port
        registering = Phone(peer, sip_port(rt), "desk-201")
        assert status_of(await registering.register(f"Contact: <sip:desk-201@127.0.0.1:{port}>")) == 200
        peer.close()
        ringing, _ = await device(sipp_bin, "media_uas_ring_no_answer.xml", tmp_path, port=port)
        run = await sipp_calls(
            sipp_bin, "deposit_uac.xml", tmp_path / "caller", sip_port(rt), hold_ms=lead_ms + 2500
        )
        assert run.returncode == 0, run.output
        rang = await asyncio.wait_for(ringing, 10)
        assert rang.returncode == 0, rang.output  # rung, then cancelled
        [message] = await api.wait_messages(box["id"], 1)
        heard = compare(sent(words), await api.audio(message["id"]))
        print(f"message vs the caller's words: {heard}")
        assert heard.snr_db >= 30 and heard.missing_head_ms == 0
        await settle(rt)
        assert rt.telephony is not None and rt.telephony.stats.handler_errors == 0
