"""What the applications that ring people (ring group, queue) need besides the call: the
engine's `Ringer`, the `Directory` of registered devices, and three callables, so that they
are not coupled to the router, the database or the media store.

`run_destination(call, dest)` sends the call on (a mailbox, a flow, a queue, a user, another
ring group; `None`: hang up) and returns when that is over. `schedule_state(account_id,
schedule_id)` is the state of a schedule now (a missing or broken one fails open: in hours).
`media(account_id, media_id)` is an account's audio at 8 kHz (None when it is gone).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from afterbeep.domain.numbers import Destination
from afterbeep.domain.schedules import ScheduleState
from afterbeep.telephony.interface import Audio, Call
from afterbeep.telephony.scripts.ringer import Directory, Ringer, RingTarget

RunDestination = Callable[[Call, Destination | None], Awaitable[None]]
ScheduleStateOf = Callable[[str, str], Awaitable[ScheduleState]]
MediaOf = Callable[[str, str], Awaitable[Audio | None]]


@dataclass(frozen=True)
class PbxEnv:
    ringer: Ringer
    directory: Directory
    run_destination: RunDestination
    schedule_state: ScheduleStateOf
    media: MediaOf
    language: str = "en"  # the account's, for prompts


async def targets_of(
    directory: Directory, account_id: str, user_id: str | None, device_id: str | None
) -> list[RingTarget]:
    """The registered contacts of a user (every device) or of one device."""
    if user_id is not None:
        return await directory.user_targets(account_id, user_id)
    if device_id is not None:
        return await directory.device_targets(account_id, device_id)
    return []
