"""The owner's voicemail by phone over real SIP, against one served instance for the module.

A SIPp owner (signalling; `menu_uac_owner.xml`) with a small RTP peer that presses keys by
RFC 4733 and keeps what it hears calls the `voicemail_main` number: mailbox number, PIN, then
listens to a new message (what it hears is the message), skips to the next, deletes and
undeletes, saves to a folder, hears the envelope, goes back, deletes for good (gone when the
call ends); records a busy greeting that a later caller on the busy path hears; changes the
PIN and logs in with the new one. Then wrong PINs: three end the call, a fourth in the next
call locks the mailbox, the owner gets the email (aiosmtpd), and the right PIN works once the
lock ends.

Each step waits for what the service does (a message read, audio heard, a setting stored),
never a fixed time. The menu speaks with `short_voice` (each prompt its first 0.2 s): the
walk is the menu's logic over real SIP and RTP, not the prompts' length (the shipped voice is
what the owner hears in tests/e2e/test_message_waiting.py). Once the walk heard the default
greeting, depositors get a half-second one, and keys are 60 ms presses.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from afterbeep.app import Runtime
from afterbeep.domain.pin_lockout import source_of
from afterbeep.domain.say import say_counts, say_digits
from afterbeep.telephony import inbound
from afterbeep.telephony import menu_prompts as P
from afterbeep.telephony.interface import Audio
from afterbeep.telephony.media import Codec
from afterbeep.telephony.prompts import beep, prompt, sequence
from afterbeep.telephony.scripts.deposit import PERSON_AT_EXTENSION
from tests.conftest import ADMIN_KEY, Backend
from tests.e2e.rig import (
    BEEP_S,
    CALLER,
    NUMBER,
    OWNER,
    SHORT_GREETING_S,
    WAIT,
    Api,
    api_of,
    caller_pcap,
    deposit_runtime,
    python_caller,
    sent,
    settle,
    short_greeting,
    silence,
    sip_port,
    sipp_calls,
    speech,
)
from tests.e2e.test_device_outbound import desk_phone, dial
from tests.fixtures.rtp_pcap import RtpStreamBuilder
from tests.fixtures.smtp import Received, SmtpServer, smtp_server
from tests.sip.conftest import SCENARIOS, _ensure_sipp, free_udp_port
from tests.sip.peer import RawPeer, header, status_of
from tests.telephony.bridge_rig import EVENT_PT, RtpPeer, codec_keys

pytestmark = [pytest.mark.timeout(300), pytest.mark.asyncio(loop_scope="module")]

MENU_NUMBER = "+12025550111"
PIN, NEW_PIN = "2580", "4826"
EXTENSION = "201"
LOCK_SECONDS = 8.0  # long enough for a call while locked (its prompt says why)
# The mailbox has no greeting nor name: a caller hears its owner's extension read out.
GREETING = sequence(
    [PERSON_AT_EXTENSION, *say_digits(EXTENSION, "en"), "vm-unavailable-after-name"], "en"
)
# Once the walk heard GREETING, the mailbox gets a half-second one: depositors need not wait.
LEAD_MS = int((SHORT_GREETING_S + BEEP_S) * 1000) + 600  # a depositor speaks after the beep
MESSAGE_S = 1.5  # what a depositor says: three half-second pieces, each listened for


SHORT_PROMPT = 1600  # 0.2 s of each prompt: still its own sound, found sample for sample


@functools.lru_cache(maxsize=256)
def _short(names: tuple[str, ...], language: str) -> Audio:
    parts = [prompt(name, language)[:SHORT_PROMPT] for name in names]
    data = np.concatenate(parts or [np.zeros(0, np.int16)])
    data.setflags(write=False)
    return data


def short_voice(names: Sequence[str], language: str) -> Audio:
    """The menu's voice in this module: every prompt and fragment cut to its first 0.2 s."""
    return _short(tuple(names), language)


KEY_MS, KEY_GAP_MS = 60, 40  # a key press (RFC 4733 events, then three end packets), a pause


