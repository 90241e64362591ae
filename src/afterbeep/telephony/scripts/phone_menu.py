"""The owner's voicemail by phone (the Asterisk layout users know).

answer → (mailbox number, when not known) → PIN (three tries; a locked mailbox says so) →
"you have N new and M saved messages" → main menu:
  1 listen (new first, then saved): while or after a message 4 previous, 5 repeat, 6 next,
    7 delete (again: undelete), 9 save to a folder, 3 envelope (then 5 calls back),
    8 forward to another mailbox; while it plays `*` back 3 s, `#` on 3 s; after it `*` help,
    `#` goodbye, 0 back to the main menu
  0 mailbox options: 1 unavailable greeting, 2 busy, 3 name, 4 temporary (4 again removes it),
    5 change the PIN
  `*` help, `#` goodbye.
Listening marks a message read; deleted messages go when the call ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np

from afterbeep.domain.errors import WeakPin
from afterbeep.domain.mailboxes import check_pin
from afterbeep.domain.messages import Folder
from afterbeep.domain.say import say_counts, say_datetime, say_digits, say_number
from afterbeep.telephony import menu_prompts as P
from afterbeep.telephony.interface import Audio, Call, CallEnded
from afterbeep.telephony.prompts import beep


class GreetingKind(enum.StrEnum):
    UNAVAILABLE = "greeting_media_id"
    BUSY = "busy_greeting_media_id"
    NAME = "name_media_id"
    TEMPORARY = "temp_greeting_media_id"


FOLDER_KEYS = {"0": Folder.NEW, "1": Folder.SAVED, "2": Folder.URGENT}
MOVED_TO = {
    Folder.NEW: P.MOVED_TO_NEW,
    Folder.SAVED: P.MOVED_TO_SAVED,
    Folder.URGENT: P.MOVED_TO_URGENT,
}
RECORD_WHAT = {
    GreetingKind.UNAVAILABLE: P.RECORD_UNAVAILABLE,
    GreetingKind.BUSY: P.RECORD_BUSY,
    GreetingKind.NAME: P.RECORD_NAME,
    GreetingKind.TEMPORARY: P.RECORD_TEMPORARY,
}
GREETING_KEYS = {"1": GreetingKind.UNAVAILABLE, "2": GreetingKind.BUSY, "3": GreetingKind.NAME}

MAX_TRIES = 3  # wrong PINs (or mailbox numbers) in one call
MAX_SILENCES = 3  # prompts left unanswered before goodbye
KEY_TIMEOUT = 5.0
ENTRY_TIMEOUT = 10.0  # a mailbox number, a PIN
INTER_DIGIT = 4.0
SEEK_SAMPLES = 3 * 8000  # `*` and `#` while a message plays
MIN_GREETING_SAMPLES = 4000  # 0.5 s: a name can be short
GREETING_MAX_SECONDS = 120.0
GREETING_SILENCE_SECONDS = 5.0
DURING_MESSAGE = "34567890*#"
AFTER_MESSAGE = "03456789*#"


class Voice(Protocol):
    def __call__(self, names: Sequence[str], language: str) -> Audio:
        """The prompts and fragments, one after the other, in `language`."""
        ...


@dataclass(frozen=True, slots=True)
class MenuMessage:
    id: str
    caller: str | None
    received_at: datetime  # in the mailbox's time zone
    read: bool


class LoginResult(enum.StrEnum):
    OK = "ok"
    WRONG = "wrong"
    LOCKED = "locked"  # wrong too often: not even checked while locked


class Session(Protocol):
    """One owner's mailbox, opened once the PIN was right."""

    language: str

    def now(self) -> datetime:
        """Now, in the mailbox's time zone (the envelope says "today", "yesterday")."""
        ...

    async def messages(self) -> list[MenuMessage]:
        """Unread first, then read; oldest first in each."""
        ...

    async def audio(self, message_id: str) -> Audio: ...
    async def mark_read(self, message_id: str) -> None: ...
    async def move(self, message_id: str, folder: Folder) -> None: ...
    async def forward(self, message_id: str, extension: str) -> bool: ...
    async def can_call_back(self) -> bool: ...

    async def call_back(self, call: Call, number: str) -> None:
        """Bridge the call to `number` (returns when that call ends)."""
        ...

    async def save_greeting(self, kind: GreetingKind, audio: Audio) -> None: ...
    async def remove_greeting(self, kind: GreetingKind) -> None: ...
    async def has_greeting(self, kind: GreetingKind) -> bool: ...
    async def change_pin(self, pin: str) -> None: ...

    async def finish(self, deleted: Sequence[str]) -> None:
        """The call is over: delete what was deleted in it."""
        ...


