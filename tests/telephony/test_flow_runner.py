"""The flow runner on a scripted call (FakeCall) with an in-test FlowEnv: every node kind and
every outcome, the menu's tries and barge-in, collect's checks, time conditions, the visit
limit, missing media and a caller hanging up mid-flow.

Each sound of a test is a constant tone (`sound(level, ms)`), so what the caller heard (the
FakeCall's `played`, cut short where a key barged in) is named back by its level."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from afterbeep.domain.flows import MAX_VISITS, FlowGraph, check_flow
from afterbeep.domain.numbers import Destination, DestKind
from afterbeep.domain.schedules import ScheduleState
from afterbeep.telephony.fake import FakeCall
from afterbeep.telephony.interface import Audio, Call
from afterbeep.telephony.prompts import prompt
from afterbeep.telephony.scripts.flow import FlowEnv, FlowRun, run_flow

MS = 8  # samples


def sound(level: int, ms: int) -> Audio:
    return np.full(ms * MS, level, dtype=np.int16)


MEDIA: dict[str, Audio] = {
    "med_prompt": sound(1000, 1000),
    "med_reprompt": sound(2000, 800),
    "med_invalid": sound(3000, 500),
    "med_a": sound(4000, 300),
    "med_b": sound(5000, 300),
    "med_timeout": sound(6000, 300),
    "med_invalid_edge": sound(7000, 300),
    "med_speech_text": sound(8000, 400),
    "med_speech_prompt": sound(9000, 1000),
    "med_fail": sound(10000, 300),
    "med_ok": sound(11000, 300),
}
SYSTEM = {
    "ivr-invalid": prompt("ivr-invalid", "en"),
    "vm-try-later": prompt("vm-try-later", "en"),
}


def heard(call: FakeCall) -> list[str]:
    """The names of what the call played, in order (`med_` dropped)."""
    names = []
    for _, audio in call.played:
        for name, source in {**MEDIA, **SYSTEM}.items():
            if 0 < len(audio) <= len(source) and np.array_equal(audio, source[: len(audio)]):
                names.append(name.removeprefix("med_"))
                break
        else:
            names.append(f"<{len(audio)} unknown samples>")
    return names


def played_ms(call: FakeCall, index: int) -> int:
    return len(call.played[index][1]) // MS


@dataclass
class Env:
    """The runner's port, in memory."""

    media: dict[str, Audio] = field(default_factory=lambda: dict(MEDIA))
    states: dict[str, ScheduleState] = field(default_factory=dict)
    at: datetime = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    asked: list[tuple[str, datetime]] = field(default_factory=list)
    voicemails: list[str] = field(default_factory=list)
    sent: list[Destination] = field(default_factory=list)

    async def audio(self, media_id: str) -> Audio | None:
        return self.media.get(media_id)

    async def speech(self, run: FlowRun, node_id: str, field: str) -> Audio | None:
        media_id = run.speech.get(f"{node_id}/{field}")
        return None if media_id is None else self.media.get(media_id)

    async def schedule_state(self, run: FlowRun, schedule_id: str, at: datetime) -> ScheduleState:
        self.asked.append((schedule_id, at))
        return self.states.get(schedule_id, ScheduleState.IN_HOURS)

    def now(self) -> datetime:
        return self.at

    async def voicemail(self, call: Call, mailbox_id: str) -> None:
        self.voicemails.append(mailbox_id)

    async def send(self, call: Call, dest: Destination) -> None:
        self.sent.append(dest)


def flow(nodes: dict[str, dict[str, Any]], edges: list[tuple[str, str, str]]) -> FlowGraph:
    """A graph from `{id: data}` and `(source, handle, target)`; it must pass validation."""
    graph, errors = check_flow(
        [{"id": node_id, "type": data["kind"], "data": data} for node_id, data in nodes.items()],
        [
            {"id": f"e{i}", "source": s, "sourceHandle": h, "target": t}
            for i, (s, h, t) in enumerate(edges)
        ],
    )
    assert errors == []
    return graph


