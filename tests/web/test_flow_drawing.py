"""The flow page's drawing of a graph's raw JSON: columns by distance from the entry, every
error on its node or edge, and whatever was typed drawn without failing."""

from __future__ import annotations

from afterbeep.web.admin import draw


def test_columns_follow_the_edges_and_errors_land_on_their_nodes() -> None:
    graph = {
        "nodes": [
            {"id": "start", "data": {"kind": "entry"}},
            {"id": "menu", "data": {"kind": "menu"}},
            {"id": "vm", "data": {"kind": "voicemail"}},
            {"id": "lost", "type": "hangup"},
        ],
        "edges": [
            {"id": "e1", "source": "start", "target": "menu", "sourceHandle": "default"},
            {"id": "e2", "source": "menu", "target": "vm", "sourceHandle": "digit:1"},
            {"id": "e3", "source": "menu", "target": "nowhere"},
        ],
    }
    errors: list[dict[str, str | None]] = [
        {"node_id": "vm", "edge_id": None, "field": "data.mailboxId", "message": "is missing"},
        {"node_id": None, "edge_id": "e2", "field": "sourceHandle", "message": "is odd"},
        {"node_id": None, "edge_id": None, "field": "nodes", "message": "too many"},
    ]
    drawing = draw(graph, errors)
    x = {n.id: n.x for n in drawing.nodes}
    assert x["start"] < x["menu"] < x["vm"] < x["lost"]  # the unreached node comes last
    assert {n.id: n.kind for n in drawing.nodes}["lost"] == "hangup"
    assert len(drawing.edges) == 2  # the edge to a missing node is not drawn
    assert [n.errors for n in drawing.nodes if n.errors] == [["data.mailboxId: is missing"]]
    assert [e.errors for e in drawing.edges if e.errors] == [["sourceHandle: is odd"]]
    assert drawing.width > x["lost"] and drawing.height > 0


def test_anything_typed_is_drawn_without_failing() -> None:
    for graph in (None, [], {"nodes": "x"}, {"nodes": [1, {"id": 2}], "edges": [None]}):
        drawing = draw(graph, [])
        assert drawing.nodes == [] and drawing.edges == []
