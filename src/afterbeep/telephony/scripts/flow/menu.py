"""menu: the caller chooses with one key, as in Kazoo's cf_menu or an Asterisk IVR.

    prompt → key → the edge `digit:<key>`; too many tries → `timeout` or `invalid`

One try (keys.py reads the keys): the prompt plays (promptAudioId, or promptText's speech;
from the second try on repromptAudioId when one is given). With bargeIn (the default) a key
pressed while it plays, or typed ahead before it, stops it and is the choice; without, the
prompt plays to its end and keys pressed until then are dropped. Then the first key is awaited
timeoutSec.

- Nothing pressed: a timeout. The maxTimeouts-th takes the `timeout` edge; until then the
  try starts again.
- One key whose `digit:<key>` edge is drawn: that edge.
- Anything else (a key with no edge drawn): invalid. invalidAudioId plays (else the system's
  "that is not a valid choice"), then the next try; a key pressed during the invalid prompt
  counts as during the prompt. The maxFailures-th invalid entry hears the invalid prompt and
  takes the `invalid` edge.
Timeouts and invalid entries are counted apart.

Outcomes are single keys, so with maxDigits above 1 the rule is: the entry goes on after the
first key (each next key within interDigitTimeoutSec, up to maxDigits keys or one of
`terminators`), and only an entry of exactly one key chooses; "1#" chooses 1 at once, "1"
chooses 1 when interDigitTimeoutSec has passed, "12" is invalid. A terminator pressed first is
the choice itself (`digit:#` stays reachable). With maxDigits 1 (the default) every key is a
choice at once and `terminators` play no part. An entry shorter than minDigits is invalid.
"""

from __future__ import annotations

from dataclasses import dataclass

from afterbeep.domain.flows import INVALID, TIMEOUT, FlowNode, digit_outcome, setting
from afterbeep.telephony.interface import Audio, Call
from afterbeep.telephony.prompts import prompt
from afterbeep.telephony.scripts.flow.base import (
    FlowEnv,
    FlowRun,
    int_setting,
    keys_setting,
    node_audio,
    prompt_audio,
    seconds_setting,
)
from afterbeep.telephony.scripts.flow.keys import read_keys


@dataclass(frozen=True)
class _Menu:
    min_digits: int
    max_digits: int
    terminators: str
    timeout: float
    inter_digit_timeout: float
    max_failures: int
    max_timeouts: int
    barge_in: bool

    @classmethod
    def of(cls, node: FlowNode) -> _Menu:
        return cls(
            min_digits=int_setting(node, "minDigits"),
            max_digits=int_setting(node, "maxDigits"),
            terminators=keys_setting(node, "terminators"),
            timeout=seconds_setting(node, "timeoutSec"),
            inter_digit_timeout=seconds_setting(node, "interDigitTimeoutSec"),
            max_failures=int_setting(node, "maxFailures"),
            max_timeouts=int_setting(node, "maxTimeouts"),
            barge_in=setting(node, "bargeIn") is not False,
        )


async def menu(call: Call, run: FlowRun, env: FlowEnv, node: FlowNode) -> str | None:
    settings = _Menu.of(node)
    first_prompt = await prompt_audio(run, env, node)
    reprompt = await node_audio(run, env, node, "repromptAudioId")
    if reprompt is None:
        reprompt = first_prompt
    invalid = await node_audio(run, env, node, "invalidAudioId")
    if invalid is None:
        invalid = prompt("ivr-invalid", run.language)

    timeouts = failures = 0
    prompts: list[Audio | None] = [first_prompt]
    while True:
        entry = await read_keys(
            call,
            prompts,
            barge_in=settings.barge_in,
            max_digits=settings.max_digits,
            terminators=settings.terminators,
            timeout=settings.timeout,
            inter_digit_timeout=settings.inter_digit_timeout,
        )
        if not entry:
            timeouts += 1
            if timeouts >= settings.max_timeouts:
                return TIMEOUT
            prompts = [reprompt]
            continue
        chosen = _choice(run, node, settings, entry)
        if chosen is not None:
            return chosen
        failures += 1
        if failures >= settings.max_failures:
            await call.play(invalid)
            return INVALID
        prompts = [invalid, reprompt]


def _choice(run: FlowRun, node: FlowNode, settings: _Menu, entry: str) -> str | None:
    if len(entry) != 1 or len(entry) < settings.min_digits:
        return None
    outcome = digit_outcome(entry)
    return outcome if run.graph.edge_for(node.id, outcome) is not None else None
