"""Unknown query parameters are refused, as unknown JSON fields are: a misspelt filter
(`?to=` on the stats, `?statuss=`) must not silently answer for everything.

One app-wide dependency compares the request's query keys with the query parameters its
route declares (those of its dependencies included)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import AwareDatetime, BeforeValidator

from afterbeep.api.problems import ProblemError

_NUMBER = re.compile(r"\s*[+-]?\d+(\.\d*)?\s*")


def _not_a_number(value: Any) -> Any:
    """A time bound is ISO 8601: a bare number (a Unix time to pydantic, or a phone number
    sent to the wrong parameter) is refused rather than read as a time."""
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError("must be an ISO 8601 date-time such as 2025-03-04T09:50:00Z, not a number")
    return value


# The time bounds of every list and stats operation: [created_after, created_before).
CreatedAfter = Annotated[
    AwareDatetime | None,
    BeforeValidator(_not_a_number),
    Query(description="ISO 8601 with a zone: created at or after it"),
]
CreatedBefore = Annotated[
    AwareDatetime | None,
    BeforeValidator(_not_a_number),
    Query(description="ISO 8601 with a zone: created before it"),
]
# Messages took naive times as UTC before the bounds were named; they still do.
MessagesAfter = Annotated[
    datetime | None,
    BeforeValidator(_not_a_number),
    Query(description="ISO 8601 (UTC if no zone): left at or after it"),
]
MessagesBefore = Annotated[
    datetime | None,
    BeforeValidator(_not_a_number),
    Query(description="ISO 8601 (UTC if no zone): left before it"),
]

_DECLARED = "afterbeep_declared_query"


def declared_query(route: APIRoute) -> frozenset[str]:
    """The query parameters `route` declares, worked out once and kept on the route."""
    found: frozenset[str] | None = getattr(route, _DECLARED, None)
    if found is None:
        found = frozenset(_query_names(route.dependant))
        setattr(route, _DECLARED, found)
    return found


def _query_names(dependant: Dependant) -> set[str]:
    names: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        names.update(param.alias for param in current.query_params)
        pending.extend(current.dependencies)
    return names


async def reject_unknown_query(request: Request) -> None:
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    declared = declared_query(route)
    unknown = sorted(set(request.query_params.keys()) - declared)
    if not unknown:
        return
    accepted = ", ".join(sorted(declared)) or "none"
    raise ProblemError(
        422,
        "validation-failed",
        "Validation failed",
        f"unknown query parameter: {', '.join(unknown)} (this operation accepts: {accepted})",
        errors=[{"field": f"query.{name}", "message": "is not a query parameter of this operation"} for name in unknown],
    )
