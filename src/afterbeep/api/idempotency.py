"""`Idempotency-Key` on POST: the first response is kept and replayed for the same key.

Keys are scoped to the caller's account, known only once the request gate
(`afterbeep.api.limits`) has checked its API key: a request without a valid key writes nothing.
Records are kept for `RETENTION`, then removed by `IdempotencySweeper`. A replay with a
different request body is refused (422); a second request while the first is still running gets 409. Server errors (5xx) are not
kept, so the client may retry them. Written as ASGI middleware so multipart uploads are hashed
while they stream through, without buffering them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from datetime import timedelta

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from afterbeep.domain.clock import Clock
from afterbeep.services.ports.idempotency import IdempotencyStore, StoredResponse

log = logging.getLogger("afterbeep.api")

MAX_KEY_LENGTH = 255
RETENTION = timedelta(hours=24)
SWEEP_EVERY_SECONDS = 600.0
KEPT_HEADERS = {b"content-type", b"location"}
# Answers that carry a secret shown once (a new API key's) are never kept, so never replayed.
UNKEPT_PATHS = frozenset({"/v1/api-keys"})


class BodyFingerprint:
    """SHA-256 of method, path, query and body; a multipart boundary is left out of the body.

    Clients pick a fresh random boundary for every retry of the same upload, so the boundary
    is replaced with a fixed token as the body streams (a short tail is carried between chunks
    so a boundary split across two chunks is still found).
    """

    def __init__(self, method: str, path: str, query: bytes, content_type: bytes) -> None:
        self._digest = hashlib.sha256(f"{method} {path}?".encode() + query + b"\n")
        self._boundary = b""
        self._carry = b""
        kind, _, params = content_type.partition(b";")
        if kind.strip().lower().startswith(b"multipart/"):
            for param in params.split(b";"):
                name, _, value = param.strip().partition(b"=")
                if name.lower() == b"boundary" and value:
                    self._boundary = b"--" + value.strip(b'"')

    def update(self, chunk: bytes) -> None:
        if not self._boundary:
            self._digest.update(chunk)
            return
        data = (self._carry + chunk).replace(self._boundary, b"--<boundary>")
        cut = max(len(data) - (len(self._boundary) - 1), 0)
        self._digest.update(data[:cut])
        self._carry = data[cut:]

    def hexdigest(self) -> str:
        self._digest.update(self._carry)
        self._carry = b""
        return self._digest.hexdigest()


def problem(status: int, error_id: str, title: str, detail: str = "") -> ASGIApp:
    # Imported on use: `IdempotencySweeper` also runs in processes that load no FastAPI.
    from afterbeep.api.problems import problem

    return problem(status, error_id, title, detail)


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, store: IdempotencyStore) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", [])) if scope["type"] == "http" else {}
        key_raw = headers.get(b"idempotency-key")
        account_id = (scope.get("state") or {}).get("account_id")
        if scope["type"] != "http" or scope["method"] != "POST" or key_raw is None or not account_id:
            await self.app(scope, receive, send)
            return
        if scope["path"] in UNKEPT_PATHS:
            await self.app(scope, receive, send)
            return
        key = key_raw.decode("latin-1").strip()
        if not key or len(key) > MAX_KEY_LENGTH:
            await problem(
                422, "invalid-idempotency-key", "Invalid Idempotency-Key",
                f"the key must be 1 to {MAX_KEY_LENGTH} characters",
            )(scope, receive, send)
            return
        owner = str(account_id)
        digest = BodyFingerprint(
            scope["method"], scope["path"], scope.get("query_string", b""), headers.get(b"content-type", b"")
        )

        existing = await self.store.reserve(owner, key)
        if existing is not None:
            await self._replay(existing, digest, scope, receive, send)
            return

        async def hashing_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                digest.update(message.get("body", b""))
            return message

        status = 500
        kept: list[tuple[str, str]] = []
        body = bytearray()

        async def capturing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                kept.extend(
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in message.get("headers", [])
                    if k.lower() in KEPT_HEADERS
                )
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, hashing_receive, capturing_send)
        except BaseException:
            await self.store.release(owner, key)
            raise
        if status >= 500:
            await self.store.release(owner, key)
        else:
            await self.store.complete(owner, key, digest.hexdigest(), status, kept, bytes(body))

    async def _replay(
        self, existing: StoredResponse, digest: BodyFingerprint, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if existing.status_code is None:
            await problem(
                409, "idempotency-key-in-use", "Request in progress",
                "a request with this Idempotency-Key is still being processed",
            )(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            digest.update(message.get("body", b""))
            if not message.get("more_body", False):
                break
        if digest.hexdigest() != existing.fingerprint:
            await problem(
                422, "idempotency-key-reused", "Idempotency-Key reused",
                "this Idempotency-Key was used with a different request",
            )(scope, receive, send)
            return
        raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in existing.headers]
        raw_headers.append((b"idempotent-replayed", b"true"))
        raw_headers.append((b"content-length", str(len(existing.body)).encode()))
        await send({"type": "http.response.start", "status": existing.status_code, "headers": raw_headers})
        await send({"type": "http.response.body", "body": existing.body})


class IdempotencySweeper:
    """Removes idempotency records older than `RETENTION`, every `every` seconds, until stopped."""

    def __init__(self, store: IdempotencyStore, clock: Clock, every: float = SWEEP_EVERY_SECONDS) -> None:
        self._store = store
        self._clock = clock
        self._every = every
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        return await self._store.sweep(self._clock.now() - RETENTION)

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="idempotency-sweeper")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self._stopping.set()
            await task

    async def _run(self) -> None:
        while True:
            try:
                removed = await self.run_once()
            except Exception:
                log.exception("idempotency sweep failed")
            else:
                if removed:
                    log.info("removed %d expired idempotency records", removed)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._every)
                return
