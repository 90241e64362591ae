"""Pieces shared by the ring group and queue routes: destinations as `<prefix>_kind`/`_id`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field

from afterbeep.domain.errors import InvalidInput
from afterbeep.domain.numbers import Destination, DestKind
from afterbeep.domain.ring_groups import destination

PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: PROBLEM}
INVALID: dict[int | str, dict[str, Any]] = {
    422: {**PROBLEM, "description": "invalid-input or unknown-reference naming the field"}
}

RefId = Annotated[str, Field(min_length=1, max_length=40)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
KIND_DOC = (
    "`voicemail` (a mailbox id), `flow`, `queue`, `ring_group`, `user` (their ids), "
    "`hangup` (no id); with `<prefix>_id`"
)


def dests_given(
    body: Mapping[str, Any], prefixes: tuple[str, ...]
) -> dict[str, Destination | None]:
    """The destinations a body sets, by prefix: `<prefix>_kind` with `<prefix>_id` (null kind:
    none). An id without its kind is refused."""
    found: dict[str, Destination | None] = {}
    for prefix in prefixes:
        kind_key, id_key = f"{prefix}_kind", f"{prefix}_id"
        if kind_key in body:
            kind = body[kind_key]
            found[prefix] = destination(
                DestKind(kind) if kind is not None else None, body.get(id_key), prefix
            )
        elif body.get(id_key) is not None:
            raise InvalidInput(kind_key, f"is required with {id_key}")
    return found


def dest_out(prefix: str, dest: Destination | None) -> dict[str, str | None]:
    return {
        f"{prefix}_kind": dest.kind.value if dest is not None else None,
        f"{prefix}_id": dest.id if dest is not None else None,
    }
