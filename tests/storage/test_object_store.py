"""One suite for both object stores: local files in a temp dir and a real SeaweedFS S3 server."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from afterbeep.services.ports.storage import (
    InvalidKey,
    ObjectNotFound,
    ObjectStore,
    RangeNotSatisfiable,
    StorageError,
    StorageUnavailable,
    media_original_key,
    media_prefix,
    media_telephony_key,
    message_key,
    validate_key,
)
from afterbeep.storage.local import LocalObjectStore
from afterbeep.storage.s3 import MIN_PART_SIZE, S3ObjectStore
from tests.fixtures.seaweed import SeaweedS3

BACKENDS = ["local", "s3"]
BIG_SIZE = MIN_PART_SIZE + 123_457  # above the test multipart threshold: two parts on S3

BAD_KEYS = [
    "",
    "/abs/path.wav",
    "../escape.wav",
    "acc/../../escape.wav",
    "acc/./x.wav",
    "acc//x.wav",
    "acc/x/",
    "acc\\x.wav",
    "acc/x\x00.wav",
    "acc/.hidden",
    "acc/x y.wav",
    "acc/x@host.wav",
    "acc/ümlaut.wav",
    "acc/x.wav\n",
    "a" * 1025,
    "acc/" + "s" * 201,
]


def s3_store(server: SeaweedS3, **overrides: object) -> S3ObjectStore:
    options: dict[str, object] = {
        "bucket": server.bucket,
        "endpoint_url": server.endpoint_url,
        "region": server.region,
        "access_key": server.access_key,
        "secret_key": server.secret_key,
        "prefix": server.unique_prefix(),
        "multipart_threshold": MIN_PART_SIZE,
        "part_size": MIN_PART_SIZE,
    }
    options.update(overrides)
    return S3ObjectStore(**options)  # type: ignore[arg-type]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    created: ObjectStore
    if request.param == "local":
        created = LocalObjectStore(tmp_path / "objects")
    else:
        created = s3_store(request.getfixturevalue("seaweed_s3"))
    try:
        yield created
    finally:
        await created.close()


async def read_range(store: ObjectStore, key: str, start: int, end: int | None) -> bytes:
    stream = await store.open_range(key, start, end)
    return b"".join([chunk async for chunk in stream])


@pytest.fixture
def umask_zero() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


# -- both stores ------------------------------------------------------------------------------


async def test_put_get_stat_roundtrip(store: ObjectStore) -> None:
    key = message_key("acc_1", "msg_1")
    stored = await store.put_bytes(key, b"RIFF-one", "audio/wav")
    assert (stored.key, stored.size, stored.content_type) == (key, 8, "audio/wav")
    assert stored.etag

    assert await store.get_bytes(key) == b"RIFF-one"
    first = await store.stat(key)
    assert (first.key, first.size, first.content_type) == (key, 8, "audio/wav")
    assert await store.exists(key)

    await store.put_bytes(key, b"second version", "audio/x-wav")
    assert await store.get_bytes(key) == b"second version"
    second = await store.stat(key)
    assert (second.size, second.content_type) == (14, "audio/x-wav")
    assert second.etag != first.etag


async def test_default_content_type_and_empty_object(store: ObjectStore) -> None:
    await store.put_bytes("acc_1/blob", b"")
    assert await store.get_bytes("acc_1/blob") == b""
    info = await store.stat("acc_1/blob")
    assert (info.size, info.content_type) == (0, "application/octet-stream")
    with pytest.raises(RangeNotSatisfiable):
        await store.open_range("acc_1/blob", 0, None)


async def test_content_type_that_cannot_be_a_header_is_refused(store: ObjectStore) -> None:
    for bad in ["audio/wav\r\nX-Evil: 1", "", "wav", "audio/" + "x" * 300]:
        with pytest.raises(ValueError):
            await store.put_bytes("acc_1/x.wav", b"data", bad)
    assert await store.list("") == []


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, 0, b"0"),
        (0, None, b"0123456789"),
        (3, 5, b"345"),
        (7, None, b"789"),
        (9, 9, b"9"),
        (8, 500, b"89"),
    ],
)
async def test_range_reads(
    store: ObjectStore, start: int, end: int | None, expected: bytes
) -> None:
    await store.put_bytes("acc_1/vm/r.wav", b"0123456789", "audio/wav")
    assert await read_range(store, "acc_1/vm/r.wav", start, end) == expected


@pytest.mark.parametrize(("start", "end"), [(10, None), (10, 12), (-1, 3), (5, 4), (100, 200)])
async def test_unsatisfiable_ranges(store: ObjectStore, start: int, end: int | None) -> None:
    await store.put_bytes("acc_1/vm/r.wav", b"0123456789", "audio/wav")
    with pytest.raises(RangeNotSatisfiable):
        await store.open_range("acc_1/vm/r.wav", start, end)


async def test_range_stream_closed_early_then_object_deleted(store: ObjectStore) -> None:
    data = os.urandom(300_000)
    await store.put_bytes("acc_1/vm/long.wav", data, "audio/wav")
    stream = await store.open_range("acc_1/vm/long.wav", 1000, None)
    first = await anext(stream)
    assert first == data[1000 : 1000 + len(first)]
    await stream.aclose()
    assert [chunk async for chunk in stream] == []
    await store.delete("acc_1/vm/long.wav")
    assert not await store.exists("acc_1/vm/long.wav")


async def test_missing_objects(store: ObjectStore) -> None:
    key = "acc_1/vm/none.wav"
    with pytest.raises(ObjectNotFound) as info:
        await store.get_bytes(key)
    assert info.value.key == key
    with pytest.raises(ObjectNotFound):
        await store.stat(key)
    with pytest.raises(ObjectNotFound):
        await store.open_range(key, 0, None)
    assert not await store.exists(key)
    # A "folder" holding objects is not an object either.
    await store.put_bytes("acc_1/vm/some.wav", b"x")
    with pytest.raises(ObjectNotFound):
        await store.stat("acc_1/vm")


async def test_delete_is_idempotent(store: ObjectStore) -> None:
    key = media_telephony_key("acc_1", "media_1")
    await store.put_bytes(key, b"pcm", "audio/wav")
    await store.delete(key)
    assert not await store.exists(key)
    with pytest.raises(ObjectNotFound):
        await store.get_bytes(key)
    await store.delete(key)
    await store.delete("acc_1/never/was.wav")
    assert await store.list("") == []


async def test_list_by_prefix(store: ObjectStore) -> None:
    keys = [
        message_key("acc_a", "msg_1"),
        media_original_key("acc_a", "media_1", "mp3"),
        media_telephony_key("acc_a", "media_1"),
        media_telephony_key("acc_a", "media_2"),
        message_key("acc_b", "msg_2"),
        "acc_ab/vm/msg_3.wav",
    ]
    for key in keys:
        await store.put_bytes(key, key.encode())

    assert await store.list("") == sorted(keys)
    assert await store.list("acc_a/") == sorted(keys[:4])
    assert await store.list(media_prefix("acc_a", "media_1")) == sorted(keys[1:3])
    assert await store.list("acc_a/me") == sorted(keys[1:4])
    assert await store.list("acc_a") == sorted([*keys[:4], "acc_ab/vm/msg_3.wav"])
    assert await store.list("acc_c/") == []
    for bad in ["../", "/acc_a", "acc_a//", "acc_a/../acc_b/", ".x"]:
        with pytest.raises(InvalidKey):
            await store.list(bad)


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_bad_keys_refused_before_any_io(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        await store.put_bytes(key, b"x")
    with pytest.raises(InvalidKey):
        await store.get_bytes(key)
    with pytest.raises(InvalidKey):
        await store.stat(key)
    with pytest.raises(InvalidKey):
        await store.exists(key)
    with pytest.raises(InvalidKey):
        await store.delete(key)
    with pytest.raises(InvalidKey):
        await store.open_range(key, 0, None)
    assert await store.list("") == []


async def test_put_file_small_and_large(store: ObjectStore, tmp_path: Path) -> None:
    small = tmp_path / "small.wav"
    small.write_bytes(b"RIFF small")
    stored = await store.put_file("acc_1/vm/small.wav", small, "audio/wav")
    assert (stored.size, stored.content_type) == (10, "audio/wav")
    assert await store.get_bytes("acc_1/vm/small.wav") == b"RIFF small"

    data = os.urandom(BIG_SIZE)
    big = tmp_path / "big.wav"
    big.write_bytes(data)
    key = media_original_key("acc_1", "media_1", "wav")
    stored = await store.put_file(key, big, "audio/wav")
    assert stored.size == BIG_SIZE
    info = await store.stat(key)
    assert (info.size, info.content_type) == (BIG_SIZE, "audio/wav")
    assert await store.get_bytes(key) == data
    middle = BIG_SIZE // 2
    assert (
        await read_range(store, key, middle - 70_000, middle + 70_000)
        == (data[middle - 70_000 : middle + 70_001])
    )
    assert await read_range(store, key, BIG_SIZE - 5, None) == data[-5:]


async def test_put_file_missing_source_stores_nothing(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await store.put_file("acc_1/vm/x.wav", tmp_path / "absent.wav", "audio/wav")
    assert await store.list("") == []


async def test_check_succeeds(store: ObjectStore) -> None:
    await store.check()


def test_key_helpers_follow_the_layout() -> None:
    assert message_key("acc_1", "msg_2") == "acc_1/vm/msg_2.wav"
    assert media_original_key("acc_1", "media_2", ".MP3") == "acc_1/media/media_2/original.MP3"
    assert media_telephony_key("acc_1", "media_2") == "acc_1/media/media_2/telephony.wav"
    assert media_prefix("acc_1", "media_2") == "acc_1/media/media_2/"
    with pytest.raises(InvalidKey):
        message_key("acc_1", "a84b4c76e66710@pc33.atlanta.com")
    with pytest.raises(InvalidKey):
        media_telephony_key("../acc_2", "media_2")
    for key in BAD_KEYS:
        with pytest.raises(InvalidKey):
            validate_key(key)
    assert (
        validate_key("acc_1/media/media_2/original.tar.gz") == "acc_1/media/media_2/original.tar.gz"
    )


# -- local files ------------------------------------------------------------------------------


def modes_under(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[path.relative_to(root).as_posix()] = stat.S_IMODE(path.lstat().st_mode)
    return found


@pytest.mark.usefixtures("umask_zero")
async def test_local_nothing_world_readable_even_with_umask_zero(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    store = LocalObjectStore(root)
    await store.put_bytes(message_key("acc_1", "msg_1"), b"secret voice", "audio/wav")
    source = tmp_path / "src.wav"
    source.write_bytes(b"media")
    source.chmod(0o644)
    await store.put_file(media_original_key("acc_1", "media_1", "wav"), source, "audio/wav")

    modes = modes_under(root)
    assert "acc_1/vm/msg_1.wav" in modes
    assert "acc_1/media/media_1/original.wav" in modes
    for name, mode in modes.items():
        expected = 0o700 if (root / name).is_dir() else 0o600
        assert mode == expected, f"{name}: {oct(mode)}"


async def test_local_writes_work_under_a_restrictive_umask(tmp_path: Path) -> None:
    previous = os.umask(0o277)
    try:
        store = LocalObjectStore(tmp_path / "objects")
        await store.put_bytes("acc_1/vm/a.wav", b"a", "audio/wav")
        await store.put_bytes("acc_1/vm/b.wav", b"b", "audio/wav")
    finally:
        os.umask(previous)
    modes = modes_under(tmp_path / "objects")
    assert modes["acc_1/vm"] == 0o700
    assert modes["acc_1/vm/b.wav"] == 0o600
    assert await store.get_bytes("acc_1/vm/b.wav") == b"b"


async def test_local_write_is_staged_in_a_hidden_temp_file(tmp_path: Path) -> None:
    """Feed put_file from a FIFO and look at the folder while the write is half done."""
    root = tmp_path / "objects"
    store = LocalObjectStore(root)
    key = "acc_1/vm/msg_1.wav"
    await store.put_bytes(key, b"old content", "audio/wav")
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    folder = root / "acc_1" / "vm"

    writing = asyncio.create_task(store.put_file(key, fifo, "audio/x-wav"))
    try:
        writer = await asyncio.to_thread(os.open, fifo, os.O_WRONLY)
        try:
            await asyncio.to_thread(os.write, writer, b"new " * 1000)

            async def staged() -> list[str]:
                while True:
                    names = [n for n in os.listdir(folder) if n.startswith(".msg_1.wav.tmp-")]
                    if names:
                        return names
                    await asyncio.sleep(0.01)

            temps = await asyncio.wait_for(staged(), timeout=10)
            assert len(temps) == 1
            assert await store.get_bytes(key) == b"old content"
            assert (await store.stat(key)).content_type == "audio/wav"
            assert await store.list("") == [key]
            with pytest.raises(InvalidKey):
                await store.exists(f"acc_1/vm/{temps[0]}")
            await asyncio.to_thread(os.write, writer, b"end")
        finally:
            os.close(writer)
        stored = await asyncio.wait_for(writing, timeout=10)
    finally:
        writing.cancel()
    assert stored.size == 4003
    assert await store.get_bytes(key) == b"new " * 1000 + b"end"
    assert (await store.stat(key)).content_type == "audio/x-wav"
    assert sorted(os.listdir(folder)) == [".msg_1.wav.ct", "msg_1.wav"]


@pytest.fixture
def file_size_limit() -> Iterator[int]:
    """Make writes past 1 MiB fail with EFBIG (a real kernel limit, not a mock)."""
    limit = 1024 * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)


async def test_local_failed_write_leaves_old_object_and_no_debris(
    tmp_path: Path, file_size_limit: int
) -> None:
    root = tmp_path / "objects"
    store = LocalObjectStore(root)
    key = "acc_1/vm/msg_1.wav"
    await store.put_bytes(key, b"old content", "audio/wav")
    before = sorted(os.listdir(root / "acc_1" / "vm"))

    with pytest.raises(StorageError):
        await store.put_bytes(key, b"x" * (2 * file_size_limit), "audio/x-wav")
    with pytest.raises(StorageError):
        await store.put_bytes("acc_1/vm/fresh.wav", b"y" * (2 * file_size_limit))

    assert sorted(os.listdir(root / "acc_1" / "vm")) == before
    assert await store.get_bytes(key) == b"old content"
    assert (await store.stat(key)).content_type == "audio/wav"
    assert not await store.exists("acc_1/vm/fresh.wav")


async def test_local_ignores_leftover_temp_files_and_prunes_empty_folders(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    store = LocalObjectStore(root)
    await store.put_bytes("acc_1/media/media_1/telephony.wav", b"pcm", "audio/wav")
    (root / "acc_1" / "media" / "media_1" / ".telephony.wav.tmp-0123456789abcdef").write_bytes(
        b"half a crash"
    )
    assert await store.list("") == ["acc_1/media/media_1/telephony.wav"]

    await store.put_bytes("acc_1/vm/msg_1.wav", b"voice", "audio/wav")
    await store.delete("acc_1/vm/msg_1.wav")
    assert not (root / "acc_1" / "vm").exists()
    assert (root / "acc_1").is_dir()


async def test_local_key_cannot_be_object_and_folder(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    await store.put_bytes("acc_1/thing", b"x")
    with pytest.raises(StorageError):
        await store.put_bytes("acc_1/thing/inside", b"y")
    assert await store.get_bytes("acc_1/thing") == b"x"


async def test_local_content_type_falls_back_to_extension(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    store = LocalObjectStore(root)
    await store.put_bytes("acc_1/vm/msg_1.wav", b"x", "audio/x-custom")
    (root / "acc_1" / "vm" / ".msg_1.wav.ct").unlink()
    assert (await store.stat("acc_1/vm/msg_1.wav")).content_type in {"audio/x-wav", "audio/wav"}


# -- S3 ---------------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_s3_closed_port_is_unavailable() -> None:
    store = S3ObjectStore(
        "afterbeep-test",
        endpoint_url=f"http://127.0.0.1:{closed_port()}",
        access_key="AK",
        secret_key="SK",
        max_attempts=1,
        connect_timeout=2,
    )
    try:
        with pytest.raises(StorageUnavailable):
            await store.put_bytes("acc_1/vm/msg_1.wav", b"x", "audio/wav")
        with pytest.raises(StorageUnavailable):
            await store.get_bytes("acc_1/vm/msg_1.wav")
        with pytest.raises(StorageUnavailable):
            await store.stat("acc_1/vm/msg_1.wav")
        with pytest.raises(StorageUnavailable):
            await store.list("acc_1/")
        with pytest.raises(StorageUnavailable):
            await store.check()
    finally:
        await store.close()


async def test_s3_closed_port_with_bucket_creation_is_unavailable() -> None:
    store = S3ObjectStore(
        "afterbeep-test",
        endpoint_url=f"http://127.0.0.1:{closed_port()}",
        access_key="AK",
        secret_key="SK",
        create_bucket=True,
        max_attempts=1,
    )
    try:
        with pytest.raises(StorageUnavailable):
            await store.exists("acc_1/vm/msg_1.wav")
    finally:
        await store.close()


async def test_s3_wrong_secret_is_an_error_but_not_temporary(seaweed_s3: SeaweedS3) -> None:
    store = s3_store(seaweed_s3, secret_key="not-the-secret", max_attempts=1)
    try:
        with pytest.raises(StorageError) as info:
            await store.put_bytes("acc_1/vm/msg_1.wav", b"x", "audio/wav")
        assert not isinstance(info.value, StorageUnavailable | ObjectNotFound)
    finally:
        await store.close()


async def test_s3_objects_are_not_public(seaweed_s3: SeaweedS3) -> None:
    store = s3_store(seaweed_s3)
    try:
        await store.put_bytes("acc_1/vm/msg_1.wav", b"voice", "audio/wav")
        url = f"{seaweed_s3.endpoint_url}/{store.bucket}/{store.prefix}/acc_1/vm/msg_1.wav"
        async with httpx.AsyncClient() as anonymous:
            assert (await anonymous.get(url)).status_code == 403
            assert (
                await anonymous.get(f"{seaweed_s3.endpoint_url}/{store.bucket}")
            ).status_code == 403
        assert await store.get_bytes("acc_1/vm/msg_1.wav") == b"voice"
    finally:
        await store.close()


async def test_s3_creates_missing_bucket_once(seaweed_s3: SeaweedS3) -> None:
    bucket = seaweed_s3.unique_bucket()
    without = s3_store(seaweed_s3, bucket=bucket, prefix="")
    first = s3_store(seaweed_s3, bucket=bucket, prefix="", create_bucket=True)
    second = s3_store(seaweed_s3, bucket=bucket, prefix="", create_bucket=True)
    try:
        with pytest.raises(StorageError) as info:
            await without.check()
        assert not isinstance(info.value, StorageUnavailable)
        await first.put_bytes("acc_1/vm/msg_1.wav", b"one", "audio/wav")
        await second.put_bytes("acc_1/vm/msg_2.wav", b"two", "audio/wav")
        await without.check()
        assert await without.list("") == ["acc_1/vm/msg_1.wav", "acc_1/vm/msg_2.wav"]
    finally:
        for store in (without, first, second):
            await store.close()


async def test_s3_prefix_isolates_stores_on_one_bucket(seaweed_s3: SeaweedS3) -> None:
    one = s3_store(seaweed_s3)
    two = s3_store(seaweed_s3)
    try:
        await one.put_bytes("acc_1/vm/msg_1.wav", b"one", "audio/wav")
        assert await two.list("") == []
        assert not await two.exists("acc_1/vm/msg_1.wav")
        assert await one.list("") == ["acc_1/vm/msg_1.wav"]
    finally:
        await one.close()
        await two.close()


async def test_s3_closed_store_refuses_work(seaweed_s3: SeaweedS3) -> None:
    store = s3_store(seaweed_s3)
    await store.put_bytes("acc_1/x", b"x")
    await store.close()
    with pytest.raises(StorageError):
        await store.get_bytes("acc_1/x")
