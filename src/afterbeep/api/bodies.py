"""Request bodies read by hand: routes that take JSON or multipart/form-data on one path read
the JSON themselves (bounded), and validate it with the same problem answers as FastAPI's."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from afterbeep.api.problems import ProblemError
from afterbeep.domain.errors import PayloadTooLarge

M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], values: Any) -> M:
    """`values` as `model`; a validation failure is the usual 422 problem."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


async def json_body(request: Request, max_bytes: int) -> Any:
    """The request's JSON, refused with 413 past `max_bytes` (while reading) and 400 if malformed."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > max_bytes:
            raise PayloadTooLarge(max_bytes)
    try:
        return json.loads(bytes(raw))
    except json.JSONDecodeError as exc:
        raise ProblemError(
            400, "malformed-json", "Malformed JSON",
            f"the body is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno} (character {exc.pos})",
            line=exc.lineno, column=exc.colno, position=exc.pos,
        ) from exc
    except ValueError as exc:
        raise ProblemError(400, "malformed-json", "Malformed JSON", "the body is not UTF-8 JSON") from exc
    except RecursionError as exc:
        raise ProblemError(400, "malformed-json", "Malformed JSON", "the body is nested too deeply") from exc
