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
    (e.Unavailable, 503),
    (e.TooManyAttempts, 429),
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


MAX_ERRORS_IN_DETAIL = 3
# What FastAPI answers for a JSON body it cannot even decode (not UTF-8, say).
FASTAPI_BODY_ERROR = "There was an error parsing the body"

# What a value must be, for the pydantic error types whose own message does not say it.
_EXPECTED: dict[str, str] = {
    "missing": "a value (the field is required)",
    "extra_forbidden": "nothing: the field is not known",
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "an array",
    "datetime_type": "a date-time with a UTC offset (ISO 8601)",
    "datetime_parsing": "a date-time with a UTC offset (ISO 8601)",
    "datetime_from_date_parsing": "a date-time with a UTC offset (ISO 8601)",
    "timezone_aware": "a date-time with a UTC offset (ISO 8601)",
}


def _expected(err: dict[str, Any]) -> str | None:
    kind = str(err.get("type", ""))
    ctx = err.get("ctx") or {}
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind == "string_too_long":
        return f"a string of at most {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return f"a string of at least {ctx.get('min_length')} characters"
    if kind == "string_pattern_mismatch":
        return f"a string matching {ctx.get('pattern')}"
    if kind == "too_long":
        return f"at most {ctx.get('max_length')} items"
    if kind == "too_short":
        return f"at least {ctx.get('min_length')} items"
    if kind in ("enum", "literal_error"):
        return f"one of {ctx.get('expected')}"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()), "")
        return f"a number {bounds[kind]} {limit}"
    return None


def describe(err: dict[str, Any]) -> dict[str, str]:
    """One validation error as the problem's `errors` show it: the field (dotted path; `body`
    for the whole body), the message, and the expected shape when known."""
    loc = [str(part) for part in err.get("loc", ())]
    if loc[:1] == ["body"]:
        loc = loc[1:] or ["body"]
    kind = str(err.get("type", ""))
    message = {"missing": "required", "extra_forbidden": "unknown field"}.get(kind, str(err.get("msg", "")))
    out = {"field": ".".join(loc), "message": message}
    expected = "a JSON object" if loc == ["body"] and kind == "missing" else _expected(err)
    if expected is not None:
        out["expected"] = expected
    return out


def json_position(doc: str, pos: int) -> tuple[int, int]:
    """1-based line and column of character `pos` of `doc`."""
    line = doc.count("\n", 0, pos) + 1
    return line, pos - (doc.rfind("\n", 0, pos) + 1) + 1


def malformed_json(request: Request, doc: Any, err: dict[str, Any]) -> JSONResponse:
    loc = err.get("loc", ())
    pos = int(loc[-1]) if loc and isinstance(loc[-1], int) else 0
    reason = str((err.get("ctx") or {}).get("error", "not JSON"))
    text = doc if isinstance(doc, str) else ""
    line, column = json_position(text, pos)
    return problem(
        400, "malformed-json", "Malformed JSON",
        f"the body is not JSON: {reason} at line {line}, column {column} (character {pos})",
        request.url.path, line=line, column=column, position=pos,
    )


def _body_not_json(request: Request) -> bool:
    has_body = request.headers.get("content-length", "0") not in ("", "0") or (
        "transfer-encoding" in request.headers
    )
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    return has_body and not (media_type == "application/json" or media_type.endswith("+json"))


def status_for(exc: e.DomainError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def install(app: FastAPI) -> None:
    @app.exception_handler(e.DomainError)
    async def _domain(request: Request, exc: e.DomainError) -> JSONResponse:
        extra: dict[str, Any] = {}
        if isinstance(exc, e.InvalidFlow):
            extra["errors"] = exc.errors
        elif isinstance(exc, e.InvalidInput):
            extra["errors"] = [{"field": exc.field, "message": exc.detail}]
        title = exc.error_id.replace("-", " ").capitalize()
        return problem(status_for(exc), exc.error_id, title, exc.message, request.url.path, **extra)

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem(exc.status, exc.error_id, exc.title, exc.detail, request.url.path, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        found = exc.errors()
        for err in found:
            if err.get("type") == "json_invalid":
                return malformed_json(request, exc.body, err)
        if _body_not_json(request) and any(err.get("loc", ())[:1] == ("body",) for err in found):
            return problem(
                415, "unsupported-media-type", "Unsupported media type",
                "send the body as JSON, with Content-Type: application/json",
                request.url.path, accepted=["application/json"],
            )
        errors = [describe(err) for err in found]
        shown = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:MAX_ERRORS_IN_DETAIL])
        more = len(errors) - MAX_ERRORS_IN_DETAIL
        detail = shown + (f" (and {more} more)" if more > 0 else "")
        return problem(422, "validation-failed", "Validation failed", detail, request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == FASTAPI_BODY_ERROR:
            return problem(400, "malformed-json", "Malformed JSON", "the body is not UTF-8 JSON", request.url.path)
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        error_id = title.lower().replace(" ", "-")
        return problem(exc.status_code, error_id, title, str(exc.detail or ""), request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "internal-error", "Internal error", "", request.url.path)
