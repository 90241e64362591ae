"""Object store on the local filesystem, the default (`<data_dir>/objects`).

Each object is a plain file at `<root>/<key>`, its content type in a hidden sidecar
`.<name>.ct` beside it, except when it is the type its extension implies (`IMPLIED_TYPES`: an
MP3 as `audio/mpeg`, a WAV as `audio/wav`), which saves a second file and its fsync on every
media write; such a write removes a sidecar left from an earlier object at that key. A write goes to a hidden temp file `.<name>.tmp-<random>` in the same
directory, is fsynced, renamed over the final name (`os.replace`) and the directory fsynced:
a reader sees the old object or the new one, never a partial file, and a crash leaves at most
a hidden temp file. Keys cannot start a segment with a dot, so hidden names never collide with
keys and never show in listings. Files are created 0600 and directories 0700 whatever the
umask. Blocking calls run in worker threads.

A key cannot be both an object and a "directory" here (`a` and `a/b`), unlike in S3; the key
layout in `afterbeep.services.ports.storage` never needs that.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import mimetypes
import os
import secrets
import stat as stat_mod
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from afterbeep.services.ports.storage import (
    DEFAULT_CONTENT_TYPE,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
    StoredObject,
    check_range,
    validate_content_type,
    validate_key,
    validate_prefix,
)

FILE_MODE = 0o600
DIR_MODE = 0o700
CHUNK_SIZE = 64 * 1024
COPY_CHUNK_SIZE = 1024 * 1024
TEMP_MARKER = ".tmp-"
CONTENT_TYPE_SUFFIX = ".ct"
# Content types stored without a sidecar: fixed here, not taken from the system's mime.types,
# so an object reads back with the type it was written with on any machine.
IMPLIED_TYPES = {".mp3": "audio/mpeg", ".wav": "audio/wav"}

# Errors that may go away by themselves (space freed, device back): callers may retry.
_TEMPORARY_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.EBUSY, errno.ENOMEM}
)


def temp_path_for(final: Path) -> Path:
    """Where a write to `final` is staged: same directory, hidden, unique."""
    return final.with_name(f".{final.name}{TEMP_MARKER}{secrets.token_hex(8)}")


def content_type_path_for(final: Path) -> Path:
    return final.with_name(f".{final.name}{CONTENT_TYPE_SUFFIX}")


def implied_type(final: Path) -> str | None:
    return IMPLIED_TYPES.get(os.path.splitext(final.name)[1].lower())


def _translate(exc: OSError) -> StorageError:
    if exc.errno in _TEMPORARY_ERRNOS:
        return StorageUnavailable(f"local storage: {os.strerror(exc.errno or 0)}")
    return StorageError(f"local storage: {exc.strerror or exc}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class _FileRangeStream:
    """Reads `remaining` bytes from an open file; the file stays open until exhausted or closed.

    Holding the descriptor means the reader keeps the object it opened even if the key is
    overwritten or deleted meanwhile.
    """

    def __init__(self, file: BinaryIO, remaining: int) -> None:
        self._file = file
        self._remaining = remaining

    def __aiter__(self) -> _FileRangeStream:
        return self

    async def __anext__(self) -> bytes:
        if self._remaining <= 0 or self._file.closed:
            self._file.close()
            raise StopAsyncIteration
        try:
            chunk = await asyncio.to_thread(self._file.read, min(CHUNK_SIZE, self._remaining))
        except OSError as exc:
            self._file.close()
            raise _translate(exc) from exc
        if not chunk:
            self._file.close()
            raise StorageError("local storage: object shrank while being read")
        self._remaining -= len(chunk)
        return chunk

    async def aclose(self) -> None:
        self._file.close()


class LocalObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    # -- paths ------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def _ensure_dir(self, directory: Path) -> None:
        """Create `directory` and any missing parents up to the root, each 0700."""
        if not self.root.is_dir():
            self.root.parent.mkdir(parents=True, exist_ok=True)
            self._mkdir(self.root)
        relative = directory.relative_to(self.root)
        current = self.root
        for part in relative.parts:
            current = current / part
            self._mkdir(current)

    @staticmethod
    def _mkdir(path: Path) -> None:
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError as exc:
            if not path.is_dir():
                raise StorageError(
                    f"local storage: {path.name!r} is an object, not a folder"
                ) from exc
            return
        # mkdir applies the umask, which may strip bits we need (umask 0277) or be lax.
        os.chmod(path, DIR_MODE)

    # -- writing ----------------------------------------------------------------

    def _stage(self, final: Path, fill: Callable[[int], None]) -> Path:
        """Write a temp file beside `final` with `fill(fd)`, fsync it, return its path."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        for attempt in range(3):
            temp = temp_path_for(final)
            try:
                try:
                    fd = os.open(temp, flags, FILE_MODE)
                except FileNotFoundError:
                    self._ensure_dir(final.parent)
                    fd = os.open(temp, flags, FILE_MODE)
            except FileNotFoundError:
                # A concurrent delete pruned the freshly created directory; create it again.
                if attempt == 2:
                    raise
                continue
            try:
                try:
                    os.fchmod(fd, FILE_MODE)
                    fill(fd)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
            return temp
        raise AssertionError("unreachable")

    def _commit(self, final: Path, fill: Callable[[int], None], content_type: str) -> None:
        data_temp = self._stage(final, fill)
        if content_type == implied_type(final):
            try:
                os.replace(data_temp, final)
            except BaseException:
                data_temp.unlink(missing_ok=True)
                raise
            with contextlib.suppress(FileNotFoundError):
                os.unlink(content_type_path_for(final))
            _fsync_dir(final.parent)
            return
        try:
            ct_temp = self._stage(
                content_type_path_for(final), lambda fd: _write_all(fd, content_type.encode())
            )
        except BaseException:
            data_temp.unlink(missing_ok=True)
            raise
        os.replace(data_temp, final)
        os.replace(ct_temp, content_type_path_for(final))
        _fsync_dir(final.parent)

    def _put(self, key: str, fill: Callable[[int], None], content_type: str) -> StoredObject:
        final = self._path(key)
        try:
            self._commit(final, fill, content_type)
        except OSError as exc:
            raise _translate(exc) from exc
        return self._stat(key)

    async def put_bytes(
        self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> StoredObject:
        validate_key(key)
        validate_content_type(content_type)
        return await asyncio.to_thread(
            self._put, key, lambda fd: _write_all(fd, data), content_type
        )

    async def put_file(
        self, key: str, path: Path, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> StoredObject:
        """Copy the file at `path` in; errors opening or reading `path` propagate as OSError."""
        validate_key(key)
        validate_content_type(content_type)
        source = await asyncio.to_thread(open, path, "rb")
        source_errors: list[OSError] = []

        def fill(fd: int) -> None:
            while True:
                try:
                    chunk = source.read(COPY_CHUNK_SIZE)
                except OSError as exc:
                    source_errors.append(exc)
                    raise
                if not chunk:
                    return
                _write_all(fd, chunk)

        try:
            return await asyncio.to_thread(self._put, key, fill, content_type)
        except StorageError as exc:
            if source_errors:
                raise source_errors[0] from exc
            raise
        finally:
            source.close()

    # -- reading ----------------------------------------------------------------

    def _content_type(self, final: Path) -> str:
        try:
            return content_type_path_for(final).read_text(encoding="ascii").strip()
        except (FileNotFoundError, UnicodeDecodeError):
            guessed = implied_type(final) or mimetypes.guess_type(final.name)[0]
            return guessed or DEFAULT_CONTENT_TYPE

    def _stat(self, key: str) -> StoredObject:
        final = self._path(key)
        try:
            st = os.stat(final)
            if not stat_mod.S_ISREG(st.st_mode):
                raise ObjectNotFound(key)
            content_type = self._content_type(final)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise _translate(exc) from exc
        etag = f"{st.st_size:x}-{st.st_mtime_ns:x}-{st.st_ino:x}"
        return StoredObject(key=key, size=st.st_size, content_type=content_type, etag=etag)

    def _open(self, key: str) -> tuple[BinaryIO, int]:
        final = self._path(key)
        try:
            file = open(final, "rb")  # noqa: SIM115 - handed to the caller's stream
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise _translate(exc) from exc
        try:
            st = os.fstat(file.fileno())
            if not stat_mod.S_ISREG(st.st_mode):
                raise ObjectNotFound(key)
        except BaseException:
            file.close()
            raise
        return file, st.st_size

    def _read_all(self, key: str) -> bytes:
        file, _size = self._open(key)
        with file:
            try:
                return file.read()
            except OSError as exc:
                raise _translate(exc) from exc

    def _open_range(self, key: str, start: int, end_inclusive: int | None) -> _FileRangeStream:
        file, size = self._open(key)
        try:
            last = check_range(key, start, end_inclusive, size)
            file.seek(start)
        except OSError as exc:
            file.close()
            raise _translate(exc) from exc
        except BaseException:
            file.close()
            raise
        return _FileRangeStream(file, last - start + 1)

    async def get_bytes(self, key: str) -> bytes:
        validate_key(key)
        return await asyncio.to_thread(self._read_all, key)

    async def open_range(
        self, key: str, start: int = 0, end_inclusive: int | None = None
    ) -> _FileRangeStream:
        validate_key(key)
        return await asyncio.to_thread(self._open_range, key, start, end_inclusive)

    async def stat(self, key: str) -> StoredObject:
        validate_key(key)
        return await asyncio.to_thread(self._stat, key)

    async def exists(self, key: str) -> bool:
        try:
            await self.stat(key)
        except ObjectNotFound:
            return False
        return True

    # -- deleting ---------------------------------------------------------------

    def _delete(self, key: str) -> None:
        final = self._path(key)
        try:
            for path in (final, content_type_path_for(final)):
                with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
                    path.unlink()
            if final.parent.is_dir():
                _fsync_dir(final.parent)
        except OSError as exc:
            raise _translate(exc) from exc
        self._prune(final.parent)

    def _prune(self, directory: Path) -> None:
        """Remove now-empty folders between the object and the root (media ids leave no trace)."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    async def delete(self, key: str) -> None:
        validate_key(key)
        await asyncio.to_thread(self._delete, key)

    # -- listing ----------------------------------------------------------------

    def _list(self, prefix: str) -> builtins.list[str]:
        base_key, _, _ = prefix.rpartition("/")
        base = self.root.joinpath(*base_key.split("/")) if base_key else self.root
        keys: builtins.list[str] = []
        try:
            for dirpath, dirnames, filenames in os.walk(base):
                dirnames[:] = [name for name in dirnames if not name.startswith(".")]
                relative = Path(dirpath).relative_to(self.root).as_posix()
                for name in filenames:
                    if name.startswith("."):
                        continue
                    key = name if relative == "." else f"{relative}/{name}"
                    if key.startswith(prefix):
                        keys.append(key)
        except OSError as exc:
            raise _translate(exc) from exc
        keys.sort()
        return keys

    async def list(self, prefix: str = "") -> builtins.list[str]:
        validate_prefix(prefix)
        return await asyncio.to_thread(self._list, prefix)

    # -- lifecycle --------------------------------------------------------------

    def _check(self) -> None:
        try:
            self._ensure_dir(self.root)
            if not os.access(self.root, os.W_OK | os.X_OK):
                raise StorageError(f"local storage: {self.root} is not writable")
        except OSError as exc:
            raise _translate(exc) from exc

    async def check(self) -> None:
        await asyncio.to_thread(self._check)

    async def close(self) -> None:
        return None