class Owner(RtpPeer):
    """The owner's phone's RTP: keys and speech sent when told, everything heard kept."""

    def __init__(self) -> None:
        super().__init__()
        self.remote: int | None = None
        self.builder = RtpStreamBuilder(Codec.PCMU, 20, EVENT_PT)
        self._sent_until: float | None = None

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self.remote is None:
            self.remote = int(addr[1])
        super().datagram_received(data, addr)

    async def send(self, *parts: Audio | str) -> None:
        """Keys (strings) and audio, one after the other, from now."""
        async with asyncio.timeout(WAIT):
            while self.remote is None:
                self.arrived.clear()
                await self.arrived.wait()
        loop = asyncio.get_running_loop()
        now = loop.time()
        builder = self.builder
        if self._sent_until is not None and now > self._sent_until:
            builder.pause(int((now - self._sent_until) * 1000))
        builder.time, builder.packets = 0.0, []
        for part in parts:
            if isinstance(part, str):
                builder.digits(part, KEY_MS, KEY_GAP_MS)
            else:
                builder.audio(part)
        self._sent_until = now + builder.time
        await self.play(self.remote, list(builder.packets))

    def heard(self) -> Audio:
        return self.audio({0: Codec.PCMU})

    def hears(self, reference: Audio, min_snr_db: float = 25.0) -> bool:
        return _contains(self.heard(), reference, min_snr_db)


