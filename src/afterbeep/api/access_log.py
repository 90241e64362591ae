"""One access-log line per HTTP request (uvicorn's own access log is off), and its metrics.

The line names the route template (`/v1/mailboxes/{mailbox_id}`), never the raw path or the
query: paths and query values carry ids, phone numbers and signatures.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from afterbeep.api import metrics

log = logging.getLogger("afterbeep.access")

UNMATCHED = "(unmatched)"


def route_template(scope: Scope, prefixes: frozenset[str]) -> str:
    """The template of the route that answered, with the prefix it was included under.

    The matched route knows only its own path (`/mailboxes/{mailbox_id}`); the prefix is the
    leading segments of the request path it did not match, shown only if it is one of the
    app's known `prefixes` (it is static text then, never an id or a number).
    """
    own = getattr(scope.get("route"), "path", None)
    if not isinstance(own, str) or not own.startswith("/"):
        return UNMATCHED
    segments = str(scope.get("path", "")).split("/")
    prefix = "/".join(segments[: max(len(segments) - own.count("/"), 1)])
    return (prefix if prefix in prefixes else "/...") + own


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, prefixes: frozenset[str] = frozenset({""})) -> None:
        self.app = app
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        # Shared with `request.state` below, where `deps.current_account` leaves the account id.
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope, self.prefixes)
            metrics.observe(scope["method"], route, status, seconds)
            log.info(
                "%s %s %d",
                scope["method"],
                route,
                status,
                extra={
                    "duration_ms": round(seconds * 1000, 1),
                    "account_id": state.get("account_id") or "-",
                },
            )