class Door(Protocol):
    """How the caller gets in: the mailbox known (`*97`) or asked for, then the PIN."""

    language: str
    needs_mailbox: bool  # ask for the mailbox number (the owner's extension)
    needs_pin: bool

    async def choose(self, extension: str) -> bool:
        """Whether `extension` names a mailbox (an unknown one still gets asked its PIN); the
        language becomes the mailbox's."""
        ...

    async def locked(self) -> bool: ...
    async def check(self, pin: str) -> LoginResult: ...
    async def open(self) -> Session: ...


class MenuEnd(enum.StrEnum):
    EXIT = "exit"  # `#` or silence: goodbye
    LOGIN_FAILED = "login_failed"
    LOCKED = "locked"
    CALLER_GONE = "caller_gone"


class _Sink:
    def __init__(self) -> None:
        self.parts: list[Audio] = []

    def write(self, pcm: Audio) -> None:
        self.parts.append(pcm.copy())

    def audio(self) -> Audio:
        return np.concatenate(self.parts) if self.parts else np.zeros(0, dtype=np.int16)


async def phone_menu(
    call: Call, door: Door, voice: Voice, clock: Callable[[], float] | None = None
) -> MenuEnd:
    """`clock`: seconds, to know how far a message had played when a key stopped it (the
    event loop's time by default)."""
    await call.answer()
    menu = _Menu(call, voice, door.language, clock or asyncio.get_running_loop().time)
    try:
        end = await _log_in(menu, door)
        if end is not None:
            await call.hangup()  # "locked" and "too many attempts" say goodbye
            return end
        session = await door.open()
        menu.language = session.language
        deleted: list[str] = []
        try:
            await _Mailbox(menu, session, deleted).run()
            await menu.say_and_hang_up(P.GOODBYE)
        finally:
            await session.finish(deleted)
        return MenuEnd.EXIT
    except CallEnded:
        return MenuEnd.CALLER_GONE


async def _log_in(menu: _Menu, door: Door) -> MenuEnd | None:
    """None once in; else why not (what the caller was told ends with goodbye)."""
    if await door.locked():
        await menu.say([P.LOCKED])
        return MenuEnd.LOCKED
    for _ in range(MAX_TRIES):
        known = True
        if door.needs_mailbox:
            extension = await menu.entry([P.ENTER_MAILBOX], 20)
            known = bool(extension) and await door.choose(extension)
            menu.language = door.language
            if known and await door.locked():
                await menu.say([P.LOCKED])
                return MenuEnd.LOCKED
        if not door.needs_pin and known:
            return None
        pin = await menu.entry([P.ENTER_PIN], 10)
        if known:
            result = await door.check(pin)
            if result is LoginResult.OK:
                return None
            if result is LoginResult.LOCKED:
                await menu.say([P.LOCKED])
                return MenuEnd.LOCKED
        await menu.say([P.LOGIN_INCORRECT if door.needs_mailbox else P.WRONG_PIN])
    await menu.say([P.TOO_MANY_ATTEMPTS])
    return MenuEnd.LOGIN_FAILED


