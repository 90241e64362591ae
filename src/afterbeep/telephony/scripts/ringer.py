"""What the call applications that ring people (a user, a ring group, a queue) need from the
engine and from the directory of users and devices, as two small ports.

`Ringer` is the engine side (forked INVITEs, ringback, CANCEL of the losing forks, then the
back-to-back bridge); `Directory` is where a user's registered devices are found. The call
applications are written against these, tested with fakes, and run on SIP with the real ones.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from afterbeep.telephony.interface import Call


@dataclass(frozen=True, slots=True)
class RingTarget:
    """One device to ring: where its INVITE goes and how long it may ring."""

    uri: str  # the registered Contact (the Request-URI of the INVITE)
    label: str  # who this is (`dev_...`, or `usr_.../dev_...`): logs and results, never a number
    path: tuple[str, ...] = ()  # the Path header values kept at registration (RFC 3327): Route set
    source: tuple[str, int] | None = None  # where the REGISTER came from (sent there behind NAT)
    transport: str = "udp"
    delay_sec: float = 0.0  # start ringing this long after ringing began (ring group members)
    timeout_sec: float | None = None  # ring this one at most this long (None: the ring's timeout)


class RingOutcome(enum.Enum):
    ANSWERED = "answered"
    BUSY = "busy"  # every target that answered the INVITE said busy (486/600) or declined (603)
    NO_ANSWER = "no_answer"  # nobody answered in time (or there was nothing to ring)
    FAILED = "failed"  # every target failed otherwise (unreachable, 4xx/5xx)
    CALLER_GONE = "caller_gone"  # the caller hung up (or cancelled) while it rang


class Leg(Protocol):
    """The answered outbound leg, to be bridged or hung up."""

    call_id: str

    async def hangup(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RingResult:
    outcome: RingOutcome
    leg: Leg | None = None  # set when ANSWERED
    target: RingTarget | None = None  # the target that answered


class BridgeEnd(enum.Enum):
    CALLER_HUNG_UP = "caller_hung_up"
    CALLEE_HUNG_UP = "callee_hung_up"
    FAILED = "failed"


class Ringer(Protocol):
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
        """Ring `targets` (all at once, each from its `delay_sec`; or one after the other,
        each for its `timeout_sec`), at most `timeout` seconds in all. The first answer wins
        and the other forks get CANCEL. The caller hears ringback (180 before the call is
        answered; a ringback tone on an answered call) unless `ringback` is False (a queue
        plays its hold music itself)."""
        ...

    async def bridge(self, call: Call, leg: Leg) -> BridgeEnd:
        """Relay media and digits between the caller and the answered leg until either side
        hangs up; the other side is then hung up too."""
        ...


class Directory(Protocol):
    async def user_targets(self, account_id: str, user_id: str) -> list[RingTarget]:
        """The user's registered, unexpired contacts, in device `ring_order`."""
        ...

    async def device_targets(self, account_id: str, device_id: str) -> list[RingTarget]:
        """The device's registered, unexpired contacts."""
        ...
