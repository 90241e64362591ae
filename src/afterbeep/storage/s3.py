"""Object store on an S3-compatible service (AWS S3, SeaweedFS, MinIO, ...) via aiobotocore.

The bucket stays private: no ACL is ever set and browsers never talk to the bucket (they get
signed links served by the API, see `afterbeep.signing`). Objects up to `multipart_threshold`
go in one PUT; larger files are sent as a multipart upload, aborted if anything fails. An S3
PUT is atomic by itself: readers see the old object or the new one.

botocore and aiohttp errors are translated here into the port's exception tree; connection
failures, timeouts, throttling and 5xx become `StorageUnavailable`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from afterbeep.services.ports.storage import (
    DEFAULT_CONTENT_TYPE,
    InvalidKey,
    ObjectNotFound,
    RangeNotSatisfiable,
    StorageError,
    StorageUnavailable,
    StoredObject,
    check_range,
    validate_content_type,
    validate_key,
    validate_prefix,
)

MIB = 1024 * 1024
DEFAULT_MULTIPART_THRESHOLD = 16 * MIB
DEFAULT_PART_SIZE = 8 * MIB
MIN_PART_SIZE = 5 * MIB  # S3 refuses smaller parts, except the last one
CHUNK_SIZE = 64 * 1024

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_MISSING_BUCKET_CODES = frozenset({"NoSuchBucket", "NotFound", "404"})
_TEMPORARY_CODES = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
    }
)
_CONTENT_RANGE_SIZE_RE = re.compile(r"bytes [^/]+/(\d+)")


def validate_bucket(bucket: str) -> str:
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"invalid S3 bucket name {bucket!r}")
    return bucket


def _error_code(exc: ClientError) -> tuple[str, int]:
    response: dict[str, Any] = exc.response or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def _translate(exc: BaseException, key: str | None) -> StorageError:
    if isinstance(exc, ClientError):
        code, status = _error_code(exc)
        if key is not None and code in _NOT_FOUND_CODES:
            return ObjectNotFound(key)
        if status >= 500 or code in _TEMPORARY_CODES:
            return StorageUnavailable(f"S3 temporary failure: {code or status}")
        return StorageError(f"S3 error: {code or status}")
    if isinstance(exc, BotoConnectionError | HTTPClientError | aiohttp.ClientError | TimeoutError):
        return StorageUnavailable(f"S3 unreachable: {type(exc).__name__}")
    return StorageError(f"S3 client error: {type(exc).__name__}: {exc}")


_TRANSLATED = (ClientError, BotoCoreError, aiohttp.ClientError, TimeoutError)


@contextlib.contextmanager
def _s3_errors(key: str | None = None) -> Iterator[None]:
    try:
        yield
    except _TRANSLATED as exc:
        raise _translate(exc, key) from exc


class _S3RangeStream:
    """Yields `remaining` bytes of a GET response body, after discarding `skip` bytes."""

    def __init__(self, key: str, body: Any, skip: int, remaining: int) -> None:
        self._key = key
        self._body = body
        self._skip = skip
        self._remaining = remaining
        self._closed = False

    def __aiter__(self) -> _S3RangeStream:
        return self

    async def __anext__(self) -> bytes:
        while not self._closed and self._remaining > 0:
            want = min(CHUNK_SIZE, self._skip or self._remaining)
            try:
                with _s3_errors(self._key):
                    chunk = bytes(await self._body.read(want))
            except BaseException:
                await self.aclose()
                raise
            if not chunk:
                await self.aclose()
                raise StorageUnavailable("S3 response ended early")
            if self._skip:
                self._skip -= len(chunk)
                continue
            self._remaining -= len(chunk)
            return chunk
        await self.aclose()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._body.close()


class S3ObjectStore:
    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        prefix: str = "",
        *,
        create_bucket: bool = False,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        self.bucket = validate_bucket(bucket)
        self.prefix = prefix.strip("/")
        if self.prefix:
            validate_key(self.prefix)
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        if multipart_threshold < part_size:
            raise ValueError("multipart_threshold must be at least part_size")
        self.endpoint_url = endpoint_url
        self.region = region
        self._access_key = access_key
        self._secret_key = secret_key
        self._create_bucket = create_bucket
        self._multipart_threshold = multipart_threshold
        self._part_size = part_size
        self._config = AioConfig(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            signature_version="s3v4",
            # Path-style works with any S3-compatible server without wildcard DNS.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            # Only the checksums S3 requires: many S3-compatible servers reject the rest.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._bucket_ready = not create_bucket
        self._lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"S3ObjectStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    # -- plumbing ---------------------------------------------------------------

    def _full_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    async def _s3(self) -> Any:
        """The client, created on first use (no I/O), with the bucket made on first use."""
        if self._client is None or not self._bucket_ready:
            async with self._lock:
                if self._closed:
                    raise StorageError("S3 store is closed")
                if self._client is None:
                    session = get_session()
                    self._client = await self._stack.enter_async_context(
                        session.create_client(
                            "s3",
                            region_name=self.region,
                            endpoint_url=self.endpoint_url,
                            aws_access_key_id=self._access_key,
                            aws_secret_access_key=self._secret_key,
                            config=self._config,
                        )
                    )
                if not self._bucket_ready:
                    await self._ensure_bucket(self._client)
                    self._bucket_ready = True
        return self._client

    async def _ensure_bucket(self, client: Any) -> None:
        with _s3_errors():
            try:
                await client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                code, _status = _error_code(exc)
                if code not in _MISSING_BUCKET_CODES:
                    raise
            params: dict[str, Any] = {"Bucket": self.bucket}
            if self.region != "us-east-1":
                params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            try:
                await client.create_bucket(**params)
            except ClientError as exc:
                code, _status = _error_code(exc)
                if code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

    # -- writing ----------------------------------------------------------------

    async def put_bytes(
        self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> StoredObject:
        full = self._full_key(key)
        validate_content_type(content_type)
        client = await self._s3()
        with _s3_errors(key):
            response = await client.put_object(
                Bucket=self.bucket, Key=full, Body=data, ContentType=content_type
            )
        return StoredObject(key, len(data), content_type, str(response["ETag"]).strip('"'))

    async def put_file(
        self, key: str, path: Path, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> StoredObject:
        """Upload the file at `path`; errors opening or reading `path` propagate as OSError."""
        full = self._full_key(key)
        validate_content_type(content_type)
        source: BinaryIO = await asyncio.to_thread(open, path, "rb")
        try:
            size = os.fstat(source.fileno()).st_size
            if size <= self._multipart_threshold:
                data = await asyncio.to_thread(source.read)
                return await self.put_bytes(key, data, content_type)
            etag = await self._multipart(full, key, source, content_type)
        finally:
            source.close()
        return StoredObject(key, size, content_type, etag)

    async def _multipart(self, full: str, key: str, source: BinaryIO, content_type: str) -> str:
        client = await self._s3()
        with _s3_errors(key):
            upload = await client.create_multipart_upload(
                Bucket=self.bucket, Key=full, ContentType=content_type
            )
        upload_id = str(upload["UploadId"])
        try:
            parts: builtins.list[dict[str, Any]] = []
            while chunk := await asyncio.to_thread(source.read, self._part_size):
                number = len(parts) + 1
                with _s3_errors(key):
                    response = await client.upload_part(
                        Bucket=self.bucket,
                        Key=full,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=chunk,
                    )
                parts.append({"ETag": response["ETag"], "PartNumber": number})
            with _s3_errors(key):
                done = await client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            with contextlib.suppress(*_TRANSLATED):
                await client.abort_multipart_upload(
                    Bucket=self.bucket, Key=full, UploadId=upload_id
                )
            raise
        return str(done["ETag"]).strip('"')

    # -- reading ----------------------------------------------------------------

    async def get_bytes(self, key: str) -> bytes:
        full = self._full_key(key)
        client = await self._s3()
        with _s3_errors(key):
            response = await client.get_object(Bucket=self.bucket, Key=full)
            async with response["Body"] as body:
                return bytes(await body.read())

    async def open_range(
        self, key: str, start: int = 0, end_inclusive: int | None = None
    ) -> _S3RangeStream:
        full = self._full_key(key)
        if start < 0 or (end_inclusive is not None and end_inclusive < start):
            raise RangeNotSatisfiable(key, start, end_inclusive, -1)
        client = await self._s3()
        wanted = f"bytes={start}-{'' if end_inclusive is None else end_inclusive}"
        try:
            with _s3_errors(key):
                response = await client.get_object(Bucket=self.bucket, Key=full, Range=wanted)
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and _error_code(cause)[0] == "InvalidRange":
                headers = cause.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
                match = _CONTENT_RANGE_SIZE_RE.match(str(headers.get("content-range", "")))
                size = int(match.group(1)) if match else -1
                raise RangeNotSatisfiable(key, start, end_inclusive, size) from cause
            raise
        body = response["Body"]
        length = int(response["ContentLength"])
        if response.get("ContentRange"):
            return _S3RangeStream(key, body, 0, length)
        # The server ignored the Range header (some do for empty objects): cut it ourselves.
        try:
            last = check_range(key, start, end_inclusive, length)
        except RangeNotSatisfiable:
            body.close()
            raise
        return _S3RangeStream(key, body, start, last - start + 1)

    async def stat(self, key: str) -> StoredObject:
        full = self._full_key(key)
        client = await self._s3()
        with _s3_errors(key):
            response = await client.head_object(Bucket=self.bucket, Key=full)
        return StoredObject(
            key=key,
            size=int(response["ContentLength"]),
            content_type=str(response.get("ContentType") or DEFAULT_CONTENT_TYPE),
            etag=str(response.get("ETag", "")).strip('"'),
        )

    async def exists(self, key: str) -> bool:
        try:
            await self.stat(key)
        except ObjectNotFound:
            return False
        return True

    async def delete(self, key: str) -> None:
        full = self._full_key(key)
        client = await self._s3()
        with _s3_errors():
            await client.delete_object(Bucket=self.bucket, Key=full)

    async def list(self, prefix: str = "") -> builtins.list[str]:
        validate_prefix(prefix)
        full_prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        client = await self._s3()
        keys: builtins.list[str] = []
        with _s3_errors():
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                for item in page.get("Contents", []):
                    key = str(item["Key"])[strip:]
                    try:
                        keys.append(validate_key(key))
                    except InvalidKey:
                        continue  # written by something else; not addressable through this port
        keys.sort()
        return keys

    # -- lifecycle --------------------------------------------------------------

    async def check(self) -> None:
        client = await self._s3()
        with _s3_errors():
            await client.head_bucket(Bucket=self.bucket)

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            self._client = None
            await self._stack.aclose()
