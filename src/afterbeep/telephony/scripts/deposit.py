"""Leave a message: the steps a caller hears when a call reaches a mailbox.

answer → greeting (or "not available", with the owner's name or extension) → instructions
(unless skipped; `#` skips both) → beep → record until `#`, hang-up, maximum length or silence → "saved, goodbye".
The recording is in the spool (on disk) before any closing prompt plays.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from afterbeep.domain.clock import iso
from afterbeep.domain.say import say_digits
from afterbeep.telephony.interface import Audio, Call, CallEnded, EndedBy
from afterbeep.telephony.prompts import beep, prompt, sequence
from afterbeep.telephony.spool import Spool, SpoolEntry, SpoolMeta

PERSON_AT_EXTENSION = "vm-person-at-extension"  # then the digits, then "is not available"


class Outcome(enum.StrEnum):
    SAVED = "saved"
    TOO_SHORT = "too_short"
    MAILBOX_FULL = "mailbox_full"
    NO_MESSAGE = "no_message"


@dataclass(frozen=True, slots=True)
class DepositBox:
    """What the script needs to know of the mailbox, resolved before the call is answered."""

    account_id: str
    mailbox_id: str
    language: str
    greeting: Audio | None
    skip_instructions: bool
    max_message_seconds: int
    min_message_seconds: int
    silence_seconds: int
    silence_threshold: int
    full: bool
    busy: bool = False  # reached because its owner is busy: the system greeting says so
    name: Audio | None = None  # the owner's recorded name: the system greeting says it
    extension: str | None = None  # with no name, the system greeting reads it out


@dataclass(frozen=True, slots=True)
class DepositResult:
    outcome: Outcome
    entry: SpoolEntry | None = None


async def leave_message(call: Call, box: DepositBox, spool: Spool, now: datetime) -> DepositResult:
    await call.answer()
    if box.full:
        await _say_and_hang_up(call, prompt("vm-mailbox-full", box.language))
        return DepositResult(Outcome.MAILBOX_FULL)

    meta = SpoolMeta(
        call_id=call.call_id,
        account_id=box.account_id,
        mailbox_id=box.mailbox_id,
        caller=call.caller,
        caller_name=call.caller_name,
        callee=call.callee,
        started_at=iso(now),
    )
    # Creating the spool entry fsyncs: on a thread, while the greeting plays. The recording
    # goes into the writer from the beep on, held in memory if the entry is not there yet.
    writer = spool.writer(meta, box.silence_threshold)
    creating = asyncio.ensure_future(asyncio.to_thread(writer.create))
    try:
        greeting = box.greeting if box.greeting is not None else _system_greeting(box)
        # One sequence timed from the answer, so that the beep leaves on time however late the
        # event loop runs; `#` during the greeting or the instructions skips to the beep.
        intro: tuple[Audio, ...] = (greeting,)
        if not box.skip_instructions:
            intro = (greeting, prompt("vm-instructions", box.language))
        await call.play(intro, interrupt_on="#", then=beep(), from_answer=True)
        if creating.done():
            creating.result()  # a spool that cannot be written fails the call before recording
        recording = await call.record(
            writer,
            max_seconds=box.max_message_seconds,
            silence_seconds=box.silence_seconds,
            finish_on="#",
            silence_threshold=box.silence_threshold,
            # from the beep's end, however late the event loop is: a `#` pressed since ends it
            from_prompt_end=True,
        )
        await asyncio.shield(creating)  # a cancelled script must not cancel the thread's task
    except CallEnded:
        await asyncio.shield(creating)
        writer.discard()
        return DepositResult(Outcome.NO_MESSAGE)
    except BaseException:
        creating.add_done_callback(lambda _: writer.discard())  # not waiting for the thread
        raise
    if writer.kept_samples(recording.ended_by) < box.min_message_seconds * 8000:
        writer.discard()
        await _say_and_hang_up(call, prompt("vm-goodbye", box.language), recording.ended_by)
        return DepositResult(Outcome.TOO_SHORT)
    entry = await asyncio.to_thread(writer.close, recording.ended_by)  # fsyncs: off the loop

    closing = "vm-max-length" if recording.ended_by is EndedBy.MAX_LENGTH else "vm-saved"
    await _say_and_hang_up(call, prompt(closing, box.language), recording.ended_by)
    return DepositResult(Outcome.SAVED, entry)


def _system_greeting(box: DepositBox) -> Audio:
    """"<name> is not available" (or "is on another call"), else "the person at extension
    2 0 1 is not available", else "the person you are calling is not available"."""
    after = "vm-busy-after-name" if box.busy else "vm-unavailable-after-name"
    if box.name is not None:
        return np.concatenate([box.name, prompt(after, box.language)])
    if box.extension:
        digits = say_digits(box.extension, box.language)
        return sequence([PERSON_AT_EXTENSION, *digits, after], box.language)
    return prompt("vm-busy" if box.busy else "vm-greeting", box.language)


async def _say_and_hang_up(call: Call, audio: Audio, ended_by: EndedBy | None = None) -> None:
    if ended_by is EndedBy.HANGUP:
        return
    try:
        await call.play(audio)
        await call.hangup()
    except CallEnded:
        return
