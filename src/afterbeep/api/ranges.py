"""HTTP Range for audio streamed from the object store: the single-range subset browsers use to
seek (RFC 9110 §14), with `If-Range` on the ETag.

Written here because Starlette's `FileResponse` does Range only for local files, and our audio
may sit in an S3 bucket. Several ranges in one request are answered with the whole object, as
the RFC allows, so there is no multipart/byteranges body to build.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import Response
from fastapi.responses import StreamingResponse

from afterbeep.api.problems import problem
from afterbeep.services.ports.storage import ByteStream, RangeNotSatisfiable

# Opens bytes start..end (inclusive) of the object; raises `RangeNotSatisfiable` if the object
# shrank since its size was read.
OpenRange = Callable[[int, int], Awaitable[ByteStream]]


class Unsatisfiable(Exception):
    """The `Range` header selects no byte of the object (answered with 416)."""


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive byte range a `Range` header asks of `size` bytes (RFC 9110 §14.1.2).

    None means "send it all": another unit, bad syntax or several ranges, which a server may
    answer in full. Raises `Unsatisfiable` for a range that selects no byte.
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = (part.strip() for part in spec.strip().partition("-"))
    if (
        not dash
        or not (first or last)
        or not all(p.isascii() and p.isdigit() for p in (first, last) if p)
    ):
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return max(size - suffix, 0), size - 1
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise Unsatisfiable
    return start, min(int(last), size - 1) if last else size - 1


async def ranged_response(
    *,
    size: int,
    etag: str,
    content_type: str,
    open_range: OpenRange,
    instance: str,
    range_header: str | None,
    if_range: str | None,
    cache_control: str,
    noun: str,
) -> Response:
    """200 with the whole object, 206 with the range asked for, or a 416 problem.

    `etag` is the store's unquoted version tag; `instance` the request path for the problem;
    `noun` names the object in the 416 detail ("the file has 10 bytes").
    """
    quoted_etag = f'"{etag}"'
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": quoted_etag,
        "Cache-Control": cache_control,
        "X-Content-Type-Options": "nosniff",
    }
    wanted: tuple[int, int] | None = None
    if range_header is not None and (if_range is None or if_range.strip() == quoted_etag):
        try:
            wanted = parse_range(range_header, size)
        except Unsatisfiable:
            return _unsatisfiable(instance, size, noun, headers)
    if size == 0:
        return Response(b"", media_type=content_type, headers=headers)
    start, end = wanted if wanted is not None else (0, size - 1)
    try:
        stream = await open_range(start, end)
    except RangeNotSatisfiable:
        return _unsatisfiable(instance, size, noun, headers)
    headers["Content-Length"] = str(end - start + 1)
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return StreamingResponse(
        _chunks(stream),
        status_code=206 if wanted is not None else 200,
        media_type=content_type,
        headers=headers,
    )


async def _chunks(stream: ByteStream) -> AsyncIterator[bytes]:
    try:
        async for chunk in stream:
            yield chunk
    finally:
        await stream.aclose()


def _unsatisfiable(instance: str, size: int, noun: str, headers: dict[str, str]) -> Response:
    response = problem(
        416,
        "range-not-satisfiable",
        "Range not satisfiable",
        f"the {noun} has {size} bytes",
        instance,
    )
    response.headers.update(headers)
    response.headers["Content-Range"] = f"bytes */{size}"
    return response
