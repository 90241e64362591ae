"""Drops end to end over real SIP on 127.0.0.1: afterbeep's delivery engine (the real detector)
calls a callee run by the test, a second TelephonyServer acting as the recipient's line.

- a machine (espeak-ng greeting, then a beep): the drop audio arrives only after the beep has
  ended, and it is the whole recording (aligned comparison);
- a person ("Hello?" then silence): the call ends and no audio at all reaches the callee;
- two calls: the callee sees call 1's INVITE, then call 2's, then call 1's CANCEL once call 2
  rings, and call 2 answered; call 1 is nowhere in the API;
- busy (486): retried after the backoff, then `busy`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pytest

from afterbeep.app import Runtime
from afterbeep.audio.amd_corpus import speak
from afterbeep.audio.compare import compare
from afterbeep.audio.tones import silence, tone
from afterbeep.telephony.call import CallSettings, SipCall
from afterbeep.telephony.interface import Audio, CallEnded
from afterbeep.telephony.server import Route, TelephonyServer, telephony_configs
from afterbeep.telephony.sip import IncomingInvite
from tests.conftest import Backend
from tests.drops.support import (
    RECIPIENT,
    attempts_of,
    insert_media,
    insert_send,
    insert_setup,
    insert_use_case,
    row_of,
)
from tests.e2e.rig import api_of, rtp_range, sent
from tests.ringless.test_delivery import NOON_EDT, WAIT, FakeClock, account_id_of, runtime_of

pytestmark = pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)

_SENTENCE = speak("This is the drop message from the clinic.", "en-us", 150, 50)
MESSAGE = np.concatenate([_SENTENCE] * 4)
MESSAGE = (MESSAGE / np.abs(MESSAGE).max() * 12000).astype(np.int16)
MESSAGE = np.concatenate([MESSAGE, silence(max(0, 10_500 - len(MESSAGE) // 8))])
# What the drops of `a_drop` play: the sentence once. The engine plays any stored media; the
# 10 s floor is the API's, checked when a send is created (tests/drops/test_api.py), so a
# message that meets it (MESSAGE, as tests/drops/test_shutdown.py uploads) is not needed here.
DROP_MESSAGE = MESSAGE[: len(_SENTENCE)]


def _pcm(text: str) -> Audio:
    floats = speak(text, "en-us", 160, 50)
    pcm: Audio = (floats / np.abs(floats).max() * 12000).astype(np.int16)
    return pcm


GREETING = np.concatenate(
    [
        silence(300),
        _pcm("Hi, you have reached the Smith family. We cannot come to the phone right now. "
             "Please leave a message after the tone."),
        silence(300),
        tone(1000, 400),
    ]
)
HELLO = np.concatenate([silence(200), _pcm("Hello?")])


@dataclass
class Line:
    """What one call to the callee saw: when things happened, and the audio it received."""

    index: int
    invited: float
    answered: float | None = None
    cancelled: float | None = None
    greeting_done: float | None = None
    ended: str | None = None
    blocks: list[tuple[float, Audio]] = field(default_factory=list)

    def write(self, pcm: Audio) -> None:
        self.blocks.append((asyncio.get_running_loop().time(), pcm.copy()))

    @property
    def received(self) -> Audio:
        return np.concatenate([b for _, b in self.blocks]) if self.blocks else np.zeros(0, np.int16)

    def received_since(self, at: float) -> Audio:
        """The audio whose samples arrived at `at` or later (a block is written when complete,
        so its n-th sample arrived (len - n) / 8000 s before it was written)."""
        parts = []
        for written, block in self.blocks:
            first = written - len(block) / 8000
            skip = int(np.clip(np.ceil((at - first) * 8000), 0, len(block)))
            parts.append(block[skip:])
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)

    def first_sound_at(self, threshold: int = 500) -> float | None:
        for written, block in self.blocks:
            loud = np.flatnonzero(np.abs(block.astype(np.int32)) > threshold)
            if loud.size:
                return written - (len(block) - int(loud[0])) / 8000
        return None


Behaviour = Callable[[SipCall, Line], Awaitable[None]] | int


class Callee:
    """A TelephonyServer answering the n-th INVITE with the n-th behaviour (the last repeats)."""

    def __init__(self, *behaviours: Behaviour) -> None:
        self.behaviours = behaviours
        self.lines: list[Line] = []
        self.server: TelephonyServer | None = None

    async def _route(self, invite: IncomingInvite) -> Route:
        loop = asyncio.get_running_loop()
        line = Line(len(self.lines) + 1, loop.time())
        self.lines.append(line)
        behaviour = self.behaviours[min(line.index, len(self.behaviours)) - 1]
        if isinstance(behaviour, int):
            return behaviour

        async def handler(call: SipCall) -> None:
            try:
                await behaviour(call, line)
            finally:
                line.ended = call.end_reason

        return handler

    async def idle(self) -> None:
        """Every call handler of the callee has returned."""
        assert self.server is not None
        async with asyncio.timeout(WAIT):
            await self.server.idle()

    @property
    def port(self) -> int:
        assert self.server is not None and self.server.udp_port is not None
        return self.server.udp_port


@contextlib.asynccontextmanager
async def callee(*behaviours: Behaviour) -> AsyncIterator[Callee]:
    low, high = rtp_range()
    ua_config, media_config = telephony_configs("127.0.0.1:0", None, low, high)
    # A line that hangs up after 3 s without RTP: afterbeep sends silence while it listens.
    media_config = replace(media_config, inactivity_timeout=3.0)
    c = Callee(*behaviours)
    # After the service's BYE the line keeps receiving for half a second, not 0.1 s: the RTP
    # sent before that BYE is all there, but a busy machine (load 14) delivered the last 200 ms
    # of a drop only after the line had closed its media.
    settings = CallSettings(hangup_grace=0.5)
    async with TelephonyServer(
        ua_config, media_config, router=c._route, call_settings=settings
    ) as server:
        c.server = server
        yield c


async def answer_with(call: SipCall, line: Line, greeting: Audio, ring: float = 0.3) -> None:
    """Ring, answer, play `greeting` then silence while recording what comes in, until the far
    end hangs up."""
    call.ringing()
    await asyncio.sleep(ring)
    await call.answer()
    loop = asyncio.get_running_loop()
    line.answered = loop.time()
    recording = asyncio.ensure_future(call.record(line, max_seconds=WAIT, silence_seconds=WAIT))
    try:
        with contextlib.suppress(CallEnded):
            await call.play(greeting)
            line.greeting_done = loop.time()
            await call.play(silence(int(WAIT * 1000)))  # a line sends RTP all along
        async with asyncio.timeout(WAIT):
            await recording
    finally:
        recording.cancel()
        await asyncio.gather(recording, return_exceptions=True)


async def machine(call: SipCall, line: Line) -> None:
    await answer_with(call, line, GREETING)


async def person(call: SipCall, line: Line) -> None:
    await answer_with(call, line, HELLO)


async def ring_until_cancelled(call: SipCall, line: Line) -> None:
    call.ringing()
    async with asyncio.timeout(WAIT):
        await call.ended.wait()
    line.cancelled = asyncio.get_running_loop().time()


@contextlib.asynccontextmanager
async def sender(backend: Backend) -> AsyncIterator[tuple[Runtime, FakeClock, object, str]]:
    clock = FakeClock(NOON_EDT)
    async with runtime_of(backend, clock, sip=True) as rt, api_of(rt) as api:
        yield rt, clock, api, await account_id_of(rt, api)


async def a_drop(
    rt: Runtime,
    account: str,
    port: int,
    technique: str,
    max_concurrent: int = 10,
    message: Audio = DROP_MESSAGE,
    **use_case: object,
) -> str:
    setup = await insert_setup(rt, account, trunk_port=port, max_concurrent=max_concurrent)
    uc = await insert_use_case(rt, account, setup, **use_case)  # type: ignore[arg-type]
    media = await insert_media(rt, account, message)
    return await insert_send(rt, account, setup, uc, media, technique=technique)


async def test_a_machine_gets_the_whole_message_after_its_beep(backend: Backend) -> None:
    async with callee(machine) as line_owner, sender(backend) as (rt, _clock, _api, account):
        drop_id = await a_drop(rt, account, line_owner.port, "single")
        async with asyncio.timeout(WAIT + 40):
            assert await rt.delivery().run_once() == 1
        await line_owner.idle()
        row = await row_of(rt, drop_id)
        assert (row.status, row.answered_by) == ("left_voicemail", "machine_end_beep"), row
        greeting_ms = len(GREETING) // 8
        assert row.beep_ms is not None and abs(row.beep_ms - greeting_ms) <= 100, row.beep_ms
        (line,) = line_owner.lines
        assert line.greeting_done is not None and line.ended == "remote"
        assert line.answered is not None
        before_beep_end = line.received.size - line.received_since(line.greeting_done).size
        assert before_beep_end > 0.8 * (line.greeting_done - line.answered) * 8000  # silence
        sound = line.first_sound_at()
        assert sound is not None and sound >= line.greeting_done - 0.05, (sound, line.greeting_done)
        result = compare(sent(DROP_MESSAGE), line.received_since(line.greeting_done - 0.05))
        assert result.snr_db > 30, result
        assert result.missing_head_ms < 40 and result.missing_tail_ms < 40, result
        (attempt,) = await attempts_of(rt, drop_id)
        assert (attempt.outcome, attempt.sip_code) == ("left_voicemail", 200)


async def test_a_person_hears_nothing_and_the_call_ends(backend: Backend) -> None:
    async with callee(person) as line_owner, sender(backend) as (rt, _clock, _api, account):
        drop_id = await a_drop(rt, account, line_owner.port, "single")
        async with asyncio.timeout(WAIT + 40):
            assert await rt.delivery().run_once() == 1
        await line_owner.idle()
        row = await row_of(rt, drop_id)
        assert (row.status, row.answered_by) == ("human_answered", "human"), row
        assert row.detection_ms is not None and row.detection_ms <= 2500
        (line,) = line_owner.lines
        assert line.ended == "remote"  # afterbeep hung up
        received = line.received
        assert received.size == 0 or int(np.abs(received.astype(np.int32)).max()) < 100


async def test_two_calls_cancel_the_first_when_the_second_rings(backend: Backend) -> None:
    async with (
        callee(ring_until_cancelled, machine) as line_owner,
        sender(backend) as (rt, _clock, api, account),
    ):
        drop_id = await a_drop(
            rt, account, line_owner.port, "two_call",
            second_call_delay_ms=1000, first_call_bound_ms=5000,
        )
        async with asyncio.timeout(WAIT + 40):
            assert await rt.delivery().run_once() == 1
        first, second = line_owner.lines
        assert first.cancelled is not None and first.answered is None
        assert first.invited < second.invited < first.cancelled
        assert second.answered is not None and first.cancelled < second.answered
        assert second.invited - first.invited >= 0.9  # call 2 waited for the delay
        row = await row_of(rt, drop_id)
        assert (row.status, row.attempts) == ("left_voicemail", 1), row
        assert second.greeting_done is not None
        compare_ = compare(sent(DROP_MESSAGE), second.received_since(second.greeting_done - 0.05))
        assert compare_.snr_db > 30 and first.received.size == 0

        http, headers = api.http, api.headers  # type: ignore[attr-defined]
        detail = (await http.get(f"/v1/drops/{drop_id}", headers=headers)).json()
        assert detail["attempt_count"] == 1
        assert [(a["number"], a["sip_code"], a["outcome"]) for a in detail["attempts"]] == [
            (1, 200, "left_voicemail")
        ]
        stats = (await http.get("/v1/drops/stats", headers=headers)).json()
        assert stats["total"] == 1 and stats["counts"]["left_voicemail"] == 1
        listed = (await http.get("/v1/drops", headers=headers)).json()["items"]
        assert [d["id"] for d in listed] == [drop_id]


async def test_busy_is_retried_then_busy(backend: Backend) -> None:
    async with callee(486) as line_owner, sender(backend) as (rt, clock, _api, account):
        drop_id = await a_drop(rt, account, line_owner.port, "two_call", max_attempts=2, backoff=60)
        worker = rt.delivery()
        async with asyncio.timeout(WAIT):
            await worker.run_once()
        row = await row_of(rt, drop_id)
        assert (row.status, row.attempts, row.failure_reason) == ("accepted", 1, "busy")
        clock.advance(60)
        async with asyncio.timeout(WAIT):
            await worker.run_once()
        row = await row_of(rt, drop_id)
        assert (row.status, row.attempts) == ("busy", 2)
        attempts = await attempts_of(rt, drop_id)
        assert [(a.sip_code, a.outcome) for a in attempts] == [(486, "busy"), (486, "busy")]
        assert len(line_owner.lines) == 4  # two calls per attempt: each INVITE met 486
        assert RECIPIENT.endswith("0188")


async def test_two_calls_on_a_one_call_trunk_place_a_single_call(backend: Backend) -> None:
    async with callee(machine) as line_owner, sender(backend) as (rt, _clock, _api, account):
        drop_id = await a_drop(rt, account, line_owner.port, "two_call", max_concurrent=1)
        async with asyncio.timeout(WAIT + 40):
            assert await rt.delivery().run_once() == 1
        await line_owner.idle()
        (line,) = line_owner.lines  # one INVITE, answered at once: no first call held the line
        assert line.answered is not None
        row = await row_of(rt, drop_id)
        assert (row.status, row.technique) == ("left_voicemail", "two_call"), row
