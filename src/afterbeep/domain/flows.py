"""Call flows: a graph of nodes and edges in the shape of a visual editor, and its validation.

A flow is `nodes [{id, type, data: {kind, ...}}]` and `edges [{id, source, sourceHandle,
target}]` (seed 003's field names, camelCase in `data`, are the contract). `data.kind` says
what a node does; `type` is the editor's component name and is kept but not interpreted.
An edge leaves a node by one of its kind's outcomes (the `sourceHandle`):

    entry          trigger: inbound                                   default
    play           audioId                                            default
    say            text, voice?, language?                            default
    menu           promptAudioId | promptText, repromptAudioId?,      digit:0..digit:9, digit:*,
                   invalidAudioId?, minDigits, maxDigits, terminators, digit:#, timeout, invalid
                   timeoutSec, interDigitTimeoutSec, maxFailures,
                   maxTimeouts, bargeIn (true), voice?, language?
    collect        variable, promptAudioId | promptText, invalidAudioId?, ok, fail
                   minDigits, maxDigits, terminator, regex?, maxTries,
                   timeoutSec, interDigitTimeoutSec, voice?, language?
    timeCondition  scheduleId                                         in_hours, out_of_hours, holiday
    voicemail      mailboxId                                          (terminal: the deposit script)
    enqueue        queueId                                            (terminal for now)
    ringGroup      ringGroupId                                        (terminal for now)
    user           userId                                             (terminal for now)
    hangup                                                            (terminal)

A say node's `text` and a menu's or collect's `promptText` are spoken by the service when the
flow is saved (`SPEECH_FIELDS`, `speech_sites`): in the node's `language` (a BCP 47 tag), else
the account's, by the engine's voice for it or the node's `voice`.

enqueue, ringGroup and user are accepted and validated now and go live in the next issue,
which will give them exits (e.g. a queue's `timeout`, `abandon`, `no_agents`, `queue_full`;
a ring group's or user's `no_answer`, `busy`); until then they have none, so an edge leaving
one is an error.

`validate` returns every error at once; each names the node (and edge) it is about, so the API
can list them all. Checks here are the ones that need nothing but the graph; whether the media,
schedules, mailboxes, ... that `references` collects exist in the caller's account is the
service's job. `next_node` is the one graph step the runner needs; `MAX_VISITS` bounds a call.

Pure: no I/O, no framework.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any

import re2

from afterbeep.domain.accounts import parse_language
from afterbeep.domain.errors import InvalidInput

MAX_NODES = 200
MAX_EDGES = 1000
# A call that visits more nodes than this is ended by the runner (a loop must not spin forever).
MAX_VISITS = 100
MAX_ID_CHARS = 64
MAX_TEXT_CHARS = 1000
MAX_REGEX_CHARS = 200

DIGIT_BOUNDS = (1, 32)
TIMEOUT_BOUNDS = (1, 60)
COUNT_BOUNDS = (1, 10)
DTMF_KEYS = "0123456789*#"
TERMINATOR_KEYS = "*#"
_VARIABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class NodeKind(enum.StrEnum):
    ENTRY = "entry"
    PLAY = "play"
    SAY = "say"
    MENU = "menu"
    COLLECT = "collect"
    TIME_CONDITION = "timeCondition"
    VOICEMAIL = "voicemail"
    ENQUEUE = "enqueue"
    RING_GROUP = "ringGroup"
    USER = "user"
    HANGUP = "hangup"
    VOICEMAIL_MAIN = "voicemailMain"  # the owners' phone menu: mailbox number, then PIN


DEFAULT = "default"
TIMEOUT = "timeout"
INVALID = "invalid"
OK = "ok"
FAIL = "fail"
IN_HOURS = "in_hours"
OUT_OF_HOURS = "out_of_hours"
HOLIDAY = "holiday"


def digit_outcome(key: str) -> str:
    """The menu outcome of one DTMF key: `digit:1`, `digit:*`, `digit:#`."""
    return f"digit:{key}"


OUTCOMES: Mapping[NodeKind, frozenset[str]] = MappingProxyType(
    {
        NodeKind.ENTRY: frozenset({DEFAULT}),
        NodeKind.PLAY: frozenset({DEFAULT}),
        NodeKind.SAY: frozenset({DEFAULT}),
        NodeKind.MENU: frozenset({digit_outcome(k) for k in DTMF_KEYS} | {TIMEOUT, INVALID}),
        NodeKind.COLLECT: frozenset({OK, FAIL}),
        NodeKind.TIME_CONDITION: frozenset({IN_HOURS, OUT_OF_HOURS, HOLIDAY}),
        NodeKind.VOICEMAIL: frozenset(),
        NodeKind.ENQUEUE: frozenset(),
        NodeKind.RING_GROUP: frozenset(),
        NodeKind.USER: frozenset(),
        NodeKind.HANGUP: frozenset(),
        NodeKind.VOICEMAIL_MAIN: frozenset(),
    }
)
# When an outcome has no edge, the runner follows this one instead (seed 003: a holiday with
# no holiday edge drawn takes the out-of-hours edge).
FALLBACKS: Mapping[tuple[NodeKind, str], str] = MappingProxyType(
    {(NodeKind.TIME_CONDITION, HOLIDAY): OUT_OF_HOURS}
)
ENTRY_TRIGGERS = frozenset({"inbound"})


class RefKind(enum.StrEnum):
    """What a node's data can point at, for the service to check in the caller's account."""

    MEDIA = "media"
    SCHEDULE = "schedule"
    MAILBOX = "mailbox"
    QUEUE = "queue"
    RING_GROUP = "ring_group"
    USER = "user"


# (kind, data field) -> what the field refers to.
REFERENCE_FIELDS: Mapping[NodeKind, tuple[tuple[str, RefKind], ...]] = MappingProxyType(
    {
        NodeKind.PLAY: (("audioId", RefKind.MEDIA),),
        NodeKind.MENU: (
            ("promptAudioId", RefKind.MEDIA),
            ("repromptAudioId", RefKind.MEDIA),
            ("invalidAudioId", RefKind.MEDIA),
        ),
        NodeKind.COLLECT: (("promptAudioId", RefKind.MEDIA), ("invalidAudioId", RefKind.MEDIA)),
        NodeKind.TIME_CONDITION: (("scheduleId", RefKind.SCHEDULE),),
        NodeKind.VOICEMAIL: (("mailboxId", RefKind.MAILBOX),),
        NodeKind.ENQUEUE: (("queueId", RefKind.QUEUE),),
        NodeKind.RING_GROUP: (("ringGroupId", RefKind.RING_GROUP),),
        NodeKind.USER: (("userId", RefKind.USER),),
    }
)

# The data fields whose text is spoken (made into audio when the flow is saved).
SPEECH_FIELDS: Mapping[NodeKind, tuple[str, ...]] = MappingProxyType(
    {
        NodeKind.SAY: ("text",),
        NodeKind.MENU: ("promptText",),
        NodeKind.COLLECT: ("promptText",),
    }
)

# Defaults of the optional settings, for the runner (`setting`).
DEFAULTS: Mapping[NodeKind, Mapping[str, object]] = MappingProxyType(
    {
        NodeKind.ENTRY: MappingProxyType({"trigger": "inbound"}),
        NodeKind.MENU: MappingProxyType(
            {
                "minDigits": 1,
                "maxDigits": 1,
                "terminators": "#",
                "timeoutSec": 5,
                "interDigitTimeoutSec": 3,
                "maxFailures": 3,
                "maxTimeouts": 3,
                "bargeIn": True,
            }
        ),
        NodeKind.COLLECT: MappingProxyType(
            {
                "minDigits": 1,
                "maxDigits": 16,
                "terminator": "#",
                "timeoutSec": 5,
                "interDigitTimeoutSec": 3,
                "maxTries": 3,
            }
        ),
    }
)


@dataclass(frozen=True)
class FlowError:
    node_id: str | None
    edge_id: str | None
    field: str
    message: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "node_id": self.node_id,
            "edge_id": self.edge_id,
            "field": self.field,
            "message": self.message,
        }


@dataclass(frozen=True)
class FlowNode:
    id: str
    type: str
    # `data.kind` as given; `node_kind` is None when it is not a known kind.
    kind: str
    data: Mapping[str, Any]

    @property
    def node_kind(self) -> NodeKind | None:
        try:
            return NodeKind(self.kind)
        except ValueError:
            return None


@dataclass(frozen=True)
class FlowEdge:
    id: str
    source: str
    # A missing or null `sourceHandle` (an editor's single-handle node) means `default`.
    source_handle: str
    target: str


@dataclass(frozen=True)
class FlowGraph:
    """Nodes and edges in the order given; duplicates are kept so that `validate` sees them."""

    nodes: tuple[FlowNode, ...]
    edges: tuple[FlowEdge, ...]
    # Errors of shape found while parsing (an entry that is not an object, an id missing, ...).
    parse_errors: tuple[FlowError, ...] = ()
    # Set when the raw lists were over MAX_NODES / MAX_EDGES and nothing was read.
    too_large: bool = False

    @cached_property
    def _nodes_by_id(self) -> Mapping[str, FlowNode]:
        by_id: dict[str, FlowNode] = {}
        for node in self.nodes:
            by_id.setdefault(node.id, node)
        return by_id

    @cached_property
    def _edges_by_outcome(self) -> Mapping[tuple[str, str], FlowEdge]:
        by_outcome: dict[tuple[str, str], FlowEdge] = {}
        for edge in self.edges:
            by_outcome.setdefault((edge.source, edge.source_handle), edge)
        return by_outcome

    def node(self, node_id: str) -> FlowNode | None:
        return self._nodes_by_id.get(node_id)

    @property
    def entry(self) -> FlowNode | None:
        """The first entry node (a valid graph has exactly one)."""
        return next((n for n in self.nodes if n.kind == NodeKind.ENTRY), None)

    def edge_for(self, node_id: str, outcome: str) -> FlowEdge | None:
        return self._edges_by_outcome.get((node_id, outcome))

    def to_raw(self) -> dict[str, list[dict[str, Any]]]:
        """The graph back as JSON-ready dicts (nodes and edges as parsed)."""
        return {
            "nodes": [{"id": n.id, "type": n.type, "data": dict(n.data)} for n in self.nodes],
            "edges": [
                {
                    "id": e.id,
                    "source": e.source,
                    "sourceHandle": e.source_handle,
                    "target": e.target,
                }
                for e in self.edges
            ],
        }


# ---------------------------------------------------------------------------------------------
# Parsing: raw JSON-like values into a graph, shape errors reported rather than raised.


def _is_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS


def parse_graph(nodes: object, edges: object) -> FlowGraph:
    """The graph from raw `nodes` and `edges` lists. Never raises: an entry that cannot be read
    is left out and reported in `parse_errors` (as is a list over the size limits, in which case
    nothing is read)."""
    errors: list[FlowError] = []
    if not isinstance(nodes, list):
        errors.append(FlowError(None, None, "nodes", "must be a list of nodes"))
        nodes = []
    if not isinstance(edges, list):
        errors.append(FlowError(None, None, "edges", "must be a list of edges"))
        edges = []
    if len(nodes) > MAX_NODES:
        errors.append(FlowError(None, None, "nodes", f"at most {MAX_NODES} nodes"))
    if len(edges) > MAX_EDGES:
        errors.append(FlowError(None, None, "edges", f"at most {MAX_EDGES} edges"))
    if len(nodes) > MAX_NODES or len(edges) > MAX_EDGES:
        return FlowGraph((), (), tuple(errors), too_large=True)

    parsed_nodes: list[FlowNode] = []
    for index, raw in enumerate(nodes):
        node = _parse_node(index, raw, errors)
        if node is not None:
            parsed_nodes.append(node)
    parsed_edges: list[FlowEdge] = []
    for index, raw in enumerate(edges):
        edge = _parse_edge(index, raw, errors)
        if edge is not None:
            parsed_edges.append(edge)
    return FlowGraph(tuple(parsed_nodes), tuple(parsed_edges), tuple(errors))


def _parse_node(index: int, raw: object, errors: list[FlowError]) -> FlowNode | None:
    if not isinstance(raw, dict):
        errors.append(FlowError(None, None, f"nodes[{index}]", "must be an object"))
        return None
    node_id = raw.get("id")
    if not _is_id(node_id):
        errors.append(
            FlowError(
                None,
                None,
                f"nodes[{index}].id",
                f"must be a string of 1 to {MAX_ID_CHARS} characters",
            )
        )
        return None
    assert isinstance(node_id, str)
    data = raw.get("data")
    if not isinstance(data, dict):
        errors.append(FlowError(node_id, None, "data", "must be an object"))
        return None
    kind = data.get("kind")
    if not isinstance(kind, str):
        errors.append(FlowError(node_id, None, "data.kind", "must be a string"))
        return None
    node_type = raw.get("type", kind)
    if not isinstance(node_type, str):
        errors.append(FlowError(node_id, None, "type", "must be a string"))
        return None
    return FlowNode(node_id, node_type, kind, MappingProxyType(dict(data)))


def _parse_edge(index: int, raw: object, errors: list[FlowError]) -> FlowEdge | None:
    if not isinstance(raw, dict):
        errors.append(FlowError(None, None, f"edges[{index}]", "must be an object"))
        return None
    edge_id = raw.get("id")
    if not _is_id(edge_id):
        errors.append(
            FlowError(
                None,
                None,
                f"edges[{index}].id",
                f"must be a string of 1 to {MAX_ID_CHARS} characters",
            )
        )
        return None
    assert isinstance(edge_id, str)
    source, target = raw.get("source"), raw.get("target")
    handle = raw.get("sourceHandle")
    if handle is None:
        handle = DEFAULT
    bad = False
    for name, value in (("source", source), ("target", target)):
        if not _is_id(value):
            errors.append(FlowError(None, edge_id, name, "must be a node id"))
            bad = True
    if not isinstance(handle, str):
        errors.append(FlowError(None, edge_id, "sourceHandle", "must be a string"))
        bad = True
    if bad:
        return None
    assert isinstance(source, str) and isinstance(target, str) and isinstance(handle, str)
    return FlowEdge(edge_id, source, handle, target)


# ---------------------------------------------------------------------------------------------
# Validation.


def validate(graph: FlowGraph) -> list[FlowError]:
    """Every error of the graph, in a stable order: shape, nodes, edges, reachability."""
    errors = list(graph.parse_errors)
    if graph.too_large:
        return errors
    if len(graph.nodes) > MAX_NODES:
        errors.append(FlowError(None, None, "nodes", f"at most {MAX_NODES} nodes"))
    if len(graph.edges) > MAX_EDGES:
        errors.append(FlowError(None, None, "edges", f"at most {MAX_EDGES} edges"))
    if len(graph.nodes) > MAX_NODES or len(graph.edges) > MAX_EDGES:
        return errors

    seen: set[str] = set()
    entries: list[FlowNode] = []
    for node in graph.nodes:
        if node.id in seen:
            errors.append(FlowError(node.id, None, "id", "duplicate node id"))
            continue
        seen.add(node.id)
        kind = node.node_kind
        if kind is None:
            known = ", ".join(k.value for k in NodeKind)
            errors.append(
                FlowError(
                    node.id, None, "data.kind", f"unknown node kind {node.kind!r} (one of {known})"
                )
            )
            continue
        if kind is NodeKind.ENTRY:
            entries.append(node)
        errors.extend(
            FlowError(node.id, None, f"data.{f}", m) for f, m in _check_data(kind, node.data)
        )

    if not entries:
        errors.append(
            FlowError(None, None, "nodes", "a flow needs exactly one entry node; it has none")
        )
    for extra in entries[1:]:
        errors.append(FlowError(extra.id, None, "data.kind", "a flow needs exactly one entry node"))

    seen_edges: set[str] = set()
    used: set[tuple[str, str]] = set()
    for edge in graph.edges:
        if edge.id in seen_edges:
            errors.append(
                FlowError(
                    edge.source if graph.node(edge.source) else None,
                    edge.id,
                    "id",
                    "duplicate edge id",
                )
            )
            continue
        seen_edges.add(edge.id)
        source = graph.node(edge.source)
        if source is None:
            errors.append(FlowError(None, edge.id, "source", f"no node {edge.source!r}"))
        if graph.node(edge.target) is None:
            errors.append(
                FlowError(
                    source.id if source else None, edge.id, "target", f"no node {edge.target!r}"
                )
            )
        if source is None or (kind := source.node_kind) is None:
            continue
        allowed = OUTCOMES[kind]
        if edge.source_handle not in allowed:
            if allowed:
                choices = ", ".join(sorted(allowed))
                message = f"{kind.value} has no outcome {edge.source_handle!r} (one of {choices})"
            else:
                message = f"{kind.value} ends the flow: no edge may leave it"
            errors.append(FlowError(source.id, edge.id, "sourceHandle", message))
            continue
        if (source.id, edge.source_handle) in used:
            errors.append(
                FlowError(
                    source.id,
                    edge.id,
                    "sourceHandle",
                    f"outcome {edge.source_handle!r} already has an edge",
                )
            )
            continue
        used.add((source.id, edge.source_handle))

    # Reachability only means something from an entry; with none, it was already reported.
    if entries:
        reached = _reachable(graph, (e.id for e in entries))
        for node_id in graph._nodes_by_id:
            if node_id not in reached:
                errors.append(
                    FlowError(node_id, None, "id", "node is not reachable from the entry")
                )
    return errors


def _reachable(graph: FlowGraph, roots: Iterable[str]) -> set[str]:
    """Node ids reachable from `roots` over edges between existing nodes (whatever their handle,
    so that a wrong handle is reported once, not again as unreachable targets)."""
    successors: dict[str, list[str]] = {}
    for edge in graph.edges:
        successors.setdefault(edge.source, []).append(edge.target)
    reached = set(roots)
    queue = deque(reached)
    while queue:
        for target in successors.get(queue.popleft(), ()):
            if target not in reached and graph.node(target) is not None:
                reached.add(target)
                queue.append(target)
    return reached


def check_flow(nodes: object, edges: object) -> tuple[FlowGraph, list[FlowError]]:
    """Parse and validate in one step: the graph and all its errors (empty when valid)."""
    graph = parse_graph(nodes, edges)
    return graph, validate(graph)


# --- per-kind data ---------------------------------------------------------------------------

_Problems = list[tuple[str, str]]


def _int_in(
    data: Mapping[str, Any],
    name: str,
    bounds: tuple[int, int],
    out: _Problems,
    *,
    number: bool = False,
) -> None:
    """An optional integer (or, with `number`, any JSON number) within `bounds`."""
    if name not in data:
        return
    value = data[name]
    low, high = bounds
    ok_type = isinstance(value, (int, float) if number else int) and not isinstance(value, bool)
    if not ok_type or not low <= value <= high:
        what = "a number" if number else "an integer"
        out.append((name, f"must be {what} from {low} to {high}"))


def _id_field(data: Mapping[str, Any], name: str, out: _Problems, *, required: bool) -> None:
    if name not in data or data[name] is None:
        if required:
            out.append((name, "is required"))
        return
    if not _is_id(data[name]):
        out.append((name, f"must be an id of 1 to {MAX_ID_CHARS} characters"))


def _text_field(
    data: Mapping[str, Any], name: str, out: _Problems, *, required: bool, max_chars: int
) -> None:
    if name not in data or data[name] is None:
        if required:
            out.append((name, "is required"))
        return
    value = data[name]
    if not isinstance(value, str) or not value.strip() or len(value) > max_chars:
        out.append((name, f"must be a non-blank text of at most {max_chars} characters"))


def _keys_field(data: Mapping[str, Any], name: str, out: _Problems, *, max_keys: int) -> None:
    if name not in data:
        return
    value = data[name]
    if (
        not isinstance(value, str)
        or len(value) > max_keys
        or any(ch not in TERMINATOR_KEYS for ch in value)
        or len(set(value)) != len(value)
    ):
        out.append((name, f"must be up to {max_keys} of the keys {TERMINATOR_KEYS!r}, or empty"))


def _speech_settings(data: Mapping[str, Any], out: _Problems) -> None:
    """The optional `voice` (the engine checks it exists) and `language` (a BCP 47 tag)."""
    _text_field(data, "voice", out, required=False, max_chars=MAX_ID_CHARS)
    language = data.get("language")
    if language is not None:
        try:
            parse_language(language)
        except InvalidInput as exc:
            out.append(("language", exc.detail))


def _prompt(data: Mapping[str, Any], out: _Problems) -> None:
    """Exactly one of `promptAudioId` and `promptText`."""
    has_audio = data.get("promptAudioId") is not None
    has_text = data.get("promptText") is not None
    if has_audio and has_text:
        out.append(("promptAudioId", "give promptAudioId or promptText, not both"))
    elif not has_audio and not has_text:
        out.append(("promptAudioId", "promptAudioId or promptText is required"))
    _id_field(data, "promptAudioId", out, required=False)
    _text_field(data, "promptText", out, required=False, max_chars=MAX_TEXT_CHARS)


def _digit_range(data: Mapping[str, Any], kind: NodeKind, out: _Problems) -> None:
    _int_in(data, "minDigits", DIGIT_BOUNDS, out)
    _int_in(data, "maxDigits", DIGIT_BOUNDS, out)
    if not any(name == "minDigits" or name == "maxDigits" for name, _ in out):
        low = setting_of(kind, data, "minDigits")
        high = setting_of(kind, data, "maxDigits")
        if isinstance(low, int) and isinstance(high, int) and low > high:
            out.append(("minDigits", f"must not exceed maxDigits ({high})"))


def _check_data(kind: NodeKind, data: Mapping[str, Any]) -> _Problems:
    out: _Problems = []
    if kind is NodeKind.ENTRY:
        trigger = data.get("trigger", "inbound")
        if trigger not in ENTRY_TRIGGERS:
            out.append(("trigger", f"must be one of {', '.join(sorted(ENTRY_TRIGGERS))}"))
    elif kind is NodeKind.PLAY:
        _id_field(data, "audioId", out, required=True)
    elif kind is NodeKind.SAY:
        _text_field(data, "text", out, required=True, max_chars=MAX_TEXT_CHARS)
        _speech_settings(data, out)
    elif kind is NodeKind.MENU:
        _prompt(data, out)
        _speech_settings(data, out)
        _id_field(data, "repromptAudioId", out, required=False)
        _id_field(data, "invalidAudioId", out, required=False)
        _digit_range(data, kind, out)
        _keys_field(data, "terminators", out, max_keys=len(TERMINATOR_KEYS))
        _int_in(data, "timeoutSec", TIMEOUT_BOUNDS, out, number=True)
        _int_in(data, "interDigitTimeoutSec", TIMEOUT_BOUNDS, out, number=True)
        _int_in(data, "maxFailures", COUNT_BOUNDS, out)
        _int_in(data, "maxTimeouts", COUNT_BOUNDS, out)
        if "bargeIn" in data and not isinstance(data["bargeIn"], bool):
            out.append(("bargeIn", "must be true or false"))
    elif kind is NodeKind.COLLECT:
        variable = data.get("variable")
        if variable is None:
            out.append(("variable", "is required"))
        elif not isinstance(variable, str) or not _VARIABLE_RE.match(variable):
            out.append(
                (
                    "variable",
                    "must be a name of letters, digits and _ (not starting with a digit), at most 64",
                )
            )
        _prompt(data, out)
        _speech_settings(data, out)
        _id_field(data, "invalidAudioId", out, required=False)
        _digit_range(data, kind, out)
        _keys_field(data, "terminator", out, max_keys=1)
        _int_in(data, "timeoutSec", TIMEOUT_BOUNDS, out, number=True)
        _int_in(data, "interDigitTimeoutSec", TIMEOUT_BOUNDS, out, number=True)
        _int_in(data, "maxTries", COUNT_BOUNDS, out)
        regex = data.get("regex")
        if regex is not None:
            if not isinstance(regex, str) or not regex or len(regex) > MAX_REGEX_CHARS:
                out.append(("regex", f"must be a pattern of 1 to {MAX_REGEX_CHARS} characters"))
            else:
                try:
                    compile_entry_pattern(regex)
                except re2.error as exc:
                    reason = exc.args[0].decode() if isinstance(exc.args[0], bytes) else exc
                    out.append(("regex", f"is not an RE2 pattern ({reason})"))
    else:
        for name, _ref in REFERENCE_FIELDS.get(kind, ()):
            _id_field(data, name, out, required=True)
    return out


# ---------------------------------------------------------------------------------------------
# For the service and the runner.


def compile_entry_pattern(regex: str) -> Any:
    """A collect node's `regex` as RE2, which matches in linear time: an account's pattern
    cannot stall the calls (Python's `re` backtracks, `(1+)+2` takes minutes on 32 keys).
    RE2 has no backreferences or lookaround; raises `re2.error`."""
    options = re2.Options()
    options.log_errors = False
    return re2.compile(regex, options)


def setting_of(kind: NodeKind, data: Mapping[str, Any], name: str) -> object:
    """A data field, or its default when absent or null (None when it has no default)."""
    value = data.get(name)
    if value is None:
        return DEFAULTS.get(kind, {}).get(name)
    return value


def setting(node: FlowNode, name: str) -> object:
    kind = node.node_kind
    if kind is None:
        return node.data.get(name)
    return setting_of(kind, node.data, name)


@dataclass(frozen=True)
class Reference:
    kind: RefKind
    id: str
    node_id: str
    field: str


def reference_sites(graph: FlowGraph) -> list[Reference]:
    """Every id a node's data points at, with the node and field (for errors naming the node)."""
    sites: list[Reference] = []
    for node in graph.nodes:
        kind = node.node_kind
        if kind is None:
            continue
        for name, ref_kind in REFERENCE_FIELDS.get(kind, ()):
            value = node.data.get(name)
            if isinstance(value, str) and value:
                sites.append(Reference(ref_kind, value, node.id, f"data.{name}"))
    return sites


def references(graph: FlowGraph) -> dict[RefKind, set[str]]:
    """The ids the graph refers to, by what they are (every RefKind present, maybe empty)."""
    found: dict[RefKind, set[str]] = {kind: set() for kind in RefKind}
    for site in reference_sites(graph):
        found[site.kind].add(site.id)
    return found


@dataclass(frozen=True)
class SpeechSite:
    """A text a node speaks: `key` (`<node id>/<field>`) names it in a version's `speech` map."""

    node_id: str
    field: str  # the data field: `text`, `promptText`
    text: str
    language: str | None  # the node's (canonical BCP 47), None: the account's
    voice: str | None

    @property
    def key(self) -> str:
        return speech_key(self.node_id, self.field)


def speech_key(node_id: str, field: str) -> str:
    """The key of a spoken field in a version's `speech` map: `<node id>/<field>` (a node id
    may hold `/`; a field never does, so the key splits at its last `/`)."""
    return f"{node_id}/{field}"


def speech_sites(graph: FlowGraph) -> list[SpeechSite]:
    """Every text the flow speaks, in node order (of a graph `validate` found valid)."""
    sites: list[SpeechSite] = []
    for node in graph.nodes:
        kind = node.node_kind
        if kind is None:
            continue
        language = node.data.get("language")
        voice = node.data.get("voice")
        for name in SPEECH_FIELDS.get(kind, ()):
            text = node.data.get(name)
            if isinstance(text, str) and text.strip():
                sites.append(
                    SpeechSite(
                        node.id,
                        name,
                        text,
                        parse_language(language) if isinstance(language, str) else None,
                        voice if isinstance(voice, str) else None,
                    )
                )
    return sites


def media_ids(graph: FlowGraph) -> set[str]:
    """The media ids the nodes' data point at (`audioId`, `promptAudioId`, ...)."""
    return {site.id for site in reference_sites(graph) if site.kind is RefKind.MEDIA}


def next_node(graph: FlowGraph, node_id: str, outcome: str) -> FlowNode | None:
    """The node an outcome of `node_id` leads to; None when no edge is drawn (the runner then
    hangs up). A timeCondition's `holiday` with no holiday edge takes the `out_of_hours` edge."""
    edge = graph.edge_for(node_id, outcome)
    if edge is None:
        node = graph.node(node_id)
        kind = node.node_kind if node is not None else None
        fallback = FALLBACKS.get((kind, outcome)) if kind is not None else None
        if fallback is not None:
            edge = graph.edge_for(node_id, fallback)
    if edge is None:
        return None
    return graph.node(edge.target)