def run_of(graph: FlowGraph, speech: dict[str, str] | None = None) -> FlowRun:
    return FlowRun(
        account_id="acc_1",
        flow_id="flow_1",
        version=3,
        graph=graph,
        language="en",
        timezone="America/New_York",
        speech=speech or {},
    )


async def run(graph: FlowGraph, call: FakeCall, env: Env | None = None, **kw: Any) -> FlowRun:
    flow_run = run_of(graph, **kw)
    await run_flow(call, flow_run, env or Env())
    return flow_run


def test_the_in_test_env_is_a_flow_env() -> None:
    env: FlowEnv = Env()  # mypy checks the Protocol here
    assert env.now().tzinfo is UTC


# --- entry, play, say, hangup ------------------------------------------------------------------

ENTRY = {"kind": "entry", "trigger": "inbound"}


async def test_entry_play_say_hangup_in_order() -> None:
    graph = flow(
        {
            "start": ENTRY,
            "p": {"kind": "play", "audioId": "med_a"},
            "s": {"kind": "say", "text": "Welcome to Acme."},
            "bye": {"kind": "hangup"},
        },
        [("start", "default", "p"), ("p", "default", "s"), ("s", "default", "bye")],
    )
    call = FakeCall()
    await run(graph, call, speech={"s/text": "med_speech_text"})
    assert call.answered and call.hung_up_by_us
    assert heard(call) == ["a", "speech_text"]
    assert [played_ms(call, i) for i in range(2)] == [300, 400]  # each to its end


async def test_missing_media_and_missing_speech_play_nothing_and_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    graph = flow(
        {
            "start": ENTRY,
            "gone": {"kind": "play", "audioId": "med_deleted"},
            "unsaid": {"kind": "say", "text": "Not rendered yet."},
            "b": {"kind": "play", "audioId": "med_b"},
        },
        [("start", "default", "gone"), ("gone", "default", "unsaid"), ("unsaid", "default", "b")],
    )
    call = FakeCall()
    with caplog.at_level(logging.INFO, logger="afterbeep.flow"):
        await run(graph, call)
    assert heard(call) == ["b"]
    assert "node gone (play): media med_deleted is missing or unreadable" in caplog.text
    assert "node unsaid (say): no speech rendered for text" in caplog.text
    assert call.hung_up_by_us


async def test_an_outcome_with_no_edge_ends_the_call_with_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    graph = flow(
        {"start": ENTRY, "a": {"kind": "play", "audioId": "med_a"}}, [("start", "default", "a")]
    )
    call = FakeCall()
    with caplog.at_level(logging.INFO, logger="afterbeep.flow"):
        await run(graph, call)
    assert heard(call) == ["a"] and call.hung_up_by_us
    assert "flow flow_1 v3 node a (play): no edge for 'default'; ending the call" in caplog.text


# --- menu ----------------------------------------------------------------------------------------


def menu_flow(**menu: Any) -> FlowGraph:
    """entry → menu; digit:1 → play a, digit:2 → play b, digit:# → play ok,
    timeout → play timeout, invalid → play invalid_edge."""
    return flow(
        {
            "start": ENTRY,
            "m": {"kind": "menu", "promptAudioId": "med_prompt", **menu},
            "a": {"kind": "play", "audioId": "med_a"},
            "b": {"kind": "play", "audioId": "med_b"},
            "hash": {"kind": "play", "audioId": "med_ok"},
            "t": {"kind": "play", "audioId": "med_timeout"},
            "i": {"kind": "play", "audioId": "med_invalid_edge"},
        },
        [
            ("start", "default", "m"),
            ("m", "digit:1", "a"),
            ("m", "digit:2", "b"),
            ("m", "digit:#", "hash"),
            ("m", "timeout", "t"),
            ("m", "invalid", "i"),
        ],
    )


async def test_menu_digit_after_the_prompt_takes_its_edge() -> None:
    call = FakeCall(keys=[(1500, "2")])
    await run(menu_flow(), call)
    assert heard(call) == ["prompt", "b"]
    assert played_ms(call, 0) == 1000


