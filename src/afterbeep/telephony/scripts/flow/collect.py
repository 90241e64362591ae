"""collect: the caller types a value (an account number, a date of birth, ...) that becomes the
flow variable `variable`: `ok`, or `fail` after maxTries tries without a valid one.

One try (keys.py reads the keys): the prompt plays (promptAudioId, or promptText's speech); a
key pressed while it plays, or typed ahead before it, stops it and starts the entry. The first
key is awaited timeoutSec, each next one interDigitTimeoutSec; the entry ends at maxDigits keys
or at the terminator, which is not part of the value. It is valid with at least minDigits keys
and, when `regex` is given, when the whole entry matches it. A wrong entry hears invalidAudioId
(else the system's "that is not a valid choice") before the next try; no entry at all hears the
prompt again. The value is never logged.
"""

from __future__ import annotations

import re

from afterbeep.domain.flows import FAIL, OK, FlowNode
from afterbeep.telephony.interface import Audio, Call
from afterbeep.telephony.prompts import prompt
from afterbeep.telephony.scripts.flow.base import (
    FlowEnv,
    FlowRun,
    int_setting,
    keys_setting,
    log,
    node_audio,
    prompt_audio,
    seconds_setting,
)
from afterbeep.telephony.scripts.flow.keys import read_keys


async def collect(call: Call, run: FlowRun, env: FlowEnv, node: FlowNode) -> str | None:
    variable = node.data.get("variable")
    if not isinstance(variable, str) or not variable:
        log.warning("%s: no variable to collect into; taking fail", run.where(node))
        return FAIL
    min_digits = int_setting(node, "minDigits")
    max_digits = int_setting(node, "maxDigits")
    terminator = keys_setting(node, "terminator")
    timeout = seconds_setting(node, "timeoutSec")
    inter_digit_timeout = seconds_setting(node, "interDigitTimeoutSec")
    tries = int_setting(node, "maxTries")
    regex = node.data.get("regex")
    pattern = re.compile(regex) if isinstance(regex, str) and regex else None

    first_prompt = await prompt_audio(run, env, node)
    invalid = await node_audio(run, env, node, "invalidAudioId")
    if invalid is None:
        invalid = prompt("ivr-invalid", run.language)

    prompts: list[Audio | None] = [first_prompt]
    for attempt in range(1, tries + 1):
        entry = await read_keys(
            call,
            prompts,
            barge_in=True,
            max_digits=max_digits,
            terminators=terminator,
            timeout=timeout,
            inter_digit_timeout=inter_digit_timeout,
        )
        if len(entry) == 1 and entry in terminator:
            entry = ""  # the terminator alone: nothing typed
        if len(entry) >= min_digits and (pattern is None or pattern.fullmatch(entry)):
            run.variables[variable] = entry
            return OK
        if attempt == tries:
            if entry:
                await call.play(invalid)
            break
        prompts = [invalid, first_prompt] if entry else [first_prompt]
    return FAIL