@dataclass
class _Menu:
    call: Call
    voice: Voice
    language: str
    clock: Callable[[], float]
    # A key typed ahead (pressed while nothing listened for it), answered before anything plays.
    pending: str | None = None

    async def say(self, names: Sequence[str], interrupt_on: str = "") -> str | None:
        """Play the prompts; with `interrupt_on`, a key typed ahead or pressed meanwhile
        answers at once (a typed-ahead key of another kind stays pending, nothing plays)."""
        if interrupt_on:
            if self.pending is None:
                self.pending = await self.call.collect_digits(1, 0, terminator="") or None
            if self.pending is not None:
                if self.pending not in interrupt_on:
                    return None
                key, self.pending = self.pending, None
                return key
        return await self.call.play(self.voice(names, self.language), interrupt_on=interrupt_on)

    async def key(self, timeout: float = KEY_TIMEOUT) -> str | None:
        """The next key (one typed ahead first); None after `timeout`."""
        if self.pending is not None:
            key, self.pending = self.pending, None
            return key
        return await self.call.collect_digits(1, timeout, terminator="") or None

    async def ask(self, names: Sequence[str], keys: str, timeout: float = KEY_TIMEOUT) -> str | None:
        """One key of `keys` (a key pressed during the prompt counts). Silence or another key
        ("invalid") asks again, `MAX_SILENCES` times at most: then None."""
        for _ in range(MAX_SILENCES):
            key = await self.say(names, interrupt_on=keys)
            if key is None:
                key = await self.key(timeout)
            if key is None:
                continue
            if key in keys:
                return key
            await self.say([P.INVALID])
        return None

    async def entry(self, names: Sequence[str], max_digits: int) -> str:
        """Digits ended by `#` (or a pause)."""
        await self.say(names)
        first, self.pending = self.pending, None
        if first == "#":
            return ""
        first = first or ""
        return first + await self.call.collect_digits(
            max_digits - len(first), ENTRY_TIMEOUT, terminator="#", inter_digit_timeout=INTER_DIGIT
        )

    async def say_and_hang_up(self, name: str) -> None:
        await self.say([name])
        await self.call.hangup()


