"""The pages' own request limits (the API's gate, `afterbeep.api.limits`, covers `/v1/` only).

A page request's body is a small form: past `max_form_bytes` (declared or streamed) it is
refused with 413 and the connection is closed, so the rest is never read.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_PREFIX = "/v1/"
MAX_FORM_BYTES = 64 * 1024

_TOO_LARGE = (
    "<!doctype html><title>Too large</title>"
    "<p>The form sent is larger than this page accepts.</p>"
)


class _BodyRefused(Exception):
    """Raised into the route from `receive` once the 413 answer has been sent."""


class PageGate:
    def __init__(self, app: ASGIApp, max_form_bytes: int = MAX_FORM_BYTES) -> None:
        self.app = app
        self.max_form_bytes = max_form_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope["path"]).startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared_raw = headers.get("content-length")
        declared = int(declared_raw) if declared_raw is not None and declared_raw.isdigit() else None
        if (declared is None or declared == 0) and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)
            return
        limit = self.max_form_bytes
        too_large = HTMLResponse(_TOO_LARGE, status_code=413, headers={"connection": "close"})
        if declared is not None and declared > limit:
            await too_large(scope, receive, send)
            return
        received = 0
        started = False
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
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
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise
