"""RFC 9457 problem details for every error the API returns. HTTP codes live here only."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from afterbeep.domain import errors as e

log = logging.getLogger("afterbeep.api")

PROBLEM_TYPE_BASE = "https://afterbeep.dev/problems/"
MEDIA_TYPE = "application/problem+json"

_STATUS: list[tuple[type[e.DomainError], int]] = [
    (e.NotFound, 404),
    (e.Conflict, 409),
    (e.PayloadTooLarge, 413),
    (e.InvalidAudio, 422),
    (e.InvalidInput, 422),
    (e.QuotaExceeded, 409),
]


class ProblemError(Exception):
    """An HTTP-level problem raised inside `api/` (auth, idempotency)."""

    def __init__(self, status: int, error_id: str, title: str, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or title)
        self.status = status
        self.error_id = error_id
        self.title = title
        self.detail = detail
        self.extra = extra


def problem(
    status: int, error_id: str, title: str, detail: str = "", instance: str = "", **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + error_id,
        "title": title,
        "status": status,
        "error_id": error_id,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def status_for(exc: e.DomainError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def install(app: FastAPI) -> None:
    @app.exception_handler(e.DomainError)
    async def _domain(request: Request, exc: e.DomainError) -> JSONResponse:
        extra: dict[str, Any] = {}
        if isinstance(exc, e.InvalidInput):
            extra["errors"] = [{"field": exc.field, "message": exc.detail}]
        title = exc.error_id.replace("-", " ").capitalize()
        return problem(status_for(exc), exc.error_id, title, exc.message, request.url.path, **extra)

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem(exc.status, exc.error_id, exc.title, exc.detail, request.url.path, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": ".".join(str(part) for part in err.get("loc", ()) if part != "body"),
                "message": str(err.get("msg", "")),
            }
            for err in exc.errors()
        ]
        return problem(
            422, "validation-failed", "Validation failed", "the request is not valid",
            request.url.path, errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        error_id = title.lower().replace(" ", "-")
        return problem(exc.status_code, error_id, title, str(exc.detail or ""), request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "internal-error", "Internal error", "", request.url.path)
