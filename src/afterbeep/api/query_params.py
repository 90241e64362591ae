"""Unknown query parameters are refused, as unknown JSON fields are: a misspelt filter
(`?to=` on the stats, `?statuss=`) must not silently answer for everything.

One app-wide dependency compares the request's query keys with the query parameters its
route declares (those of its dependencies included)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.routing import APIRoute
from pydantic import AwareDatetime, BeforeValidator

from afterbeep.api.deps import current_account
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


@dataclass(frozen=True, slots=True)
class Declared:
    """What a route's dependencies declare: its query parameters, and whether it needs a key."""

    query: frozenset[str]
    authenticated: bool


def declared(route: APIRoute) -> Declared:
    """Worked out once per route and kept on it."""
    found: Declared | None = getattr(route, _DECLARED, None)
    if found is None:
        names: set[str] = set()
        authenticated = False
        pending = [route.dependant]
        while pending:
            current = pending.pop()
            names.update(param.alias for param in current.query_params)
            authenticated = authenticated or current.call is current_account
            pending.extend(current.dependencies)
        found = Declared(frozenset(names), authenticated)
        setattr(route, _DECLARED, found)
    return found


async def reject_unknown_query(request: Request) -> None:
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    known = declared(route)
    unknown = sorted(set(request.query_params.keys()) - known.query)
    if not unknown:
        return
    if known.authenticated:
        # App-wide dependencies run before a route's own: the key is checked first here,
        # so a request without one is still a 401 and the refusal is logged with its account.
        await current_account(request)
    accepted = ", ".join(sorted(known.query)) or "none"
    raise ProblemError(
        422,
        "validation-failed",
        "Validation failed",
        f"unknown query parameter: {', '.join(unknown)} (this operation accepts: {accepted})",
        errors=[
            {"field": f"query.{name}", "message": "is not a query parameter of this operation"}
            for name in unknown
        ],
    )