def _contains(heard: Audio, reference: Audio, min_snr_db: float = 25.0) -> bool:
    """Whether `reference` is somewhere in `heard`, sample for sample (SNR at the best offset)."""
    if len(heard) < len(reference) or not len(reference):
        return False
    size = 1 << (len(heard) + len(reference)).bit_length()
    h, r = heard.astype(np.float64), reference.astype(np.float64)
    corr = np.fft.irfft(np.fft.rfft(h, size) * np.conj(np.fft.rfft(r, size)), size)
    offset = int(np.argmax(corr[: len(heard) - len(reference) + 1]))
    error = float(np.sum((h[offset : offset + len(reference)] - r) ** 2))
    power = float(np.sum(r**2))
    return power > 0 and (error == 0 or 10 * np.log10(power / error) >= min_snr_db)


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    try:
        async with asyncio.timeout(WAIT):
            while not await condition():  # noqa: ASYNC110 (polls the service)
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@dataclass
class Served:
    rt: Runtime
    api: Api
    smtp: SmtpServer
    sipp: str
    tmp: Path
    box: dict[str, Any]
    user_id: str
    calls: int = 0
    greeting_set: bool = False

    async def message(self, message_id: str) -> dict[str, Any] | None:
        response = await self.api.http.get(f"/v1/messages/{message_id}", headers=self.api.headers)
        return response.json() if response.status_code == 200 else None

    async def mailbox(self) -> dict[str, Any]:
        response = await self.api.http.get(
            f"/v1/mailboxes/{self.box['id']}", headers=self.api.headers
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    async def short_greeting(self) -> None:
        """A half-second greeting for the mailbox (rig's `short_greeting`), once."""
        if not self.greeting_set:
            await short_greeting(self.api, self.box["id"])
            self.greeting_set = True

    async def deposit(self, seed: int) -> dict[str, Any]:
        """A caller leaves a message on NUMBER (the user's, nobody answers; the short
        greeting, then the beep): the message."""
        await self.short_greeting()
        before = {m["id"] for m in await self.api.messages(self.box["id"])}
        self.calls += 1
        cwd = self.tmp / f"deposit{self.calls}"
        caller_pcap(cwd, silence(LEAD_MS), speech(MESSAGE_S, seed=seed))
        hold_ms = LEAD_MS + int(MESSAGE_S * 1000) + 500
        run = await sipp_calls(
            self.sipp, "deposit_uac.xml", cwd, sip_port(self.rt), hold_ms=hold_ms
        )
        assert run.returncode == 0, run.output
        await self.api.wait_messages(self.box["id"], len(before) + 1)
        [new] = [m for m in await self.api.messages(self.box["id"]) if m["id"] not in before]
        return new

    @contextlib.asynccontextmanager
    async def owner_call(self) -> AsyncIterator[Owner]:
        """The owner calls the menu; the block drives it; the call must then end by the
        service's BYE."""
        self.calls += 1
        cwd = self.tmp / f"owner{self.calls}"
        cwd.mkdir()
        owner = await Owner.open()
        assert isinstance(owner, Owner)
        run = asyncio.ensure_future(owner_sipp(self.sipp, cwd, sip_port(self.rt), owner.port))
        try:
            yield owner
            result = await asyncio.wait_for(run, WAIT)
            assert result[0] == 0, result[1]
        finally:
            run.cancel()
            owner.close()
        await settle(self.rt)


async def owner_sipp(sipp: str, cwd: Path, port: int, rtp_port: int) -> tuple[int, str]:
    """One SIPp call to the menu number that waits (a long while) for the service's BYE."""
    cmd = [
        sipp, f"127.0.0.1:{port}", "-sf", str(SCENARIOS / "menu_uac_owner.xml"),
        "-s", MENU_NUMBER, "-m", "1", "-t", "u1", "-i", "127.0.0.1",
        "-p", str(free_udp_port()), "-mp", str(free_udp_port()),
        *codec_keys(Codec.PCMU, rtp_port),
        "-timeout", f"{int(WAIT * 4)}s", "-timeout_error", "-recv_timeout", f"{int(WAIT * 4000)}",
        "-nostdin", "-trace_err", "-error_file", str(cwd / "errors.log"),
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await proc.communicate()
    except asyncio.CancelledError:
        proc.kill()
        await proc.wait()
        raise
    errors = cwd / "errors.log"
    text = out.decode(errors="replace") + (errors.read_text() if errors.exists() else "")
    return (proc.returncode if proc.returncode is not None else -1), text


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    tmp = tmp_path_factory.mktemp("phone_menu")
    backend = Backend(
        "sqlite-local",
        {
            "data_dir": tmp / "var",
            "secret_key": "test-secret-" + "x" * 32,
            "allow_private_networks": "127.0.0.0/8",
            "admin_key": ADMIN_KEY,
            "transcribe": False,
        },
    )
    with smtp_server() as smtp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(inbound, "voice", short_voice)
        async with (
            deposit_runtime(
                backend,
                smtp.url(),
                pin_max_failures=4,
                pin_lock_seconds=LOCK_SECONDS,
                rtp_timeout_seconds=300,
            ) as rt,  # fmt: skip
            api_of(rt) as api,
        ):
            box = await api.post(
                "/v1/mailboxes",
                {"name": "Alice", "notify_email": OWNER, "min_message_seconds": 1,
                 "skip_instructions": True, "timezone": "Europe/Paris"},
            )  # fmt: skip
            pin = await api.http.put(
                f"/v1/mailboxes/{box['id']}/pin", json={"pin": PIN}, headers=api.headers
            )
            assert pin.status_code in (200, 204), pin.text
            user = await api.post("/v1/users", {"username": EXTENSION})
            patched = await api.http.patch(
                f"/v1/users/{user['id']}", json={"voicemail_id": box["id"]}, headers=api.headers
            )
            assert patched.status_code == 200, patched.text
            await api.post(
                "/v1/numbers", {"e164": NUMBER, "dest_kind": "user", "dest_id": user["id"]}
            )
            await api.post("/v1/numbers", {"e164": MENU_NUMBER, "dest_kind": "voicemail_main"})
            yield Served(rt, api, smtp, _ensure_sipp(), tmp, box, user["id"])


PIECE = 4000


def pieces(audio: Audio) -> list[Audio]:
    """The message in half seconds (those that are not silence)."""
    cut = [audio[i : i + PIECE] for i in range(0, len(audio) - PIECE + 1, PIECE)]
    return [piece for piece in cut if np.abs(piece).max() > 200]


async def test_the_owner_walks_the_menu(served: Served) -> None:
    # no greeting nor name yet: "the person at extension 2 0 1 is not available"
    heard = await python_caller(served.rt, limit=len(GREETING) / 8000 + 1.0)
    # Its first quarter second left out: the service plays from the answer, the caller's
    # recording starts a moment later (at load 9 the first packets were lost that way).
    assert _contains(heard.heard.pcm, sent(GREETING)[2000:])
    await settle(served.rt)
    first = await served.deposit(seed=11)
    second = await served.deposit(seed=12)
    first_audio = await served.api.audio(first["id"])
    second_audio = await served.api.audio(second["id"])

    async def read(message: dict[str, Any]) -> bool:
        found = await served.message(message["id"])
        return found is not None and found["read"]

    # 1 listen: the first (oldest) new message plays, heard as it is
    async with served.owner_call() as owner:
        await owner.send(f"{EXTENSION}#{PIN}#", "1")
        await until(lambda: read(first), "the first message read")

        async def heard_first() -> bool:
            return all(owner.hears(piece) for piece in pieces(first_audio))

        await until(heard_first, "the first message heard")
        # 6 next: the second plays; 7 deletes it, 7 again undeletes, 9 2: to the urgent folder
        await owner.send("6")
        await until(lambda: read(second), "the second message read")
        await owner.send("7", "7")
        await owner.send("92")

        async def urgent() -> bool:
            found = await served.message(second["id"])
            return found is not None and found["folder"] == "urgent"

        await until(urgent, "the second message in the urgent folder")
        # 3: the envelope (the time in the mailbox's zone, the caller digit by digit)
        await owner.send("3")
        caller_said = short_voice([P.FROM, *say_digits(CALLER, "en")], "en")
        await until(_async(lambda: owner.hears(caller_said)), "the caller's number in the envelope")
        # 4 previous: the first again; 7 deletes it; still there until the call ends
        await owner.send("4")
        await owner.send("7")
        await asyncio.sleep(0.5)
        assert await served.message(first["id"]) is not None
        await owner.send("#")
    assert await served.message(first["id"]) is None  # deleted when the call ended
    kept = await served.message(second["id"])
    assert kept is not None and kept["folder"] == "urgent" and kept["read"]

    # 0 2: record the busy greeting (after the beep), 1 accepts it; 0 5: the new PIN, twice
    greeting = speech(2.0, seed=21)
    async with served.owner_call() as owner:
        await owner.send(f"{EXTENSION}#{PIN}#", "0", "2")
        await until(_async(lambda: owner.hears(beep(), 15.0)), "the beep")
        await owner.send(greeting, "#")

        async def heard_back() -> bool:
            return owner.hears(sent(greeting)[4000:12000])

        await until(heard_back, "the greeting played back")
        await owner.send("1")

        async def busy_set() -> bool:
            return (await served.mailbox())["busy_greeting_media_id"] is not None

        await until(busy_set, "the busy greeting stored")
        await owner.send("5", f"{NEW_PIN}#", f"{NEW_PIN}#", "*", "#")

    # a caller sent to the mailbox busy (do not disturb) hears that greeting; it hangs up by
    # the beep, before anything it sends could be a message (the mailbox keeps one from 1 s)
    dnd = await served.api.http.patch(
        f"/v1/users/{served.user_id}", json={"dnd": True}, headers=served.api.headers
    )
    assert dnd.status_code == 200
    heard = await python_caller(served.rt, limit=len(greeting) / 8000 + 1.0)
    assert _contains(heard.heard.pcm, sent(greeting)[4000:12000])
    await served.api.http.patch(
        f"/v1/users/{served.user_id}", json={"dnd": False}, headers=served.api.headers
    )
    await settle(served.rt)

    # the old PIN is refused, the new one lets the owner in (1 plays the second message, 7 #)
    async with served.owner_call() as owner:
        await owner.send(f"{EXTENSION}#{PIN}#", f"{EXTENSION}#{NEW_PIN}#", "1")

        async def heard_second() -> bool:
            return owner.hears(pieces(second_audio)[0]) and owner.hears(pieces(second_audio)[-1])

        await until(heard_second, "the second message heard after the new PIN")
        await owner.send("7", "#")
    assert await served.message(second["id"]) is None
    assert served.rt.telephony is not None and served.rt.telephony.stats.handler_errors == 0


async def test_wrong_pins_end_the_call_then_lock_the_mailbox_and_the_owner_is_told(
    served: Served,
) -> None:
    pin = await served.api.http.put(
        f"/v1/mailboxes/{served.box['id']}/pin", json={"pin": NEW_PIN}, headers=served.api.headers
    )  # the PIN the walk left, whatever became of it
    assert pin.status_code in (200, 204), pin.text
    message = await served.deposit(seed=31)
    source = source_of(None, CALLER)

    async def failures() -> tuple[int, datetime | None]:
        async with served.rt.uow() as uow:
            record = await uow.mailbox_pin_failures.get(served.box["id"], source)
        return (0, None) if record is None else (record.failures, record.locked_until)

    async with served.owner_call() as owner:  # three wrong PINs: goodbye
        await owner.send(f"{EXTENSION}#1111#", f"{EXTENSION}#1112#", f"{EXTENSION}#1113#")
    assert await failures() == (3, None)

    async with served.owner_call() as owner:  # one more, in another call: locked
        await owner.send(f"{EXTENSION}#1114#")
    count, locked_until = await failures()
    assert count == 0 and locked_until is not None and locked_until > datetime.now(UTC)

    async with served.owner_call() as owner:  # locked: the right PIN is not even asked
        await owner.send(f"{EXTENSION}#{NEW_PIN}#")
    assert (await failures())[1] == locked_until
    found = await served.message(message["id"])
    assert found is not None and not found["read"]

    def lock_mails() -> list[Received]:
        return [m for m in served.smtp.messages() if "locked" in str(m.message["Subject"])]

    await until(_async(lambda: bool(lock_mails())), "the owner's email")
    [mail] = lock_mails()
    assert mail.rcpt_tos == [OWNER] and "Alice" in str(mail.message["Subject"])

    await asyncio.sleep(max(0.0, (locked_until - datetime.now(UTC)).total_seconds()) + 0.2)
    async with served.owner_call() as owner:  # the lock is over: the right PIN works
        await owner.send(f"{EXTENSION}#{NEW_PIN}#", "1")

        async def read() -> bool:
            found = await served.message(message["id"])
            return found is not None and found["read"]

        await until(read, "the message read after the lock")
        await owner.send("0", "#")
    assert await failures() == (0, None)


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return check()

    return run


async def test_own_phone_star_97_and_any_mailbox_star_98(served: Served) -> None:
    """`*97` from a registered phone reaches its user's mailbox: without the PIN when the
    mailbox allows it (the counts are heard at once), else the PIN is asked; `*98` asks for
    the mailbox number."""
    api = served.api
    desk = await api.post("/v1/mailboxes", {"name": "Desk", "skip_pin_from_own_device": True})
    user_id = await desk_phone(api)
    patched = await api.http.patch(
        f"/v1/users/{user_id}", json={"voicemail_id": desk["id"]}, headers=api.headers
    )
    assert patched.status_code == 200, patched.text

    async def star(code: str, expected: Audio) -> None:
        """Dial `code` from the desk phone, hear `expected`, hang up (the phone's BYE)."""
        peer, owner = await RawPeer.open(), await Owner.open()
        assert isinstance(owner, Owner)
        try:
            dialled = await dial(served.rt, peer, code, owner.port)
            final = dialled.final
            assert status_of(final) == 200, final.decode()
            await until(_async(lambda: owner.hears(expected)), f"the prompt of {code}")
            contact = (header(final, "Contact") or "").strip("<>").split(">")[0]
            branch = "z9hG4bK-" + secrets.token_hex(6)
            bye = [
                f"BYE {contact} SIP/2.0",
                f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch={branch};rport",
                *(f"{name}: {header(final, name)}" for name in ("From", "To", "Call-ID")),
                "CSeq: 3 BYE", "Max-Forwards: 70", "Content-Length: 0",
            ]  # fmt: skip
            peer.send("\r\n".join(bye).encode() + b"\r\n\r\n", sip_port(served.rt))
            assert status_of(await peer.response(branch, timeout=WAIT, start=b"200")) == 200
        finally:
            peer.close()
            owner.close()
        await settle(served.rt)

    counts = say_counts([(0, "new-message"), (0, "saved-message")], "en")
    await star("*97", short_voice([P.YOU_HAVE, *counts], "en"))
    await star("*98", short_voice([P.ENTER_MAILBOX], "en"))
    changed = await api.http.patch(
        f"/v1/mailboxes/{desk['id']}", json={"skip_pin_from_own_device": False}, headers=api.headers
    )
    assert changed.status_code == 200
    await star("*97", short_voice([P.ENTER_PIN], "en"))
