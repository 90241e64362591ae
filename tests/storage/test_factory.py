"""AFTERBEEP_STORAGE_URL parsing, and a store built from it against the real SeaweedFS server."""

from __future__ import annotations

from pathlib import Path

import pytest

from afterbeep.storage.factory import open_store
from afterbeep.storage.local import LocalObjectStore
from afterbeep.storage.s3 import S3ObjectStore
from tests.fixtures.seaweed import SeaweedS3


async def test_file_urls(tmp_path: Path) -> None:
    default = await open_store("file://", tmp_path / "var")
    assert isinstance(default, LocalObjectStore)
    assert default.root == (tmp_path / "var").resolve() / "objects"

    explicit = await open_store(f"file://{tmp_path}/store", tmp_path / "var")
    assert isinstance(explicit, LocalObjectStore)
    assert explicit.root == tmp_path / "store"

    await explicit.put_bytes("acc_1/vm/msg_1.wav", b"x", "audio/wav")
    assert (tmp_path / "store" / "acc_1" / "vm" / "msg_1.wav").read_bytes() == b"x"
    assert not (tmp_path / "var").exists()


async def test_s3_urls(tmp_path: Path) -> None:
    plain = await open_store("s3://voicemail", tmp_path, "http://127.0.0.1:9", "eu-west-1")
    assert isinstance(plain, S3ObjectStore)
    assert (plain.bucket, plain.prefix, plain.region) == ("voicemail", "", "eu-west-1")
    assert plain.endpoint_url == "http://127.0.0.1:9"

    nested = await open_store("s3://voicemail/prod/eu/", tmp_path)
    assert isinstance(nested, S3ObjectStore)
    assert (nested.bucket, nested.prefix, nested.endpoint_url) == ("voicemail", "prod/eu", None)
    await plain.close()
    await nested.close()


@pytest.mark.parametrize(
    "url",
    [
        "",
        "objects",
        "/var/objects",
        "file://var/objects",
        "file://host/var/objects",
        "file:///var/objects?x=1",
        "s3://",
        "s3:///prefix",
        "s3://Bad_Bucket",
        "s3://ab",
        "s3://user:pw@bucket",
        "s3://bucket/../escape",
        "s3://bucket/a//b",
        "http://example.com/bucket",
        "gs://bucket",
    ],
)
async def test_invalid_urls_are_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        await open_store(url, tmp_path)


async def test_s3_store_from_url_round_trip(seaweed_s3: SeaweedS3, tmp_path: Path) -> None:
    bucket = seaweed_s3.unique_bucket()
    store = await open_store(
        f"s3://{bucket}/afterbeep",
        tmp_path,
        seaweed_s3.endpoint_url,
        seaweed_s3.region,
        seaweed_s3.access_key,
        seaweed_s3.secret_key,
    )
    try:
        await store.put_bytes("acc_1/vm/msg_1.wav", b"hello", "audio/wav")
        assert await store.get_bytes("acc_1/vm/msg_1.wav") == b"hello"
        assert await store.list("") == ["acc_1/vm/msg_1.wav"]
        await store.check()
    finally:
        await store.close()
