"""How a menu or a collect node reads the caller's keys: one try, prompts first.

The prompts play one after the other. With barge-in, a key already typed ahead (pressed before
the node, say during a play node) skips them, and a key pressed while one plays stops it; either
is the first key of the entry. Without barge-in they play to their end and every key pressed
until then is dropped. Then the first key is awaited `timeout` seconds, each next one
`inter_digit_timeout`; the entry ends at `max_digits` keys or at one of `terminators`, which is
not part of it, except that a terminator pressed first is returned alone (a menu may draw an
edge for `#`). Nothing pressed: "".
"""

from __future__ import annotations

from collections.abc import Sequence

from afterbeep.domain.flows import DTMF_KEYS
from afterbeep.telephony.interface import Audio, Call

# More keys than anyone types: "all that is typed ahead".
_EVERY_KEY = 1_000


async def read_keys(
    call: Call,
    prompts: Sequence[Audio | None],
    *,
    barge_in: bool,
    max_digits: int,
    terminators: str,
    timeout: float,
    inter_digit_timeout: float,
) -> str:
    first = await call.collect_digits(1, 0, terminator="") if barge_in else ""
    if not first:
        for audio in prompts:
            if audio is None:
                continue
            key = await call.play(audio, interrupt_on=DTMF_KEYS if barge_in else "")
            if key is not None:
                first = key
                break
        if not barge_in:
            await call.collect_digits(_EVERY_KEY, 0, terminator="")
    if not first:
        first = await call.collect_digits(1, timeout, terminator="")
    if not first or max_digits == 1 or first in terminators:
        return first
    rest = await call.collect_digits(
        max_digits - 1,
        inter_digit_timeout,
        terminators,
        inter_digit_timeout=inter_digit_timeout,
    )
    return first + rest
