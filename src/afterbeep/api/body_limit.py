"""A request body held to a size while it streams, shared by the API's gate
(`afterbeep.api.limits`) and the pages' (`afterbeep.web.limits`).

The body's bytes are counted as the route reads them: past `limit`, `too_large` is answered
(unless the route already started its answer) and the route's read raises, so the rest of the
body is never read. An answer started before the body was read through gets
`Connection: close`, so the server does not read the rest either.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _BodyRefused(Exception):
    """Raised into the route from `receive` once the 413 answer has been sent."""


async def run_with_body_limit(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, limit: int, too_large: Response
) -> None:
    received = 0
    body_done = False
    started = False
    refused = False

    async def limited_receive() -> Message:
        nonlocal received, refused, body_done
        message = await receive()
        if message["type"] == "http.request":
            body_done = not message.get("more_body", False)
            received += len(message.get("body", b""))
            if received > limit:
                if not started:
                    refused = True
                    await too_large(scope, receive, send)
                raise _BodyRefused
        return message

    async def guarded_send(message: Message) -> None:
        nonlocal started
        if refused:
            return
        if message["type"] == "http.response.start":
            started = True
            if not body_done:
                # Answered before the body was read through (a 413 from the route, say):
                # close rather than read the rest of it.
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await send(message)

    try:
        await app(scope, limited_receive, guarded_send)
    except Exception:
        if not refused:
            raise