async def test_menu_key_during_the_prompt_cuts_it_and_counts() -> None:
    call = FakeCall(keys=[(300, "1")])
    await run(menu_flow(), call)
    assert heard(call) == ["prompt", "a"]
    assert played_ms(call, 0) == 300  # barge-in: the prompt stopped at the key
    assert call.played[1][0] == 300 * MS + 1  # the next node right after


async def test_menu_without_barge_in_plays_the_prompt_whole_and_drops_early_keys() -> None:
    call = FakeCall(keys=[(300, "1"), (1500, "2")])
    await run(menu_flow(bargeIn=False), call)
    assert heard(call) == ["prompt", "b"]
    assert played_ms(call, 0) == 1000


async def test_menu_key_typed_ahead_skips_the_prompt() -> None:
    graph = flow(
        {
            "start": ENTRY,
            "hello": {"kind": "play", "audioId": "med_b"},
            "m": {"kind": "menu", "promptAudioId": "med_prompt"},
            "a": {"kind": "play", "audioId": "med_a"},
        },
        [("start", "default", "hello"), ("hello", "default", "m"), ("m", "digit:1", "a")],
    )
    call = FakeCall(keys=[(100, "1")])  # pressed during the play node
    await run(graph, call)
    assert heard(call) == ["b", "a"]


async def test_keys_typed_ahead_go_through_two_menus() -> None:
    graph = flow(
        {
            "start": ENTRY,
            "hello": {"kind": "play", "audioId": "med_b"},
            "m1": {"kind": "menu", "promptAudioId": "med_prompt"},
            "m2": {"kind": "menu", "promptAudioId": "med_reprompt"},
            "a": {"kind": "play", "audioId": "med_a"},
        },
        [
            ("start", "default", "hello"),
            ("hello", "default", "m1"),
            ("m1", "digit:1", "m2"),
            ("m2", "digit:2", "a"),
        ],
    )
    call = FakeCall(keys=[(100, "1"), (200, "2")])  # both during the play node
    await run(graph, call)
    assert heard(call) == ["b", "a"]


