"""The `metadata` a caller attaches to an object: a small JSON object kept and echoed back.

Bounded when it is written (size, depth, keys) so that every stored value can be read and
serialised again; a stored value that cannot (written before the bounds, or by hand) is
read as None by `readable_metadata` instead of failing the read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from afterbeep.domain.errors import InvalidInput

MAX_METADATA_BYTES = 4 * 1024
MAX_METADATA_DEPTH = 4
MAX_METADATA_KEYS = 50
# Reading is more lenient than writing (values stored under older, looser rules stay
# readable), but never deeper than a serialiser's recursion can go.
MAX_READABLE_DEPTH = 32

RULES = (
    f"a JSON object of at most {MAX_METADATA_BYTES} bytes (compact JSON, UTF-8), "
    f"nested at most {MAX_METADATA_DEPTH} levels deep (the object itself is level 1; "
    f"an array is a level too), with at most {MAX_METADATA_KEYS} keys counted over all "
    "levels together"
)


def shape(value: Any) -> tuple[int, int]:
    """(depth, keys) of a JSON value, without recursion: the top object counts as depth 1,
    each nested object or array one more; keys are counted over every object at every level."""
    depth = keys = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            depth = max(depth, level)
            keys += len(item)
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list | tuple):
            depth = max(depth, level)
            stack.extend((v, level + 1) for v in item)
    return depth, keys


def compact(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def check_metadata(metadata: Mapping[str, Any] | None, field: str = "metadata") -> None:
    """Refuse `metadata` past the bounds (InvalidInput naming `field` and the rule broken)."""
    if metadata is None:
        return
    if not isinstance(metadata, Mapping):
        raise InvalidInput(field, f"must be {RULES}")
    depth, keys = shape(metadata)
    if depth > MAX_METADATA_DEPTH:
        raise InvalidInput(field, f"is nested {depth} levels deep; it must be {RULES}")
    if keys > MAX_METADATA_KEYS:
        raise InvalidInput(field, f"has {keys} keys; it must be {RULES}")
    size = len(compact(metadata))
    if size > MAX_METADATA_BYTES:
        raise InvalidInput(field, f"is {size} bytes of JSON; it must be {RULES}")


def readable_metadata(value: Any) -> Mapping[str, Any] | None:
    """A stored metadata value as it can be shown; ValueError (the reason) if it cannot."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"stored metadata is a {type(value).__name__}, not an object")
    depth, _ = shape(value)
    if depth > MAX_READABLE_DEPTH:
        raise ValueError(f"stored metadata is nested {depth} levels deep")
    return value
