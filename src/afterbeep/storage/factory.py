"""Build the object store named by `AFTERBEEP_STORAGE_URL`.

- `file://` (nothing after it): files under `<data_dir>/objects`;
- `file:///absolute/path`: files under that directory;
- `s3://bucket` or `s3://bucket/prefix`: an S3-compatible bucket, with the endpoint, region and
  credentials given separately (`AFTERBEEP_S3_*`).

No I/O happens here, so the service starts while S3 is down (`/readyz` reports it): the local
root and the S3 client and bucket are created on first use.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from afterbeep.services.ports.storage import InvalidKey, ObjectStore, validate_key
from afterbeep.storage.local import LocalObjectStore


async def open_store(
    storage_url: str,
    data_dir: Path,
    s3_endpoint: str | None = None,
    s3_region: str = "us-east-1",
    s3_access_key: str | None = None,
    s3_secret_key: str | None = None,
    *,
    s3_create_bucket: bool = True,
) -> ObjectStore:
    """The store for `storage_url`; a ValueError names what is wrong with the URL."""
    return _build(
        storage_url,
        data_dir,
        s3_endpoint,
        s3_region,
        s3_access_key,
        s3_secret_key,
        s3_create_bucket,
    )


def _build(
    storage_url: str,
    data_dir: Path,
    s3_endpoint: str | None,
    s3_region: str,
    s3_access_key: str | None,
    s3_secret_key: str | None,
    s3_create_bucket: bool,
) -> ObjectStore:
    try:
        parts = urlsplit(storage_url)
    except ValueError as exc:
        raise ValueError(f"AFTERBEEP_STORAGE_URL is not a URL: {exc}") from exc
    if parts.query or parts.fragment:
        raise ValueError("AFTERBEEP_STORAGE_URL takes no query or fragment")

    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(
                "AFTERBEEP_STORAGE_URL must be file:///absolute/path (three slashes) or file://"
            )
        path = unquote(parts.path)
        if not path:
            return LocalObjectStore(data_dir.expanduser().resolve() / "objects")
        root = Path(path)
        if not root.is_absolute():
            raise ValueError("AFTERBEEP_STORAGE_URL file path must be absolute")
        return LocalObjectStore(root)

    if parts.scheme == "s3":
        from afterbeep.storage.s3 import S3ObjectStore, validate_bucket  # aiobotocore: only here

        bucket = parts.netloc
        if not bucket:
            raise ValueError("AFTERBEEP_STORAGE_URL must name a bucket: s3://bucket[/prefix]")
        validate_bucket(bucket)
        prefix = unquote(parts.path).strip("/")
        if prefix:
            try:
                validate_key(prefix)
            except InvalidKey as exc:
                raise ValueError(f"AFTERBEEP_STORAGE_URL prefix: {exc}") from exc
        return S3ObjectStore(
            bucket,
            endpoint_url=s3_endpoint or None,
            region=s3_region,
            access_key=s3_access_key or None,
            secret_key=s3_secret_key or None,
            prefix=prefix,
            create_bucket=s3_create_bucket,
        )

    raise ValueError(
        f"AFTERBEEP_STORAGE_URL scheme must be file or s3, not {parts.scheme or 'none'!r}"
    )