async def test_menu_no_input_twice_reprompts_then_takes_timeout() -> None:
    call = FakeCall()
    await run(menu_flow(repromptAudioId="med_reprompt", maxTimeouts=2, timeoutSec=2), call)
    assert heard(call) == ["prompt", "reprompt", "timeout"]
    starts = [start // MS for start, _ in call.played]
    assert starts == [0, 1000 + 2000, 3000 + 800 + 2000]  # each try waited timeoutSec


async def test_menu_reprompt_defaults_to_the_prompt() -> None:
    call = FakeCall()
    await run(menu_flow(maxTimeouts=3, timeoutSec=1), call)
    assert heard(call) == ["prompt", "prompt", "prompt", "timeout"]


async def test_menu_key_with_no_edge_is_invalid_then_reprompts_then_invalid_edge() -> None:
    # 9 has no edge: the system's invalid prompt, then the prompt again; the second 9 ends it.
    call = FakeCall(keys=[(1200, "9"), (1200 + 1 + 1950 + 1000 + 200, "9")])
    await run(menu_flow(maxFailures=2), call)
    assert heard(call) == ["prompt", "ivr-invalid", "prompt", "ivr-invalid", "invalid_edge"]


async def test_menu_invalid_audio_then_a_valid_key_takes_its_edge() -> None:
    call = FakeCall(keys=[(1200, "7"), (1200 + 1 + 500 + 800 + 100, "1")])
    await run(
        menu_flow(invalidAudioId="med_invalid", repromptAudioId="med_reprompt", maxFailures=3),
        call,
    )
    assert heard(call) == ["prompt", "invalid", "reprompt", "a"]


async def test_menu_key_during_the_invalid_prompt_counts() -> None:
    call = FakeCall(keys=[(1200, "7"), (1200 + 100, "2")])
    await run(menu_flow(invalidAudioId="med_invalid"), call)
    assert heard(call) == ["prompt", "invalid", "b"]
    assert played_ms(call, 1) == 99


async def test_menu_timeouts_and_failures_are_counted_apart() -> None:
    # invalid, timeout, invalid: maxFailures 2 is reached by the second invalid entry
    call = FakeCall(keys=[(1100, "9"), (1100 + 1 + 1950 + 1000 + 1000 + 1000 + 500, "9")])
    await run(menu_flow(maxFailures=2, maxTimeouts=2, timeoutSec=1), call)
    assert heard(call) == [
        "prompt",
        "ivr-invalid",
        "prompt",
        "prompt",
        "ivr-invalid",
        "invalid_edge",
    ]


async def test_menu_missing_prompt_still_waits_for_a_key() -> None:
    graph = flow(
        {
            "start": ENTRY,
            "m": {"kind": "menu", "promptAudioId": "med_deleted"},
            "a": {"kind": "play", "audioId": "med_a"},
        },
        [("start", "default", "m"), ("m", "digit:1", "a")],
    )
    call = FakeCall(keys=[(2000, "1")])
    await run(graph, call)
    assert heard(call) == ["a"]


async def test_menu_prompt_text_plays_its_rendered_speech() -> None:
    graph = flow(
        {
            "start": ENTRY,
            "m": {"kind": "menu", "promptText": "Press 1 for sales."},
            "a": {"kind": "play", "audioId": "med_a"},
        },
        [("start", "default", "m"), ("m", "digit:1", "a")],
    )
    call = FakeCall(keys=[(1100, "1")])
    await run(graph, call, speech={"m/promptText": "med_speech_prompt"})
    assert heard(call) == ["speech_prompt", "a"]


# maxDigits > 1: only an entry of exactly one key chooses.


async def test_menu_multi_digit_one_key_and_terminator_chooses_at_once() -> None:
    call = FakeCall(keys=[(1100, "1"), (1300, "#")])
    await run(menu_flow(maxDigits=3, terminators="#", interDigitTimeoutSec=2), call)
    assert heard(call) == ["prompt", "a"]
    assert call.played[1][0] // MS == 1300  # right after the "#"


async def test_menu_multi_digit_one_key_chooses_after_the_inter_digit_timeout() -> None:
    call = FakeCall(keys=[(1100, "1")])
    await run(menu_flow(maxDigits=3, interDigitTimeoutSec=2), call)
    assert heard(call) == ["prompt", "a"]
    assert call.played[1][0] // MS == 3100


async def test_menu_multi_digit_entry_of_two_keys_is_invalid() -> None:
    call = FakeCall(keys=[(1100, "1"), (1200, "2")])
    await run(menu_flow(maxDigits=2, maxFailures=1), call)
    assert heard(call) == ["prompt", "ivr-invalid", "invalid_edge"]


async def test_menu_terminator_pressed_first_is_the_choice() -> None:
    call = FakeCall(keys=[(1100, "#")])
    await run(menu_flow(maxDigits=4, terminators="#"), call)
    assert heard(call) == ["prompt", "ok"]


# --- collect -------------------------------------------------------------------------------------


def collect_flow(**collect: Any) -> FlowGraph:
    return flow(
        {
            "start": ENTRY,
            "c": {
                "kind": "collect",
                "variable": "account",
                "promptAudioId": "med_prompt",
                **collect,
            },
            "ok": {"kind": "play", "audioId": "med_ok"},
            "fail": {"kind": "play", "audioId": "med_fail"},
        },
        [("start", "default", "c"), ("c", "ok", "ok"), ("c", "fail", "fail")],
    )


async def test_collect_stores_a_matching_entry_and_takes_ok(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = [(1100 + 100 * i, k) for i, k in enumerate("48213#")]
    call = FakeCall(keys=keys)
    with caplog.at_level(logging.DEBUG, logger="afterbeep.flow"):
        flow_run = await run(collect_flow(regex=r"\d{5}"), call)
    assert flow_run.variables == {"account": "48213"}
    assert heard(call) == ["prompt", "ok"]
    assert "48213" not in caplog.text and "+12025550123" not in caplog.text


async def test_collect_matches_in_linear_time_a_pattern_that_backtracks_in_re() -> None:
    # Python's re needs about 2**32 steps for this on 32 keys: the call would stall.
    keys = [(1100 + 100 * i, "1") for i in range(32)]
    call = FakeCall(keys=keys, hangup_at_ms=60_000)
    flow_run = await run(collect_flow(regex="(1+)+2", maxDigits=32, maxTries=1), call)
    assert flow_run.variables == {}
    assert heard(call)[-1] == "fail"


async def test_collect_entry_typed_during_the_prompt_counts() -> None:
    call = FakeCall(keys=[(200, "5"), (300, "5"), (400, "#")])
    flow_run = await run(collect_flow(), call)
    assert flow_run.variables == {"account": "55"}
    assert played_ms(call, 0) == 200


async def test_collect_ends_at_max_digits_and_after_the_inter_digit_timeout() -> None:
    at_max = FakeCall(keys=[(1100, "1"), (1200, "2"), (1300, "3"), (1400, "4")])
    assert (await run(collect_flow(maxDigits=3), at_max)).variables == {"account": "123"}
    paused = FakeCall(keys=[(1100, "1"), (1200, "2"), (5000, "3")])
    assert (await run(collect_flow(interDigitTimeoutSec=2), paused)).variables == {"account": "12"}


async def test_collect_wrong_entries_until_max_tries_take_fail() -> None:
    # "12" does not match; the invalid audio, the prompt again; "9" does not either: fail.
    call = FakeCall(
        keys=[
            (1100, "1"),
            (1200, "2"),
            (1300, "#"),
            (1301 + 500 + 1000 + 100, "9"),
            (1301 + 1500 + 200, "#"),
        ]
    )
    flow_run = await run(
        collect_flow(regex=r"\d{4}", maxTries=2, invalidAudioId="med_invalid"), call
    )
    assert flow_run.variables == {}
    assert heard(call) == ["prompt", "invalid", "prompt", "invalid", "fail"]


async def test_collect_too_few_digits_is_wrong_and_no_entry_hears_the_prompt_again() -> None:
    # nothing (timeout), then "7" (under minDigits), then "777": ok on the third try
    t2 = 1000 + 1000 + 1000 + 100
    t3 = t2 + 1 + 1950 + 1000 + 100
    keys = [(t2, "7"), (t2 + 50, "#"), (t3, "7"), (t3 + 50, "7"), (t3 + 100, "7"), (t3 + 150, "#")]
    call = FakeCall(keys=keys)
    flow_run = await run(collect_flow(minDigits=3, timeoutSec=1, maxTries=3), call)
    assert flow_run.variables == {"account": "777"}
    assert heard(call) == ["prompt", "prompt", "ivr-invalid", "prompt", "ok"]


async def test_collect_terminator_alone_is_no_entry_not_a_value() -> None:
    call = FakeCall(keys=[(1100, "#"), (2200, "4"), (2300, "2"), (2400, "#")])
    flow_run = await run(collect_flow(), call)
    assert flow_run.variables == {"account": "42"}
    assert heard(call) == ["prompt", "prompt", "ok"]  # no invalid prompt for an empty entry


async def test_collect_no_entry_at_all_takes_fail_after_max_tries() -> None:
    call = FakeCall()
    flow_run = await run(collect_flow(maxTries=2, timeoutSec=1), call)
    assert flow_run.variables == {}
    assert heard(call) == ["prompt", "prompt", "fail"]


# --- timeCondition -------------------------------------------------------------------------------


def time_flow(holiday_edge: bool = True) -> FlowGraph:
    edges = [
        ("start", "default", "tc"),
        ("tc", "in_hours", "open"),
        ("tc", "out_of_hours", "closed"),
    ]
    nodes: dict[str, dict[str, Any]] = {
        "start": ENTRY,
        "tc": {"kind": "timeCondition", "scheduleId": "sch_1"},
        "open": {"kind": "play", "audioId": "med_a"},
        "closed": {"kind": "play", "audioId": "med_b"},
    }
    if holiday_edge:
        nodes["holiday"] = {"kind": "play", "audioId": "med_ok"}
        edges.append(("tc", "holiday", "holiday"))
    return flow(nodes, edges)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (ScheduleState.IN_HOURS, "a"),
        (ScheduleState.OUT_OF_HOURS, "b"),
        (ScheduleState.HOLIDAY, "ok"),
    ],
)
async def test_time_condition_takes_the_edge_of_the_schedule_state(
    state: ScheduleState, expected: str
) -> None:
    env = Env(states={"sch_1": state})
    call = FakeCall()
    await run(time_flow(), call, env)
    assert heard(call) == [expected]
    assert env.asked == [("sch_1", env.at)]


