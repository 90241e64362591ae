"""The phone menu over the scripted fake call: every key path, against an in-memory mailbox.

Prompts are silent here (the voice keeps the names it was asked to say, in order), so the only
audio on the call's timeline is messages and recordings: keys are pressed at known instants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from afterbeep.domain.messages import Folder
from afterbeep.domain.say import say_datetime
from afterbeep.telephony import menu_prompts as P
from afterbeep.telephony.fake import FakeCall
from afterbeep.telephony.interface import Audio, Call
from afterbeep.telephony.prompts import beep
from afterbeep.telephony.scripts.phone_menu import (
    SEEK_SAMPLES,
    Door,
    GreetingKind,
    LoginResult,
    MenuEnd,
    MenuMessage,
    Voice,
    phone_menu,
)

PIN = "2580"
WHEN = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
BEEP_MS = len(beep()) // 8


class SilentVoice:
    def __init__(self) -> None:
        self.said: list[str] = []

    def __call__(self, names: Sequence[str], language: str) -> Audio:
        self.said.extend(names)
        return np.zeros(0, dtype=np.int16)


def tone(value: int, seconds: float = 1.0) -> Audio:
    return np.full(int(seconds * 8000), value, dtype=np.int16)


@dataclass
class FakeSession:
    messages_held: list[MenuMessage]
    audio_of: dict[str, Audio]
    callable_back: bool = False
    language: str = "en"
    read: list[str] = field(default_factory=list)
    moved: list[tuple[str, Folder]] = field(default_factory=list)
    forwarded: list[tuple[str, str]] = field(default_factory=list)
    called_back: list[str] = field(default_factory=list)
    greetings: dict[GreetingKind, Audio] = field(default_factory=dict)
    pins: list[str] = field(default_factory=list)
    finished: list[str] | None = None

    def now(self) -> datetime:
        return NOW

    async def messages(self) -> list[MenuMessage]:
        return list(self.messages_held)

    async def audio(self, message_id: str) -> Audio:
        return self.audio_of[message_id]

    async def mark_read(self, message_id: str) -> None:
        self.read.append(message_id)

    async def move(self, message_id: str, folder: Folder) -> None:
        self.moved.append((message_id, folder))

    async def forward(self, message_id: str, extension: str) -> bool:
        self.forwarded.append((message_id, extension))
        return extension == "202"

    async def can_call_back(self) -> bool:
        return self.callable_back

    async def call_back(self, call: Call, number: str) -> None:
        self.called_back.append(number)

    async def save_greeting(self, kind: GreetingKind, audio: Audio) -> None:
        self.greetings[kind] = audio

    async def remove_greeting(self, kind: GreetingKind) -> None:
        del self.greetings[kind]

    async def has_greeting(self, kind: GreetingKind) -> bool:
        return kind in self.greetings

    async def change_pin(self, pin: str) -> None:
        self.pins.append(pin)

    async def finish(self, deleted: Sequence[str]) -> None:
        self.finished = list(deleted)


@dataclass
class FakeDoor:
    session: FakeSession
    needs_mailbox: bool = False
    needs_pin: bool = True
    results: list[LoginResult] = field(default_factory=list)  # instead of comparing the PIN
    language: str = "en"
    extensions: tuple[str, ...] = ("201",)
    chosen: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    is_locked: bool = False

    async def choose(self, extension: str) -> bool:
        self.chosen.append(extension)
        return extension in self.extensions

    async def locked(self) -> bool:
        return self.is_locked

    async def check(self, pin: str) -> LoginResult:
        self.checked.append(pin)
        if self.results:
            return self.results.pop(0)
        return LoginResult.OK if pin == PIN else LoginResult.WRONG

    async def open(self) -> FakeSession:
        return self.session


class Keys:
    """Keys pressed one after the other, `gap` ms apart unless told."""

    def __init__(self, start_ms: int = 100) -> None:
        self.at = start_ms
        self.keys: list[tuple[int, str]] = []

    def press(self, keys: str, gap: int = 100) -> Keys:
        for key in keys:
            self.at += gap
            self.keys.append((self.at, key))
            gap = 100
        return self


async def run(call: FakeCall, door: Door, voice: Voice) -> MenuEnd:
    """The menu on the fake call, timed by it."""
    return await phone_menu(call, door, voice, clock=lambda: call.now / 8000)


def three_messages() -> FakeSession:
    held = [
        MenuMessage("msg_a", "+12025550123", WHEN, read=False),
        MenuMessage("msg_b", None, WHEN, read=False),
        MenuMessage("msg_c", "+12025550199", WHEN, read=True),
    ]
    audio = {"msg_a": tone(1000), "msg_b": tone(2000), "msg_c": tone(3000)}
    return FakeSession(held, audio)


def played_values(call: FakeCall) -> list[int]:
    """The value of each message piece played (the test messages are constant tones)."""
    return [int(audio[0]) for _, audio in call.played if len(audio) and audio[0] in (1000, 2000, 3000)]


def runs(values: list[int]) -> list[int]:
    out: list[int] = []
    for value in values:
        if not out or out[-1] != value:
            out.append(value)
    return out


async def test_listening_keys_previous_repeat_next_delete_save_envelope_forward() -> None:
    session = three_messages()
    door = FakeDoor(session)
    voice = SilentVoice()
    keys = Keys().press(PIN + "#").press("1")  # message a plays (1 s)
    keys.press("6", gap=1500)  # b plays
    keys.press("4", gap=300)  # during b: back to a
    keys.press("7", gap=1500).press("7").press("7")  # delete, undelete, delete a
    keys.press("91")  # a to the saved folder
    keys.press("3")  # the envelope of a
    keys.press("8202#")  # forward a to 202
    keys.press("8999#")  # no mailbox 999
    keys.press("5")  # repeat a
    keys.press("6", gap=1500)  # b
    keys.press("6", gap=1500)  # c
    keys.press("6", gap=1500)  # no more: the main menu
    keys.press("#")
    call = FakeCall(keys=keys.keys)

    end = await run(call, door, voice)

    assert end is MenuEnd.EXIT and call.hung_up_by_us
    assert door.checked == [PIN]
    values = played_values(call)
    assert runs(values) == [1000, 2000, 1000, 2000, 3000]
    # a three times (first, after 4, after 5), b cut once then whole, c whole
    assert (values.count(1000), values.count(2000), values.count(3000)) == (3, 2, 1)
    assert session.read == ["msg_a", "msg_b"]  # c was read already
    assert session.finished == ["msg_a"]  # deleted when the call ends, not before
    assert session.moved == [("msg_a", Folder.SAVED)]
    assert session.forwarded == [("msg_a", "202"), ("msg_a", "999")]
    said = voice.said
    assert said[:2] == [P.ENTER_PIN, P.YOU_HAVE]
    assert said[2:8] == ["say-2", "say-new-messages", "say-and", "say-1", "say-saved-message", P.MAIN_MENU]
    assert said[said.index(P.MESSAGE) - 1 : said.index(P.MESSAGE) + 2] == [P.NEW_MESSAGES, P.MESSAGE, "say-1"]
    events = {
        P.MESSAGE_DELETED, P.MESSAGE_UNDELETED, P.MOVED_TO_SAVED, P.MESSAGE_FORWARDED,
        P.NO_SUCH_MAILBOX, P.NO_MORE_MESSAGES,
    }  # fmt: skip
    order = [n for n in said if n in events]
    assert order == [
        P.MESSAGE_DELETED, P.MESSAGE_UNDELETED, P.MESSAGE_DELETED, P.MOVED_TO_SAVED,
        P.MESSAGE_FORWARDED, P.NO_SUCH_MAILBOX, P.NO_MORE_MESSAGES,
    ]  # fmt: skip
    received, caller = said.index(P.RECEIVED), said.index(P.FROM)
    assert said[received + 1 : caller] == say_datetime(WHEN, "en", now=NOW)
    digits = ["say-plus", *(f"say-{d}" for d in "12025550123")]
    assert said[caller + 1 : caller + 13] == digits  # digit by digit
    assert P.SAVED_MESSAGES in said  # before c, the saved one
    assert P.PRESS_5_CALL_BACK not in said  # the account cannot call out
    assert said[-1] == P.GOODBYE


async def test_star_rewinds_and_pound_skips_three_seconds_while_a_message_plays() -> None:
    long = np.arange(8 * 8000, dtype=np.int16) // 8 + 1  # 8 s; each sample says where it is
    session = FakeSession([MenuMessage("msg_a", None, WHEN, read=False)], {"msg_a": long})
    keys = Keys().press(PIN + "#").press("1")
    keys.press("#", gap=700)  # 0.7 s in: on to 3.7 s
    keys.press("*", gap=700)  # 4.4 s: back to 1.4 s
    keys.press("0", gap=400)  # the main menu
    keys.press("#")
    call = FakeCall(keys=keys.keys)

    assert await run(call, FakeDoor(session), SilentVoice()) is MenuEnd.EXIT

    starts = [(int(audio[0]) - 1) * 8 for _, audio in call.played if len(audio)]
    expected = [0, 5600 + SEEK_SAMPLES, 5600 + SEEK_SAMPLES + 5600 - SEEK_SAMPLES]
    assert len(starts) == 3
    assert all(abs(got - want) <= 16 for got, want in zip(starts, expected, strict=True))
    assert session.read == ["msg_a"] and session.finished == []


async def test_envelope_offers_to_call_back_when_the_account_may_call_out() -> None:
    session = three_messages()
    session.callable_back = True
    keys = Keys().press(PIN + "#").press("1").press("3", gap=1500).press("5").press("#", gap=500)
    call = FakeCall(keys=keys.keys)
    voice = SilentVoice()

    await run(call, FakeDoor(session), voice)

    assert P.PRESS_5_CALL_BACK in voice.said and P.CALLING_BACK in voice.said
    assert session.called_back == ["+12025550123"]


async def test_no_messages_help_and_silence_end_with_goodbye() -> None:
    session = FakeSession([], {})
    voice = SilentVoice()
    keys = Keys().press(PIN + "#").press("*").press("1").press("2")  # 2: not a choice
    call = FakeCall(keys=keys.keys)

    assert await run(call, FakeDoor(session), voice) is MenuEnd.EXIT

    assert P.HELP in voice.said and P.NO_MESSAGES in voice.said and P.INVALID in voice.said
    assert voice.said.count(P.MAIN_MENU) == 5  # then three silences: goodbye
    assert voice.said[-1] == P.GOODBYE and call.hung_up_by_us


async def test_greetings_recorded_by_phone_with_review_and_the_temporary_one_removed() -> None:
    session = FakeSession([], {})
    said = np.tile(np.array([0, 6000, 0, -6000], dtype=np.int16), 8000 * 30)  # a loud tone
    keys = Keys().press(PIN + "#").press("0")
    keys.press("1")  # the unavailable greeting: beep, then record
    keys.press("#", gap=BEEP_MS + 1500)  # 1.5 s recorded; played back
    keys.press("3", gap=2000)  # listen again
    keys.press("2", gap=2000)  # record again
    keys.press("#", gap=BEEP_MS + 1200)
    keys.press("1", gap=200)  # accepted during the playback
    keys.press("2").press("#", gap=BEEP_MS + 300)  # busy: too short (0.3 s)...
    keys.press("#", gap=BEEP_MS + 1000).press("1", gap=1500)  # ...then 1 s, accepted
    keys.press("3").press("#", gap=BEEP_MS + 1100).press("1", gap=1600)  # the name
    keys.press("4").press("#", gap=BEEP_MS + 1000).press("1", gap=1500)  # the temporary one
    keys.press("4").press("4")  # 4 again: removed
    keys.press("*").press("#")
    call = FakeCall(caller_audio=said, keys=keys.keys)
    voice = SilentVoice()

    assert await run(call, FakeDoor(session), voice) is MenuEnd.EXIT

    assert set(session.greetings) == {GreetingKind.UNAVAILABLE, GreetingKind.BUSY, GreetingKind.NAME}
    assert abs(len(session.greetings[GreetingKind.UNAVAILABLE]) - 1200 * 8) <= 160
    assert abs(len(session.greetings[GreetingKind.BUSY]) - 1000 * 8) <= 160
    assert abs(len(session.greetings[GreetingKind.NAME]) - 1100 * 8) <= 160
    assert voice.said.count(P.RECORD_AFTER_TONE) == 6
    said = voice.said
    assert P.RECORDING_TOO_SHORT in said and P.TEMP_GREETING_ON in said
    assert P.TEMP_GREETING_REMOVED in said
    assert said.count(P.GREETING_SAVED) == 3 and said.count(P.NAME_SAVED) == 1
    kinds = [n for n in said if n.startswith("vmm-record-") and n != P.RECORD_AFTER_TONE]
    assert kinds == [P.RECORD_UNAVAILABLE] * 2 + [P.RECORD_BUSY] * 2 + [P.RECORD_NAME, P.RECORD_TEMPORARY]


async def test_change_pin_twice_and_trivial_ones_refused() -> None:
    session = FakeSession([], {})
    keys = Keys().press(PIN + "#").press("0")
    keys.press("5").press("1234#")  # a straight run: refused
    keys.press("5").press("4826#").press("4827#")  # not the same twice
    keys.press("5").press("4826#").press("4826#")
    keys.press("*").press("#")
    voice = SilentVoice()

    await run(FakeCall(keys=keys.keys), FakeDoor(session), voice)

    assert session.pins == ["4826"]
    outcomes = [n for n in voice.said if n in {P.PIN_TOO_SIMPLE, P.PINS_DO_NOT_MATCH, P.PIN_CHANGED}]
    assert outcomes == [P.PIN_TOO_SIMPLE, P.PINS_DO_NOT_MATCH, P.PIN_CHANGED]


async def test_three_wrong_pins_end_the_call_with_goodbye() -> None:
    door = FakeDoor(FakeSession([], {}), needs_mailbox=True)
    keys = Keys().press("201#1111#").press("201#2222#").press("999#3333#").press("201#" + PIN + "#")
    call = FakeCall(keys=keys.keys)
    voice = SilentVoice()

    assert await run(call, door, voice) is MenuEnd.LOGIN_FAILED

    assert door.chosen == ["201", "201", "999"]
    assert door.checked == ["1111", "2222"]  # an unknown mailbox is asked its PIN, not checked
    assert voice.said.count(P.LOGIN_INCORRECT) == 3
    assert voice.said[-1] == P.TOO_MANY_ATTEMPTS and call.hung_up_by_us
    assert door.session.finished is None  # never opened


async def test_a_locked_mailbox_is_not_even_asked_its_pin() -> None:
    door = FakeDoor(FakeSession([], {}), is_locked=True)
    voice = SilentVoice()
    assert await run(FakeCall(keys=Keys().press(PIN + "#").keys), door, voice) is MenuEnd.LOCKED
    assert door.checked == [] and voice.said == [P.LOCKED]


async def test_a_wrong_pin_that_locks_ends_the_call() -> None:
    door = FakeDoor(FakeSession([], {}), results=[LoginResult.WRONG, LoginResult.LOCKED])
    voice = SilentVoice()
    keys = Keys().press("1111#").press(PIN + "#").press(PIN + "#")
    assert await run(FakeCall(keys=keys.keys), door, voice) is MenuEnd.LOCKED
    assert door.checked == ["1111", PIN]
    assert voice.said == [P.ENTER_PIN, P.WRONG_PIN, P.ENTER_PIN, P.LOCKED]


async def test_own_phone_without_pin_and_hang_up_still_deletes() -> None:
    session = three_messages()
    door = FakeDoor(session, needs_pin=False)
    keys = Keys().press("1").press("7", gap=300)
    call = FakeCall(keys=keys.keys, hangup_at_ms=keys.at + 200)

    assert await run(call, door, SilentVoice()) is MenuEnd.CALLER_GONE

    assert door.checked == []
    assert session.finished == ["msg_a"]


async def test_keys_typed_ahead_answer_before_anything_plays() -> None:
    """4 then 7 pressed during the envelope (a prompt that listens for no key): 4 goes back
    to a, whose announcement is skipped by the 7 waiting: a is deleted, not played again."""
    session = three_messages()
    voice = SilentVoice()

    class Talking:
        """Prompts that take 0.5 s each, so keys can be pressed during them."""

        def __call__(self, names: Sequence[str], language: str) -> Audio:
            voice(names, language)
            return np.zeros(4000 * len(names), dtype=np.int16)

    keys = Keys().press(PIN + "#", gap=3000).press("1", gap=9000)  # a: after the counts
    keys.press("6", gap=3000).press("3", gap=3000)  # b plays; then its envelope
    keys.press("4", gap=1500).press("7", gap=100)  # during the envelope
    keys.press("#", gap=12000)
    call = FakeCall(keys=keys.keys)

    assert await phone_menu(call, FakeDoor(session), Talking(), clock=lambda: call.now / 8000) is MenuEnd.EXIT

    assert runs(played_values(call)) == [1000, 2000]
    assert session.finished == ["msg_a"]
