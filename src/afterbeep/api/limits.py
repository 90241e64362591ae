"""The request gate: a request that writes is checked before a byte of its body is read.

Under `/v1/`, a request that carries a body (or writes: POST, PUT, PATCH, DELETE) is refused
with 401 unless its API key is valid, and its body is held to a size: a declared
`Content-Length` past the limit is refused with 413 at once, and a streamed body is refused
the moment its byte count passes it. Multipart bodies get the media upload limit, others the
JSON limit (a few routes declare a larger one). Refusals close the connection, so the rest of
the body is never read. The checked account is left in the request state for the routes (and
for the idempotency middleware, which keys its records by account). Under `/v1/admin/` the
key checked is the operator's admin key instead (401 without a key, 403 for any other).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from afterbeep.api.body_limit import run_with_body_limit
from afterbeep.api.deps import BAD_KEY, NO_KEY, bearer_token
from afterbeep.api.multipart import FORM_OVERHEAD_BYTES
from afterbeep.api.problems import problem
from afterbeep.domain.accounts import Account

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
GATED_PREFIX = "/v1/"
ADMIN_PREFIX = "/v1/admin/"
# The Telephony API authenticates its callers itself (API keys or call centers' tokens): its
# bodies are held to the JSON limit here, without the key check.
LIMITED_PREFIX = "/telephony/v1/"
AGENT_PATH = "/v1/agents/me"  # and below it: an agent's token (work items), not an API key

Authenticate = Callable[[str], Awaitable[Account | None]]


def _refusal(status: int, error_id: str, title: str, detail: str, path: str, *, close: bool = True) -> Response:
    """The problem answer; with `close`, the connection closes after it (the body is not read)."""
    response = problem(status, error_id, title, detail, path)
    if close:
        response.headers["connection"] = "close"
    return response


class RequestGate:
    def __init__(
        self,
        app: ASGIApp,
        authenticate: Authenticate,
        max_json_bytes: int,
        max_upload_bytes: int,
        route_json_bytes: Mapping[tuple[str, str], int] | None = None,
        admin_key_hash: bytes | None = None,
        authenticate_agent: Callable[[str], Awaitable[Any]] | None = None,
    ) -> None:
        self.app = app
        self.authenticate_agent = authenticate_agent
        self.admin_key_hash = admin_key_hash
        self.authenticate = authenticate
        self.max_json_bytes = max_json_bytes
        self.max_upload_bytes = max_upload_bytes
        self.route_json_bytes = dict(route_json_bytes or {})

    def is_admin_key(self, token: str | None) -> bool:
        if token is None or self.admin_key_hash is None:
            return False
        return hmac.compare_digest(hashlib.sha256(token.encode()).digest(), self.admin_key_hash)

    def limit_for(self, method: str, path: str, content_type: str) -> tuple[int, str]:
        """The body limit of a request, and the 413 detail that names it."""
        if content_type.strip().lower().startswith("multipart/"):
            upload = self.max_upload_bytes
            return upload + FORM_OVERHEAD_BYTES, f"the upload is larger than {upload} bytes"
        limit = self.route_json_bytes.get((method, path.rstrip("/")), self.max_json_bytes)
        return limit, f"the body is larger than {limit} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope["path"]).startswith(LIMITED_PREFIX):
            await self._limited(scope, receive, send)
            return
        if scope["type"] != "http" or not str(scope["path"]).startswith(GATED_PREFIX):
            await self.app(scope, receive, send)
            return
        method = str(scope["method"])
        path = str(scope["path"])
        headers = Headers(scope=scope)
        declared_raw = headers.get("content-length")
        declared = int(declared_raw) if declared_raw is not None and declared_raw.isdigit() else None
        has_body = (declared is not None and declared > 0) or "transfer-encoding" in headers
        if not has_body and method not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return

        token = bearer_token(headers.get("authorization", ""))
        if path.startswith(ADMIN_PREFIX):
            if not self.is_admin_key(token):
                status, title = (403, "Forbidden") if token else (401, "Unauthorized")
                detail = "this is not the admin key" if token else NO_KEY
                error_id = title.lower()
                await _refusal(status, error_id, title, detail, path, close=has_body)(scope, receive, send)
                return
        elif self.authenticate_agent is not None and (
            path == AGENT_PATH or path.startswith(AGENT_PATH + "/")
        ):
            agent = await self.authenticate_agent(token) if token is not None else None
            if agent is None:
                detail = "the agent token is not valid" if token else NO_KEY
                await _refusal(401, "unauthorized", "Unauthorized", detail, path, close=has_body)(scope, receive, send)
                return
            state = scope.setdefault("state", {})
            state["agent"] = agent
            state["account_id"] = agent.account_id
        else:
            account = await self.authenticate(token) if token is not None else None
            if account is None:
                detail = BAD_KEY if token else NO_KEY
                await _refusal(401, "unauthorized", "Unauthorized", detail, path, close=has_body)(scope, receive, send)
                return
            state = scope.setdefault("state", {})
            state["account"] = account
            state["account_id"] = account.id
        if not has_body:
            await self.app(scope, receive, send)
            return

        limit, detail = self.limit_for(method, path, headers.get("content-type", ""))
        too_large = _refusal(413, "payload-too-large", "Payload too large", detail, path)
        if declared is not None and declared > limit:
            await too_large(scope, receive, send)
            return

        await run_with_body_limit(self.app, scope, receive, send, limit, too_large)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        method, path = str(scope["method"]), str(scope["path"])
        limit, detail = self.limit_for(method, path, "application/json")
        too_large = _refusal(413, "payload-too-large", "Payload too large", detail, path)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await too_large(scope, receive, send)
            return
        await run_with_body_limit(self.app, scope, receive, send, limit, too_large)