async def test_time_condition_holiday_without_its_edge_takes_out_of_hours() -> None:
    call = FakeCall()
    await run(time_flow(holiday_edge=False), call, Env(states={"sch_1": ScheduleState.HOLIDAY}))
    assert heard(call) == ["b"]


# --- voicemail, not-live kinds ---------------------------------------------------------------


async def test_voicemail_node_hands_the_call_to_the_deposit_script_and_the_flow_ends() -> None:
    graph = flow(
        {
            "start": ENTRY,
            "m": {"kind": "menu", "promptAudioId": "med_prompt"},
            "vm": {"kind": "voicemail", "mailboxId": "mbx_a"},
        },
        [("start", "default", "m"), ("m", "digit:1", "vm")],
    )
    env = Env()
    call = FakeCall(keys=[(1100, "1")])
    await run(graph, call, env)
    assert env.voicemails == ["mbx_a"]
    assert heard(call) == ["prompt"] and call.hung_up_by_us


@pytest.mark.parametrize(
    ("data", "dest"),
    [
        ({"kind": "enqueue", "queueId": "q_1"}, Destination(DestKind.QUEUE, "q_1")),
        ({"kind": "ringGroup", "ringGroupId": "rg_1"}, Destination(DestKind.RING_GROUP, "rg_1")),
        ({"kind": "user", "userId": "usr_1"}, Destination(DestKind.USER, "usr_1")),
    ],
    ids=["enqueue", "ringGroup", "user"],
)
async def test_queue_ring_group_and_user_nodes_send_the_call_and_end_the_flow(
    data: dict[str, Any], dest: Destination
) -> None:
    graph = flow({"start": ENTRY, "x": data}, [("start", "default", "x")])
    env = Env()
    call = FakeCall()
    await run(graph, call, env)
    assert env.sent == [dest]
    assert heard(call) == []


