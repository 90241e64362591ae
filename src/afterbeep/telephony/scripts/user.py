"""A call to a user: forward, ring the user's phones, or fall through to busy / no answer.

fwd_always set → there. Do not disturb → the busy chain. A user already in
`max_simultaneous` calls on this node (`UserLines`: rung, bridged, or dialled from one of
their phones) → the busy chain. Otherwise ring the user's registered
devices (all at once, or one after the other) for `ring_timeout_sec`: an answer is bridged; all
busy → the busy chain; no answer, failure or nothing registered → the no-answer chain.
Busy chain: fwd_busy, else the user's mailbox with the busy message, else hang up.
No-answer chain: fwd_noanswer, else the user's mailbox (unavailable), else hang up.

Where a destination leads is not this module's business: it gets `run`, which runs any
destination (a mailbox, a flow, another user, ...) on the call.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace

from afterbeep.domain.users import Forward, FwdKind, RingStrategy, User
from afterbeep.telephony.interface import Call
from afterbeep.telephony.scripts.ringer import Directory, Ringer, RingOutcome

log = logging.getLogger(__name__)

# Runs a destination on the call; `busy`: a mailbox plays its busy message.
RunDestination = Callable[[Call, Forward, bool], Awaitable[None]]


class UserCallEnd(enum.StrEnum):
    FORWARDED = "forwarded"  # fwd_always
    BRIDGED = "bridged"
    BUSY = "busy"  # went down the busy chain (dnd or every device busy)
    NO_ANSWER = "no_answer"  # went down the no-answer chain (incl. nothing registered)
    CALLER_GONE = "caller_gone"


@dataclass(frozen=True, slots=True)
class UserCallResult:
    end: UserCallEnd
    then: Forward | None  # the destination run after ringing (None: bridged or hung up)


class UserLines:
    """How many calls each user is in on this node: calls to them from the moment their phones
    ring until the bridge ends, and calls dialled from their phones."""

    def __init__(self) -> None:
        self._calls: Counter[str] = Counter()

    def count(self, user_id: str) -> int:
        return self._calls[user_id]

    def full(self, user: User) -> bool:
        most = user.max_simultaneous
        return most is not None and self._calls[user.id] >= most

    @contextlib.contextmanager
    def held(self, user_id: str) -> Iterator[None]:
        self._calls[user_id] += 1
        try:
            yield
        finally:
            self._calls[user_id] -= 1
            if self._calls[user_id] <= 0:
                del self._calls[user_id]


async def call_user(
    call: Call,
    user: User,
    ringer: Ringer,
    directory: Directory,
    run: RunDestination,
    lines: UserLines | None = None,
) -> UserCallResult:
    if user.fwd_always is not None:
        await run(call, user.fwd_always, False)
        return UserCallResult(UserCallEnd.FORWARDED, user.fwd_always)
    if user.dnd:
        return await _busy(call, user, run)
    lines = lines if lines is not None else UserLines()
    if lines.full(user):
        log.info("user %s is in %d calls already: busy", user.id, lines.count(user.id))
        return await _busy(call, user, run)
    with lines.held(user.id):
        end = await _ring(call, user, ringer, directory)
    if end is UserCallEnd.BUSY:
        return await _busy(call, user, run)
    if end is UserCallEnd.NO_ANSWER:
        return await _no_answer(call, user, run)
    return UserCallResult(end, None)


async def _ring(call: Call, user: User, ringer: Ringer, directory: Directory) -> UserCallEnd:
    """Ring the user's phones and bridge an answer: how it ended (no phone registered counts
    as no answer). The line is held until the bridge ends, not while a chain runs after."""
    targets = await directory.user_targets(user.account_id, user.id)
    if not targets:
        return UserCallEnd.NO_ANSWER
    sequential = user.ring_strategy is RingStrategy.SEQUENTIAL
    if sequential:  # each device rings ring_timeout_sec, in ring_order
        targets = [replace(t, timeout_sec=float(user.ring_timeout_sec)) for t in targets]
    timeout = float(user.ring_timeout_sec * (len(targets) if sequential else 1))
    result = await ringer.ring(
        call, targets, timeout=timeout, sequential=sequential, caller_id=call.caller
    )
    if result.outcome is RingOutcome.ANSWERED and result.leg is not None:
        await ringer.bridge(call, result.leg)
        return UserCallEnd.BRIDGED
    if result.outcome is RingOutcome.CALLER_GONE:
        return UserCallEnd.CALLER_GONE
    if result.outcome is RingOutcome.BUSY:
        return UserCallEnd.BUSY
    return UserCallEnd.NO_ANSWER


async def _busy(call: Call, user: User, run: RunDestination) -> UserCallResult:
    return await _fall_through(call, user, user.fwd_busy, run, UserCallEnd.BUSY, busy=True)


async def _no_answer(call: Call, user: User, run: RunDestination) -> UserCallResult:
    return await _fall_through(
        call, user, user.fwd_noanswer, run, UserCallEnd.NO_ANSWER, busy=False
    )


async def _fall_through(
    call: Call,
    user: User,
    forward: Forward | None,
    run: RunDestination,
    end: UserCallEnd,
    *,
    busy: bool,
) -> UserCallResult:
    """`forward`, else the user's mailbox, else hang up."""
    if forward is None and user.voicemail_id is not None:
        forward = Forward(FwdKind.VOICEMAIL, user.voicemail_id)
    if forward is None:
        await call.hangup()
        return UserCallResult(end, None)
    await run(call, forward, busy)
    return UserCallResult(end, forward)

