"""Local store: an object of the type its extension implies is written without a sidecar (one
file and one fsync fewer per media write) and still reads back with its type."""

from __future__ import annotations

import os
from pathlib import Path

from afterbeep.storage.local import LocalObjectStore


async def test_implied_type_needs_no_sidecar(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    store = LocalObjectStore(root)
    await store.put_bytes("acc_1/m/original.mp3", b"mp3", "audio/mpeg")
    await store.put_bytes("acc_1/m/telephony.wav", b"wav", "audio/wav")
    assert sorted(os.listdir(root / "acc_1" / "m")) == ["original.mp3", "telephony.wav"]
    assert (await store.stat("acc_1/m/original.mp3")).content_type == "audio/mpeg"
    assert (await store.stat("acc_1/m/telephony.wav")).content_type == "audio/wav"


async def test_other_types_keep_their_sidecar(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    store = LocalObjectStore(root)
    await store.put_bytes("acc_1/m/original.mp3", b"mp3", "audio/x-custom")
    assert sorted(os.listdir(root / "acc_1" / "m")) == [".original.mp3.ct", "original.mp3"]
    assert (await store.stat("acc_1/m/original.mp3")).content_type == "audio/x-custom"


async def test_implied_type_overwrite_removes_a_stale_sidecar(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    store = LocalObjectStore(root)
    await store.put_bytes("acc_1/m/original.mp3", b"old", "audio/x-custom")
    await store.put_bytes("acc_1/m/original.mp3", b"new", "audio/mpeg")
    assert sorted(os.listdir(root / "acc_1" / "m")) == ["original.mp3"]
    stored = await store.stat("acc_1/m/original.mp3")
    assert (stored.content_type, stored.size) == ("audio/mpeg", 3)
    assert await store.get_bytes("acc_1/m/original.mp3") == b"new"
    await store.put_bytes("acc_1/m/original.mp3", b"custom again", "audio/x-custom")
    assert (await store.stat("acc_1/m/original.mp3")).content_type == "audio/x-custom"


async def test_put_file_into_a_new_folder(tmp_path: Path) -> None:
    """The folders are made only when the temp file cannot be created (the common case skips
    the walk); a key in a folder that does not exist yet still lands."""
    source = tmp_path / "in.mp3"
    source.write_bytes(b"x" * 5000)
    store = LocalObjectStore(tmp_path / "objects")
    await store.put_file("acc_2/a/b/c/original.mp3", source, "audio/mpeg")
    assert await store.get_bytes("acc_2/a/b/c/original.mp3") == b"x" * 5000
    assert oct((tmp_path / "objects" / "acc_2" / "a" / "b").stat().st_mode & 0o777) == "0o700"
