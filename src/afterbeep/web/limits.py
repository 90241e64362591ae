"""The pages' own request limits (the API's gate, `afterbeep.api.limits`, covers `/v1/` only).

A page request's body is a small form (or, multipart, a greeting's file: `max_upload_bytes`):
past its limit (declared or streamed) it is
refused with 413 and the connection is closed, so the rest is never read (the counting is
`afterbeep.api.body_limit`, as for the API).
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from afterbeep.api.body_limit import run_with_body_limit

API_PREFIX = "/v1/"
TELEPHONY_API_PREFIX = "/telephony/v1/"  # held to the API's limits too (`afterbeep.api.limits`)
# The one page that takes a file (multipart): a mailbox's greeting upload.
_UPLOAD_PATH = re.compile(r"/inbox/[^/]+/greetings")
MAX_FORM_BYTES = 64 * 1024

_TOO_LARGE = (
    "<!doctype html><title>Too large</title>"
    "<p>The form sent is larger than this page accepts.</p>"
)


class PageGate:
    def __init__(
        self, app: ASGIApp, max_form_bytes: int = MAX_FORM_BYTES, max_upload_bytes: int = MAX_FORM_BYTES
    ) -> None:
        self.app = app
        self.max_form_bytes = max_form_bytes
        self.max_upload_bytes = max_upload_bytes  # a multipart body (a greeting's file)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope["path"]).startswith(
            (API_PREFIX, TELEPHONY_API_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared_raw = headers.get("content-length")
        declared = int(declared_raw) if declared_raw is not None and declared_raw.isdigit() else None
        if (declared is None or declared == 0) and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)
            return
        multipart = headers.get("content-type", "").strip().lower().startswith("multipart/")
        upload = multipart and _UPLOAD_PATH.fullmatch(str(scope["path"])) is not None
        limit = self.max_upload_bytes if upload else self.max_form_bytes
        too_large = HTMLResponse(_TOO_LARGE, status_code=413, headers={"connection": "close"})
        if declared is not None and declared > limit:
            await too_large(scope, receive, send)
            return
        await run_with_body_limit(self.app, scope, receive, send, limit, too_large)