# --- limits and endings --------------------------------------------------------------------------


async def test_a_loop_is_ended_at_the_visit_limit(caplog: pytest.LogCaptureFixture) -> None:
    graph = flow(
        {
            "start": ENTRY,
            "p1": {"kind": "play", "audioId": "med_a"},
            "p2": {"kind": "play", "audioId": "med_b"},
        },
        [("start", "default", "p1"), ("p1", "default", "p2"), ("p2", "default", "p1")],
    )
    call = FakeCall()
    with caplog.at_level(logging.INFO, logger="afterbeep.flow"):
        await run(graph, call)
    assert len(call.played) == MAX_VISITS - 1  # the entry is a visit too
    assert call.hung_up_by_us
    assert (
        f"flow flow_1 v3 node p2 (play): the call visited {MAX_VISITS} nodes, the most a call"
        " may; ending it"
    ) in caplog.text


async def test_a_caller_hanging_up_mid_flow_ends_it_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = Env()
    graph = flow(
        {
            "start": ENTRY,
            "m": {"kind": "menu", "promptAudioId": "med_prompt"},
            "vm": {"kind": "voicemail", "mailboxId": "mbx_a"},
        },
        [("start", "default", "m"), ("m", "digit:1", "vm"), ("m", "timeout", "vm")],
    )
    call = FakeCall(hangup_at_ms=400)
    with caplog.at_level(logging.INFO, logger="afterbeep.flow"):
        await run(graph, call, env)  # no exception
    assert played_ms(call, 0) == 400
    assert env.voicemails == []
    assert "flow flow_1 v3 node m (menu): the caller hung up" in caplog.text
