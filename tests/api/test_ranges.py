"""`afterbeep.api.ranges`: the Range parser, and the response built around an in-memory object."""

from __future__ import annotations

import json

import pytest
from fastapi import Response
from fastapi.responses import StreamingResponse

from afterbeep.api.ranges import Unsatisfiable, parse_range, ranged_response
from afterbeep.services.ports.storage import ByteStream, RangeNotSatisfiable

SIZE = 1000


# -- parse_range ------------------------------------------------------------------


def test_first_last() -> None:
    assert parse_range("bytes=0-99", SIZE) == (0, 99)
    assert parse_range("bytes=5-5", SIZE) == (5, 5)
    assert parse_range("bytes=990-5000", SIZE) == (990, 999)


def test_open_ended() -> None:
    assert parse_range("bytes=500-", SIZE) == (500, 999)
    assert parse_range("bytes=999-", SIZE) == (999, 999)


def test_suffix() -> None:
    assert parse_range("bytes=-100", SIZE) == (900, 999)
    assert parse_range("bytes=-1", SIZE) == (999, 999)


def test_suffix_larger_than_the_object_is_all_of_it() -> None:
    assert parse_range("bytes=-5000", SIZE) == (0, 999)
    assert parse_range("bytes=-1000", SIZE) == (0, 999)


def test_unit_and_spaces_are_lenient() -> None:
    assert parse_range("BYTES = 5-6", SIZE) == (5, 6)


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=0-1, 3-4", "bytes=-1,0-0"])
def test_several_ranges_get_the_whole_object(header: str) -> None:
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize("header", ["items=0-1", "octets=0-1", "=0-1"])
def test_another_unit_gets_the_whole_object(header: str) -> None:
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize(
    "header",
    [
        "bytes",
        "bytes=",
        "bytes=-",
        "bytes=1",
        "bytes=a-b",
        "bytes=1-b",
        "bytes=+1-2",
        "bytes=5-1",
        "bytes=0x10-",
        "bytes=\u0661-\u0662",  # Arabic-Indic digits pass str.isdigit but are not HTTP digits
        "bytes=\u00b9-",
    ],
)
def test_bad_syntax_gets_the_whole_object(header: str) -> None:
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize(
    "header", ["bytes=1000-", "bytes=1000-1001", "bytes=5000-6000", "bytes=-0"]
)
def test_range_selecting_no_byte_is_unsatisfiable(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, SIZE)


def test_zero_size_object() -> None:
    for header in ("bytes=0-", "bytes=0-0", "bytes=-1", "bytes=-0"):
        with pytest.raises(Unsatisfiable):
            parse_range(header, 0)
    assert parse_range("bytes=0-1,2-3", 0) is None
    assert parse_range("items=0-1", 0) is None


# -- ranged_response --------------------------------------------------------------

DATA = bytes(range(256)) * 4
ETAG = "v1"


class _Chunks:
    """A ByteStream over bytes in memory, recording whether it was closed."""

    def __init__(self, data: bytes, chunk: int = 100) -> None:
        self._parts = [data[i : i + chunk] for i in range(0, len(data), chunk)]
        self.closed = False

    def __aiter__(self) -> ByteStream:
        return self

    async def __anext__(self) -> bytes:
        if not self._parts:
            raise StopAsyncIteration
        return self._parts.pop(0)

    async def aclose(self) -> None:
        self.closed = True


class _Object:
    def __init__(self, data: bytes, *, shrunk: bool = False) -> None:
        self.data = data
        self.shrunk = shrunk
        self.opened: list[tuple[int, int]] = []
        self.streams: list[_Chunks] = []

    async def open_range(self, start: int, end: int) -> ByteStream:
        self.opened.append((start, end))
        if self.shrunk:
            raise RangeNotSatisfiable("k", start, end, 0)
        stream = _Chunks(self.data[start : end + 1])
        self.streams.append(stream)
        return stream


async def _respond(
    obj: _Object, range_header: str | None = None, if_range: str | None = None, size: int = -1
) -> Response:
    return await ranged_response(
        size=len(obj.data) if size < 0 else size,
        etag=ETAG,
        content_type="audio/wav",
        open_range=obj.open_range,
        instance="/v1/things/1/audio",
        range_header=range_header,
        if_range=if_range,
        cache_control="private, no-store",
        noun="thing",
    )


async def _body(response: Response) -> bytes:
    assert isinstance(response, StreamingResponse)
    chunks = [c if isinstance(c, bytes) else str(c).encode() async for c in response.body_iterator]
    return b"".join(chunks)


async def test_whole_object() -> None:
    obj = _Object(DATA)
    response = await _respond(obj)
    assert response.status_code == 200
    assert await _body(response) == DATA
    assert response.headers["content-length"] == str(len(DATA))
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"] == '"v1"'
    assert response.headers["cache-control"] == "private, no-store"
    assert "content-range" not in response.headers
    assert obj.streams[0].closed


async def test_range_is_206_with_content_range() -> None:
    obj = _Object(DATA)
    response = await _respond(obj, "bytes=100-349")
    assert response.status_code == 206
    assert await _body(response) == DATA[100:350]
    assert response.headers["content-range"] == f"bytes 100-349/{len(DATA)}"
    assert response.headers["content-length"] == "250"
    assert obj.opened == [(100, 349)]


async def test_if_range_with_another_etag_sends_everything() -> None:
    obj = _Object(DATA)
    stale = await _respond(obj, "bytes=0-9", if_range='"v0"')
    assert stale.status_code == 200 and await _body(stale) == DATA
    fresh = await _respond(obj, "bytes=0-9", if_range=' "v1" ')
    assert fresh.status_code == 206 and await _body(fresh) == DATA[:10]


async def test_unsatisfiable_range_is_a_416_problem() -> None:
    obj = _Object(DATA)
    response = await _respond(obj, f"bytes={len(DATA)}-")
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(DATA)}"
    assert response.headers["etag"] == '"v1"'
    body = json.loads(bytes(response.body))
    assert body["error_id"] == "range-not-satisfiable"
    assert body["instance"] == "/v1/things/1/audio"
    assert body["detail"] == f"the thing has {len(DATA)} bytes"
    assert obj.opened == []


async def test_object_that_shrank_before_opening_is_a_416() -> None:
    obj = _Object(DATA, shrunk=True)
    response = await _respond(obj, "bytes=0-9")
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(DATA)}"


async def test_empty_object_is_an_empty_200_without_opening() -> None:
    obj = _Object(b"")
    response = await _respond(obj)
    assert response.status_code == 200 and response.body == b""
    assert response.headers["content-length"] == "0"
    assert obj.opened == []
    assert (await _respond(obj, "bytes=0-")).status_code == 416
