"""Prefixed ULID identifiers (`acc_01J...`): sortable by creation time, safe in paths and URLs."""

from __future__ import annotations

import re

from ulid import ULID

PREFIXES = frozenset(
    {
        "acc", "key", "ntf", "media", "vm", "msg", "num", "wh", "whd", "evt", "uc", "setup",
        "vmsend", "drop", "camp", "call", "queue", "wi", "sup", "cons", "att", "note", "sch",
        "flow", "mem", "usr", "trj", "dev", "reg",
        "rg", "q",
        "cc", "vc", "atk", "ccr", "mwi", "ccx", "cb",
        "wio",
    }
)
_ID_RE = re.compile(r"^([a-z]+)_([0-9a-hjkmnp-tv-z]{26})$")


def new_id(prefix: str) -> str:
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    return f"{prefix}_{str(ULID()).lower()}"


def is_id(value: str, prefix: str) -> bool:
    match = _ID_RE.match(value)
    return bool(match) and match is not None and match.group(1) == prefix
