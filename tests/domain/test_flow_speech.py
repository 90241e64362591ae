"""The texts a flow speaks: which fields, their keys, the node's language and voice checked."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest

from afterbeep.domain.flows import (
    SpeechSite,
    check_flow,
    media_ids,
    parse_graph,
    speech_key,
    speech_sites,
)


def _node(node_id: str, kind: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": kind, "data": {"kind": kind, **data}}


def _edge(edge_id: str, source: str, handle: str, target: str) -> dict[str, Any]:
    return {"id": edge_id, "source": source, "sourceHandle": handle, "target": target}


def _flow(*middle: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """entry → each node of `middle` in turn (by its first outcome) → hangup."""
    nodes = [_node("start", "entry"), *middle, _node("end", "hangup")]
    handles = {"say": "default", "play": "default", "menu": "digit:1", "collect": "ok"}
    edges = [
        _edge(f"e{i}", a["id"], handles.get(a["data"]["kind"], "default"), b["id"])
        for i, (a, b) in enumerate(pairwise(nodes))
    ]
    return nodes, edges


def test_say_text_and_prompt_texts_are_spoken_with_their_language_and_voice() -> None:
    nodes, edges = _flow(
        _node("a/1", "say", text="Hello", voice="f3", language="es-mx"),
        _node("menu", "menu", promptText="Press one", language="de"),
        _node("ask", "collect", variable="pin", promptText="Your PIN"),
        _node("tune", "play", audioId="media_01jg8asp59ps9rtt7azhrhvcre"),
        _node("m2", "menu", promptAudioId="media_01jg8asp59ps9rtt7azhrhvcrf"),
    )
    graph, errors = check_flow(nodes, edges)
    assert errors == []
    assert speech_sites(graph) == [
        SpeechSite("a/1", "text", "Hello", "es-MX", "f3"),
        SpeechSite("menu", "promptText", "Press one", "de", None),
        SpeechSite("ask", "promptText", "Your PIN", None, None),
    ]
    assert [site.key for site in speech_sites(graph)] == [
        "a/1/text",
        "menu/promptText",
        "ask/promptText",
    ]
    assert speech_key("a/1", "text").rsplit("/", 1) == ["a/1", "text"]
    assert media_ids(graph) == {
        "media_01jg8asp59ps9rtt7azhrhvcre",
        "media_01jg8asp59ps9rtt7azhrhvcrf",
    }


@pytest.mark.parametrize(
    ("node", "field"),
    [
        (_node("s", "say", text="Hi", language="english"), "data.language"),
        (_node("s", "say", text="Hi", language=7), "data.language"),
        (_node("s", "say", text="Hi", voice=""), "data.voice"),
        (_node("s", "say", text="Hi", voice="x" * 65), "data.voice"),
        (_node("s", "menu", promptText="Hi", language="e"), "data.language"),
        (_node("s", "collect", variable="v", promptText="Hi", voice=3), "data.voice"),
    ],
)
def test_a_bad_language_or_voice_names_the_node(node: dict[str, Any], field: str) -> None:
    nodes, edges = _flow(node)
    _graph, errors = check_flow(nodes, edges)
    assert [(e.node_id, e.field) for e in errors] == [("s", field)]


def test_a_graph_without_texts_speaks_nothing() -> None:
    nodes, edges = _flow(_node("p", "play", audioId="media_01jg8asp59ps9rtt7azhrhvcre"))
    assert speech_sites(parse_graph(nodes, edges)) == []
