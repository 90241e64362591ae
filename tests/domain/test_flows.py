"""The flow graph model: parsing, validation (every error kind, all at once), references, next_node."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from afterbeep.domain.flows import (
    MAX_EDGES,
    MAX_NODES,
    MAX_VISITS,
    OUTCOMES,
    FlowError,
    NodeKind,
    RefKind,
    check_flow,
    next_node,
    parse_graph,
    reference_sites,
    references,
    setting,
    validate,
)


def _node(node_id: str, kind: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": kind, "data": {"kind": kind, **data}}


def _edge(edge_id: str, source: str, handle: str | None, target: str) -> dict[str, Any]:
    return {"id": edge_id, "source": source, "sourceHandle": handle, "target": target}


def four_node_flow() -> dict[str, list[dict[str, Any]]]:
    """entry → timeCondition → menu → voicemail (the issue's benchmark flow)."""
    return {
        "nodes": [
            _node("start", "entry", trigger="inbound"),
            _node("hours", "timeCondition", scheduleId="sch_office"),
            _node(
                "main",
                "menu",
                promptAudioId="media_welcome",
                repromptAudioId="media_again",
                minDigits=1,
                maxDigits=1,
                terminators="#",
                timeoutSec=5,
                interDigitTimeoutSec=3,
                maxFailures=2,
                maxTimeouts=2,
            ),
            _node("vm", "voicemail", mailboxId="vm_a"),
        ],
        "edges": [
            _edge("e1", "start", "default", "hours"),
            _edge("e2", "hours", "in_hours", "main"),
            _edge("e3", "hours", "out_of_hours", "vm"),
            _edge("e4", "main", "digit:1", "vm"),
            _edge("e5", "main", "timeout", "vm"),
        ],
    }


def errors_of(raw: dict[str, Any]) -> list[FlowError]:
    _graph, errors = check_flow(raw["nodes"], raw["edges"])
    return errors


def only_error(raw: dict[str, Any]) -> FlowError:
    errors = errors_of(raw)
    assert len(errors) == 1, errors
    return errors[0]


def test_the_four_node_flow_is_valid() -> None:
    graph, errors = check_flow(**four_node_flow())
    assert errors == []
    assert [n.kind for n in graph.nodes] == ["entry", "timeCondition", "menu", "voicemail"]
    assert graph.entry is not None and graph.entry.id == "start"
    main = graph.node("main")
    assert main is not None
    assert setting(main, "bargeIn") is True  # the default
    assert setting(main, "maxFailures") == 2


def test_every_kind_with_its_outcomes_is_valid() -> None:
    nodes = [
        _node("start", "entry"),
        _node("hello", "play", audioId="media_hello"),
        _node("tts", "say", text="Welcome to Example", voice="en-us"),
        _node(
            "pin",
            "collect",
            variable="account",
            promptText="Your account number",
            regex=r"^\d{4,8}$",
        ),
        _node("menu", "menu", promptText="Press 1 for sales"),
        _node("q", "enqueue", queueId="queue_sales"),
        _node("rg", "ringGroup", ringGroupId="rg_support"),
        _node("u", "user", userId="usr_boss"),
        _node("bye", "hangup"),
    ]
    edges = [
        _edge("a", "start", None, "hello"),  # a null handle is `default`
        _edge("b", "hello", "default", "tts"),
        _edge("c", "tts", "default", "pin"),
        _edge("d", "pin", "ok", "menu"),
        _edge("e", "pin", "fail", "bye"),
        _edge("f", "menu", "digit:1", "q"),
        _edge("g", "menu", "digit:2", "rg"),
        _edge("h", "menu", "digit:*", "u"),
        _edge("i", "menu", "digit:#", "menu"),  # loops are allowed; MAX_VISITS bounds a call
        _edge("j", "menu", "invalid", "bye"),
    ]
    graph, errors = check_flow(nodes, edges)
    assert errors == []
    assert graph.edge_for("start", "default") is not None


def test_outcomes_per_kind() -> None:
    assert OUTCOMES[NodeKind.MENU] == {f"digit:{k}" for k in "0123456789*#"} | {
        "timeout",
        "invalid",
    }
    assert OUTCOMES[NodeKind.COLLECT] == {"ok", "fail"}
    assert OUTCOMES[NodeKind.TIME_CONDITION] == {"in_hours", "out_of_hours", "holiday"}
    for kind in ("entry", "play", "say"):
        assert OUTCOMES[NodeKind(kind)] == {"default"}
    for kind in ("voicemail", "enqueue", "ringGroup", "user", "hangup"):
        assert OUTCOMES[NodeKind(kind)] == frozenset()
    assert MAX_VISITS == 100


# --- each error kind, alone, naming its node ---------------------------------------------------


def test_no_entry() -> None:
    raw = four_node_flow()
    raw["nodes"][0] = _node("start", "play", audioId="media_x")
    # `start` is still the root of nothing: with no entry, reachability is not judged.
    error = only_error(raw)
    assert (error.node_id, error.field) == (None, "nodes")
    assert "exactly one entry" in error.message


def test_two_entries() -> None:
    raw = four_node_flow()
    raw["nodes"].append(_node("start2", "entry"))
    raw["edges"].append(_edge("e9", "start2", "default", "vm"))
    error = only_error(raw)
    assert (error.node_id, error.edge_id, error.field) == ("start2", None, "data.kind")


def test_unknown_kind() -> None:
    raw = four_node_flow()
    raw["nodes"][3] = _node("vm", "conference", roomId="r1")
    error = only_error(raw)
    assert (error.node_id, error.field) == ("vm", "data.kind")
    assert "conference" in error.message


@pytest.mark.parametrize(
    ("node", "field"),
    [
        (_node("vm", "voicemail"), "data.mailboxId"),
        (_node("vm", "voicemail", mailboxId=""), "data.mailboxId"),
        (_node("vm", "voicemail", mailboxId=42), "data.mailboxId"),
        (_node("vm", "play"), "data.audioId"),
        (_node("vm", "say", text="  "), "data.text"),
        (_node("vm", "say", text="x" * 1001), "data.text"),
        (_node("vm", "say", text="hi", voice=3), "data.voice"),
        (_node("vm", "enqueue"), "data.queueId"),
        (_node("vm", "ringGroup"), "data.ringGroupId"),
        (_node("vm", "user", userId=None), "data.userId"),
        (_node("vm", "timeCondition"), "data.scheduleId"),
        (_node("vm", "menu"), "data.promptAudioId"),
        (_node("vm", "menu", promptAudioId="m", promptText="t"), "data.promptAudioId"),
        (_node("vm", "menu", promptText="t", maxDigits=0), "data.maxDigits"),
        (_node("vm", "menu", promptText="t", maxDigits=33), "data.maxDigits"),
        (_node("vm", "menu", promptText="t", minDigits=3, maxDigits=2), "data.minDigits"),
        (_node("vm", "menu", promptText="t", minDigits=2), "data.minDigits"),  # default max 1
        (_node("vm", "menu", promptText="t", timeoutSec=0), "data.timeoutSec"),
        (_node("vm", "menu", promptText="t", timeoutSec=61), "data.timeoutSec"),
        (
            _node("vm", "menu", promptText="t", interDigitTimeoutSec="3"),
            "data.interDigitTimeoutSec",
        ),
        (_node("vm", "menu", promptText="t", maxFailures=11), "data.maxFailures"),
        (_node("vm", "menu", promptText="t", maxTimeouts=True), "data.maxTimeouts"),
        (_node("vm", "menu", promptText="t", terminators="1"), "data.terminators"),
        (_node("vm", "menu", promptText="t", terminators="##"), "data.terminators"),
        (_node("vm", "menu", promptText="t", bargeIn="yes"), "data.bargeIn"),
        (_node("vm", "menu", promptText="t", repromptAudioId=5), "data.repromptAudioId"),
        (_node("vm", "collect", promptText="t"), "data.variable"),
        (_node("vm", "collect", promptText="t", variable="1abc"), "data.variable"),
        (_node("vm", "collect", variable="acct"), "data.promptAudioId"),
        (_node("vm", "collect", variable="acct", promptText="t", regex="(["), "data.regex"),
        (_node("vm", "collect", variable="acct", promptText="t", regex=r"(1)\1"), "data.regex"),
        (_node("vm", "collect", variable="acct", promptText="t", regex=r"1(?=2)"), "data.regex"),
        (_node("vm", "collect", variable="acct", promptText="t", regex="a" * 201), "data.regex"),
        (_node("vm", "collect", variable="acct", promptText="t", maxTries=0), "data.maxTries"),
        (
            _node("vm", "collect", variable="acct", promptText="t", terminator="#*"),
            "data.terminator",
        ),
    ],
)
def test_bad_data_field(node: dict[str, Any], field: str) -> None:
    raw = four_node_flow()
    # Replace the terminal voicemail; keep its edges valid for whatever kind `node` is.
    raw["nodes"][3] = node
    error = only_error(raw)
    assert (error.node_id, error.edge_id, error.field) == ("vm", None, field)


def test_entry_trigger_other_than_inbound() -> None:
    raw = four_node_flow()
    raw["nodes"][0]["data"]["trigger"] = "api"
    error = only_error(raw)
    assert (error.node_id, error.edge_id, error.field) == ("start", None, "data.trigger")


def test_duplicate_node_id() -> None:
    raw = four_node_flow()
    raw["nodes"].append(_node("vm", "hangup"))
    error = only_error(raw)
    assert (error.node_id, error.field, error.message) == ("vm", "id", "duplicate node id")


def test_duplicate_edge_id() -> None:
    raw = four_node_flow()
    raw["edges"].append(_edge("e5", "main", "digit:2", "vm"))
    error = only_error(raw)
    assert (error.node_id, error.edge_id, error.field) == ("main", "e5", "id")


def test_edge_from_a_missing_node() -> None:
    raw = four_node_flow()
    raw["edges"].append(_edge("e9", "ghost", "default", "vm"))
    error = only_error(raw)
    assert (error.node_id, error.edge_id, error.field) == (None, "e9", "source")


def test_edge_to_a_missing_node() -> None:
    raw = four_node_flow()
    raw["edges"].append(_edge("e9", "main", "digit:2", "ghost"))
    error = only_error(raw)
    assert (error.node_id, error.edge_id, error.field) == ("main", "e9", "target")


@pytest.mark.parametrize(
    ("source", "handle"),
    [
        ("main", "digit:a"),
        ("main", "digit:12"),
        ("main", "default"),
        ("main", None),  # a null handle means `default`, which a menu does not have
        ("hours", "closed"),
        ("start", "timeout"),
    ],
)
def test_handle_not_valid_for_its_kind(source: str, handle: str | None) -> None:
    raw = four_node_flow()
    raw["edges"].append(_edge("e9", source, handle, "vm"))
    error = only_error(raw)
    assert (error.node_id, error.edge_id, error.field) == (source, "e9", "sourceHandle")
    assert "no outcome" in error.message


def test_a_null_handle_is_the_default_outcome() -> None:
    raw = four_node_flow()
    raw["edges"].append(_edge("e9", "start", None, "vm"))  # `start` already has `default`
    error = only_error(raw)
    assert (error.node_id, error.edge_id, error.field) == ("start", "e9", "sourceHandle")
    assert "already has an edge" in error.message


def test_edge_leaving_a_terminal_node() -> None:
    raw = four_node_flow()
    raw["edges"].append(_edge("e9", "vm", "default", "main"))
    error = only_error(raw)
    assert (error.node_id, error.edge_id, error.field) == ("vm", "e9", "sourceHandle")
    assert "ends the flow" in error.message


def test_two_edges_for_one_outcome() -> None:
    raw = four_node_flow()
    raw["edges"].append(_edge("e9", "main", "digit:1", "hours"))
    error = only_error(raw)
    assert (error.node_id, error.edge_id, error.field) == ("main", "e9", "sourceHandle")


def test_unreachable_node() -> None:
    raw = four_node_flow()
    raw["nodes"].append(_node("island", "hangup"))
    error = only_error(raw)
    assert (error.node_id, error.edge_id, error.field) == ("island", None, "id")
    assert "not reachable" in error.message


def test_a_node_reached_only_from_an_unreachable_node_is_unreachable_too() -> None:
    raw = four_node_flow()
    raw["nodes"] += [_node("island", "play", audioId="media_x"), _node("bye", "hangup")]
    raw["edges"].append(_edge("e9", "island", "default", "bye"))
    assert {(e.node_id, e.field) for e in errors_of(raw)} == {("island", "id"), ("bye", "id")}


def test_too_many_nodes_and_edges() -> None:
    nodes = [_node(f"n{i}", "hangup") for i in range(MAX_NODES + 1)]
    edges = [_edge(f"e{i}", "n0", "default", "n1") for i in range(MAX_EDGES + 1)]
    graph, errors = check_flow(nodes, edges)
    assert [(e.field, e.node_id) for e in errors] == [("nodes", None), ("edges", None)]
    assert graph.nodes == () and graph.edges == ()


@pytest.mark.parametrize(
    ("nodes", "edges", "field"),
    [
        ("x", [], "nodes"),
        ([], {}, "edges"),
        ([3], [], "nodes[0]"),
        ([{"type": "hangup", "data": {"kind": "hangup"}}], [], "nodes[0].id"),
        ([{"id": "a" * 65, "data": {"kind": "hangup"}}], [], "nodes[0].id"),
        ([{"id": "a", "data": "hangup"}], [], "data"),
        ([{"id": "a", "data": {}}], [], "data.kind"),
        ([{"id": "a", "type": 1, "data": {"kind": "hangup"}}], [], "type"),
        ([], ["e"], "edges[0]"),
        ([], [{"source": "a", "target": "b"}], "edges[0].id"),
        ([], [{"id": "e", "target": "b"}], "source"),
        ([], [{"id": "e", "source": "a", "target": "b", "sourceHandle": 1}], "sourceHandle"),
    ],
)
def test_shape_errors(nodes: object, edges: object, field: str) -> None:
    graph = parse_graph(nodes, edges)
    assert [e.field for e in graph.parse_errors] == [field]
    assert field in {e.field for e in validate(graph)}


# --- several errors at once ----------------------------------------------------------------------


def test_all_errors_are_reported_together() -> None:
    raw = four_node_flow()
    raw["nodes"][2]["data"]["maxDigits"] = 99  # menu: bad bound
    raw["nodes"][3]["data"].pop("mailboxId")  # voicemail: missing field
    raw["nodes"].append(_node("odd", "fax"))  # unknown kind, unreachable too
    raw["nodes"].append(_node("main", "hangup"))  # duplicate id
    raw["edges"].append(_edge("e9", "hours", "weekend", "vm"))  # bad handle
    raw["edges"].append(_edge("e10", "main", "digit:1", "ghost"))  # missing target + dup outcome
    found = {(e.node_id, e.edge_id, e.field) for e in errors_of(raw)}
    assert found == {
        ("main", None, "data.maxDigits"),
        ("vm", None, "data.mailboxId"),
        ("odd", None, "data.kind"),
        ("main", None, "id"),
        ("hours", "e9", "sourceHandle"),
        ("main", "e10", "target"),
        ("main", "e10", "sourceHandle"),
        ("odd", None, "id"),
    }


def test_errors_serialise_for_problem_json() -> None:
    raw = four_node_flow()
    raw["nodes"][3]["data"].pop("mailboxId")
    assert only_error(raw).as_dict() == {
        "node_id": "vm",
        "edge_id": None,
        "field": "data.mailboxId",
        "message": "is required",
    }


def test_validation_does_not_change_its_input() -> None:
    raw = four_node_flow()
    before = copy.deepcopy(raw)
    graph, _errors = check_flow(raw["nodes"], raw["edges"])
    assert raw == before
    assert graph.to_raw() == before


# --- references and next_node -------------------------------------------------------------------


def test_references_by_kind() -> None:
    raw = four_node_flow()
    raw["nodes"].append(_node("p", "play", audioId="media_welcome"))
    raw["edges"].append(_edge("e9", "main", "digit:2", "p"))
    graph, errors = check_flow(raw["nodes"], raw["edges"])
    assert errors == []
    refs = references(graph)
    assert refs[RefKind.MEDIA] == {"media_welcome", "media_again"}
    assert refs[RefKind.SCHEDULE] == {"sch_office"}
    assert refs[RefKind.MAILBOX] == {"vm_a"}
    assert refs[RefKind.QUEUE] == set() and refs[RefKind.USER] == set()
    sites = {(r.node_id, r.field) for r in reference_sites(graph) if r.id == "media_welcome"}
    assert sites == {("main", "data.promptAudioId"), ("p", "data.audioId")}


def test_next_node() -> None:
    graph, _errors = check_flow(**four_node_flow())
    assert next_node(graph, "start", "default") == graph.node("hours")
    assert next_node(graph, "hours", "in_hours") == graph.node("main")
    assert next_node(graph, "main", "digit:1") == graph.node("vm")
    assert next_node(graph, "main", "digit:2") is None  # no edge drawn: the runner hangs up
    assert next_node(graph, "vm", "default") is None
    assert next_node(graph, "ghost", "default") is None


def test_holiday_falls_back_to_out_of_hours() -> None:
    graph, _errors = check_flow(**four_node_flow())
    assert next_node(graph, "hours", "holiday") == graph.node("vm")


def test_holiday_edge_wins_when_drawn() -> None:
    raw = four_node_flow()
    raw["nodes"].append(_node("closed", "hangup"))
    raw["edges"].append(_edge("e9", "hours", "holiday", "closed"))
    graph, errors = check_flow(raw["nodes"], raw["edges"])
    assert errors == []
    assert next_node(graph, "hours", "holiday") == graph.node("closed")
    assert next_node(graph, "hours", "out_of_hours") == graph.node("vm")


def test_the_fallback_is_only_for_time_conditions() -> None:
    raw = four_node_flow()
    raw["edges"].remove(raw["edges"][2])  # hours --out_of_hours--> vm
    graph, _errors = check_flow(raw["nodes"], raw["edges"])
    assert next_node(graph, "hours", "holiday") is None
    assert next_node(graph, "main", "holiday") is None