@dataclass
class _Mailbox:
    menu: _Menu
    session: Session
    deleted: list[str]
    messages: list[MenuMessage] = field(default_factory=list)

    async def run(self) -> None:
        """The main menu until `#` or silence."""
        await self._counts()
        while True:
            key = await self.menu.ask([P.MAIN_MENU], "10*#")
            if key is None or key == "#":
                return
            if key == "*":
                await self.menu.say([P.HELP])
            elif key == "1":
                if not await self._listen():
                    return
            elif key == "0":
                await self._options()

    async def _counts(self) -> None:
        self.messages = await self.session.messages()
        new = sum(1 for m in self.messages if not m.read)
        saved = len(self.messages) - new
        language = self.session.language
        counts = [(new, "new-message"), (saved, "saved-message")]
        key = await self.menu.say(
            [P.YOU_HAVE, *say_counts(counts, language)], interrupt_on="10*#"
        )
        if key is not None:
            self.menu.pending = key  # a key cutting it answers the main menu

    # -- listening -------------------------------------------------------------------------

    async def _listen(self) -> bool:
        """The messages one by one; False: `#` or silence (goodbye), True: the main menu."""
        self.messages = await self.session.messages()
        if not self.messages:
            await self.menu.say([P.NO_MESSAGES])
            return True
        index, play = 0, True
        while True:
            message = self.messages[index]
            key = await self._play(index, message) if play else None
            play = False
            if key is None:
                key = await self.menu.ask([P.MESSAGE_MENU], AFTER_MESSAGE)
            if key is None or key == "#":
                return False
            if key == "0":
                return True
            if key == "*":
                await self.menu.say([P.HELP])
            elif key == "4":
                if index == 0:
                    await self.menu.say([P.NO_PREVIOUS_MESSAGE])
                else:
                    index, play = index - 1, True
            elif key == "5":
                play = True
            elif key == "6":
                if index + 1 >= len(self.messages):
                    await self.menu.say([P.NO_MORE_MESSAGES])
                    return True
                index, play = index + 1, True
            elif key == "7":
                if message.id in self.deleted:
                    self.deleted.remove(message.id)
                    await self.menu.say([P.MESSAGE_UNDELETED])
                else:
                    self.deleted.append(message.id)
                    await self.menu.say([P.MESSAGE_DELETED, P.PRESS_7_UNDELETE])
            elif key == "9":
                folder = await self.menu.ask([P.CHOOSE_FOLDER], "012#")
                if folder is not None and folder != "#":
                    await self.session.move(message.id, FOLDER_KEYS[folder])
                    await self.menu.say([MOVED_TO[FOLDER_KEYS[folder]]])
            elif key == "3":
                await self._envelope(message)
            elif key == "8":
                extension = await self.menu.entry([P.FORWARD_ENTER_MAILBOX], 20)
                done = bool(extension) and await self.session.forward(message.id, extension)
                await self.menu.say([P.MESSAGE_FORWARDED if done else P.NO_SUCH_MAILBOX])

    async def _play(self, index: int, message: MenuMessage) -> str | None:
        """Message `index` from its start; the key that stopped it (None: played to the end)."""
        language = self.session.language
        key = await self.menu.say(
            [*self._heading(index), P.MESSAGE, *say_number(index + 1, language)],
            interrupt_on=DURING_MESSAGE,
        )
        if key is not None and key not in "*#":
            return key
        audio = await self.session.audio(message.id)
        if not message.read:
            await self.session.mark_read(message.id)
            self.messages[index] = dataclasses.replace(message, read=True)
        position = 0
        while position < len(audio):
            started = self.menu.clock()
            key = await self.menu.call.play(audio[position:], interrupt_on=DURING_MESSAGE)
            if key is None:
                return None
            here = min(len(audio), position + round((self.menu.clock() - started) * 8000))
            if key == "*":
                position = max(0, here - SEEK_SAMPLES)
            elif key == "#":
                position = here + SEEK_SAMPLES
            else:
                return key
        return None

    def _heading(self, index: int) -> list[str]:
        """"New messages" before the first new one, "saved messages" before the first saved."""
        read = self.messages[index].read
        if index == 0 or self.messages[index - 1].read != read:
            return [P.SAVED_MESSAGES if read else P.NEW_MESSAGES]
        return []

    async def _envelope(self, message: MenuMessage) -> None:
        language = self.session.language
        caller = message.caller
        digits = "".join(c for c in (caller or "") if c.isascii() and (c.isdigit() or c == "+"))
        when = say_datetime(message.received_at, language, now=self.session.now())
        who = [P.FROM, *say_digits(digits, language)] if digits.strip("+") else [P.UNKNOWN_CALLER]
        names = [P.RECEIVED, *when, *who]
        if not digits.strip("+") or not await self.session.can_call_back():
            await self.menu.say(names)
            return
        key = await self.menu.say([*names, P.PRESS_5_CALL_BACK], interrupt_on="5")
        if key is None:
            key = await self.menu.key()
        if key == "5" and caller is not None:
            await self.menu.say([P.CALLING_BACK])
            await self.session.call_back(self.menu.call, caller)
        else:
            self.menu.pending = key  # another key: the message's options answer it

    # -- mailbox options -------------------------------------------------------------------

    async def _options(self) -> None:
        while True:
            key = await self.menu.ask([P.OPTIONS_MENU], "12345*")
            if key is None or key == "*":
                return
            if key in GREETING_KEYS:
                await self._record(GREETING_KEYS[key])
            elif key == "4":
                if await self.session.has_greeting(GreetingKind.TEMPORARY):
                    again = await self.menu.ask([P.TEMP_GREETING_ON], "41")
                    if again == "4":
                        await self.session.remove_greeting(GreetingKind.TEMPORARY)
                        await self.menu.say([P.TEMP_GREETING_REMOVED])
                        continue
                    if again is None:
                        continue
                await self._record(GreetingKind.TEMPORARY)
            elif key == "5":
                await self._change_pin()

    async def _record(self, kind: GreetingKind) -> None:
        """Record, play back, then 1 accept / 2 record again / 3 listen again."""
        call = self.menu.call
        while True:
            await self.menu.say([RECORD_WHAT[kind], P.RECORD_AFTER_TONE])
            await call.play(beep())
            sink = _Sink()
            await call.record(
                sink,
                max_seconds=GREETING_MAX_SECONDS,
                silence_seconds=GREETING_SILENCE_SECONDS,
                finish_on="#",
            )
            audio = sink.audio()
            if len(audio) < MIN_GREETING_SAMPLES:
                await self.menu.say([P.RECORDING_TOO_SHORT])
                continue
            key: str | None = "3"
            while key == "3":
                key = await call.play(audio, interrupt_on="123")
                if key is None:
                    key = await self.menu.ask([P.REVIEW_RECORDING], "123")
            if key == "1":
                await self.session.save_greeting(kind, audio)
                saved = P.NAME_SAVED if kind is GreetingKind.NAME else P.GREETING_SAVED
                await self.menu.say([saved])
                return
            if key is None:
                return

    async def _change_pin(self) -> None:
        first = await self.menu.entry([P.ENTER_NEW_PIN], 10)
        try:
            check_pin(first)
        except WeakPin:
            await self.menu.say([P.PIN_TOO_SIMPLE])
            return
        second = await self.menu.entry([P.REENTER_NEW_PIN], 10)
        if second != first:
            await self.menu.say([P.PINS_DO_NOT_MATCH])
            return
        await self.session.change_pin(first)
        await self.menu.say([P.PIN_CHANGED])
