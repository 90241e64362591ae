"""Object storage port: where message audio and media files live.

Two adapters implement it: `afterbeep.storage.local.LocalObjectStore` (files under the data
dir, the default) and `afterbeep.storage.s3.S3ObjectStore` (any S3-compatible service).
`afterbeep.storage.factory.open_store` picks one from `AFTERBEEP_STORAGE_URL`.

Keys are relative, `/`-separated paths, checked by `validate_key` before they reach a
filesystem or a bucket. The layout:

- `<account_id>/vm/<call_id>.wav`: a recorded message;
- `<account_id>/media/<media_id>/original.<ext>`: an uploaded media file, as received;
- `<account_id>/media/<media_id>/telephony.wav`: its 8 kHz mono 16-bit PCM rendition.

Use `message_key`, `media_original_key` and `media_telephony_key` rather than formatting keys
by hand. Ids must already be safe (`[A-Za-z0-9_.-]`, not starting with a dot); a raw SIP
Call-ID is not, so map it to a safe id first.

Errors (every adapter raises only these, library errors are translated at its boundary):

    StorageError                 anything else; not worth retrying as is
    ├── InvalidKey (ValueError)  the key or prefix breaks the rules below
    ├── ObjectNotFound           no object under that key
    ├── RangeNotSatisfiable      the byte range lies outside the object
    └── StorageUnavailable       temporary (connection refused, timeout, 5xx, disk full): retry
"""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

MAX_KEY_LENGTH = 1024
# Room under the usual NAME_MAX (255) for the hidden temp and metadata names the local
# store derives from a key's last segment.
MAX_SEGMENT_LENGTH = 200
DEFAULT_CONTENT_TYPE = "application/octet-stream"

_SEGMENT_RE = re.compile(r"[A-Za-z0-9_.\-]+")


class StorageError(Exception):
    """Base of every storage error."""


class InvalidKey(StorageError, ValueError):
    """A key or prefix that could escape the store or does not follow the key rules."""


class ObjectNotFound(StorageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"no object under key {key!r}")
        self.key = key


class RangeNotSatisfiable(StorageError):
    def __init__(self, key: str, start: int, end_inclusive: int | None, size: int) -> None:
        super().__init__(
            f"range {start}-{'' if end_inclusive is None else end_inclusive} "
            f"outside object {key!r} of {size} bytes"
        )
        self.key = key
        self.size = size


class StorageUnavailable(StorageError):
    """The backend cannot be reached or answered with a temporary failure; retry later."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    content_type: str
    # Opaque, unquoted, changes whenever the object is rewritten: fit for an HTTP ETag.
    etag: str


class ByteStream(Protocol):
    """Chunks of an object being read; an async iterator that can be closed early."""

    def __aiter__(self) -> ByteStream: ...

    async def __anext__(self) -> bytes: ...

    async def aclose(self) -> None: ...


def _check_segment(segment: str, whole: str) -> None:
    if not segment:
        raise InvalidKey(f"empty path segment in {whole!r}")
    if segment.startswith("."):
        raise InvalidKey(f"path segment starting with '.' in {whole!r}")
    if len(segment) > MAX_SEGMENT_LENGTH:
        raise InvalidKey(f"path segment longer than {MAX_SEGMENT_LENGTH} characters")
    if not _SEGMENT_RE.fullmatch(segment):
        raise InvalidKey(f"characters outside [A-Za-z0-9_.-/] in {whole!r}")


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a safe object key, else raise `InvalidKey`.

    Refused: empty keys, absolute paths, empty segments (`a//b`, trailing `/`), `.` and `..`
    and any other segment starting with a dot, backslashes, NUL, and every character outside
    `[A-Za-z0-9_.-/]`.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey("empty key")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"key longer than {MAX_KEY_LENGTH} characters")
    if key.startswith("/"):
        raise InvalidKey(f"absolute key {key!r}")
    for segment in key.split("/"):
        _check_segment(segment, key)
    return key


def validate_prefix(prefix: str) -> str:
    """Like `validate_key` for a listing prefix: may be empty, may end with `/` or mid-segment."""
    if prefix == "":
        return prefix
    if len(prefix) > MAX_KEY_LENGTH:
        raise InvalidKey(f"prefix longer than {MAX_KEY_LENGTH} characters")
    if prefix.startswith("/"):
        raise InvalidKey(f"absolute prefix {prefix!r}")
    segments = prefix.split("/")
    if segments[-1] == "":
        segments.pop()
    for segment in segments:
        _check_segment(segment, prefix)
    return prefix


def validate_content_type(content_type: str) -> str:
    """Refuse content types that could not be sent back verbatim as an HTTP header value."""
    if (
        not content_type
        or len(content_type) > 255
        or "/" not in content_type
        or not all(" " <= ch <= "~" for ch in content_type)
    ):
        raise ValueError(f"unusable content type {content_type!r}")
    return content_type


def message_key(account_id: str, call_id: str) -> str:
    return validate_key(f"{account_id}/vm/{call_id}.wav")


def media_original_key(account_id: str, media_id: str, ext: str) -> str:
    return validate_key(f"{account_id}/media/{media_id}/original.{ext.lstrip('.')}")


def media_telephony_key(account_id: str, media_id: str) -> str:
    return validate_key(f"{account_id}/media/{media_id}/telephony.wav")


def media_prefix(account_id: str, media_id: str) -> str:
    """Everything stored for one media item; list it, then delete each key."""
    return validate_prefix(f"{account_id}/media/{media_id}/")


class ObjectStore(Protocol):
    """Async object storage. Writes are atomic: a reader sees the old object or the new one."""

    async def put_bytes(
        self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> StoredObject: ...

    async def put_file(
        self, key: str, path: Path, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> StoredObject:
        """Store the local file at `path` without reading it whole into memory."""
        ...

    async def get_bytes(self, key: str) -> bytes: ...

    async def open_range(
        self, key: str, start: int = 0, end_inclusive: int | None = None
    ) -> ByteStream:
        """Open bytes `start..end_inclusive` (to the end when None, clamped to the size).

        Awaiting this opens the object, so `ObjectNotFound` and `RangeNotSatisfiable` come
        before the first byte is sent; the returned iterator then yields chunks. Exhaust it or
        call its `aclose()` to release the file or connection.
        """
        ...

    async def stat(self, key: str) -> StoredObject: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Remove the object; no error when it does not exist."""
        ...

    async def list(self, prefix: str = "") -> builtins.list[str]:
        """Every key starting with `prefix` (a plain string prefix, as in S3), sorted."""
        ...

    async def check(self) -> None:
        """Raise `StorageUnavailable` (or `StorageError`) unless the store can be used now."""
        ...

    async def close(self) -> None: ...


def check_range(key: str, start: int, end_inclusive: int | None, size: int) -> int:
    """Validate a byte range against an object's size; return the clamped inclusive end."""
    if start < 0 or start >= size or (end_inclusive is not None and end_inclusive < start):
        raise RangeNotSatisfiable(key, start, end_inclusive, size)
    last = size - 1
    return last if end_inclusive is None else min(end_inclusive, last)
