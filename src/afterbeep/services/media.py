"""The media library: import audio files, then list, fetch and delete them.

An import trusts nothing about the file but what decoding it shows: its header is checked
(sample rate, channels, declared length against `max_media_seconds`) before a frame is decoded,
then it is decoded block by block straight into the telephony rendition (8 kHz mono 16-bit PCM
WAV) in one worker-thread hop, so memory holds one block and the rendition (16 000 bytes a
second, bounded by the length limit) whatever the file expands to. The original and the rendition
are stored, both counted in `stored_bytes` against the account's quota, and the row is inserted
last (by the caller, in its own transaction, after `prepare_upload`). When any step fails the
objects already written are deleted again, so a refused or failed import leaves no row and no
object. Audio the account already holds (same sha256) is not stored again: the import answers
with that media.

Uploads stream into a `StagedUpload`, which counts the bytes as they arrive and refuses them
once they pass the size limit. It holds them in memory up to `MEMORY_BYTES` (a send's MP3 is
then checked and stored from memory: no temp file, no extra thread hops) and spills anything
larger to a temp file in the service's tmp dir, hashed as it is written.

A send's MP3 (`prepare_upload(..., defer_rendition=True)`) is checked without a full decode: its
frame headers are scanned (`audio.mp3scan`: a real MP3 stream, its exact duration) and only its
first second is decoded. Only the original is stored; the telephony rendition is pending (its
object is absent) until `Renditions.telephony` renders it on first use, once per process and
atomically in the store (a put replaces the whole object), and a stream that then fails to decode
raises `InvalidAudio` there.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import soundfile as sf

from afterbeep.audio.decode import (
    AudioError,
    AudioStream,
    AudioTooLong,
    CorruptAudio,
    WrongFormat,
    open_audio,
)
from afterbeep.audio.mp3scan import Mp3ScanError, NotMp3, scan_mp3
from afterbeep.audio.rendition import render_telephony, telephony_wav_size
from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import (
    Conflict,
    InvalidAudio,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
)
from afterbeep.domain.flows import media_ids, parse_graph
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.media import (
    MAX_NAME_LENGTH,
    TELEPHONY_CONTENT_TYPE,
    ImportRules,
    Media,
    Rendition,
    file_type,
)
from afterbeep.services.ports import Page, UnitOfWorkFactory
from afterbeep.services.ports.flows import FlowVersion
from afterbeep.services.ports.storage import (
    ByteStream,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    StoredObject,
    media_original_key,
    media_prefix,
    media_telephony_key,
)

log = logging.getLogger("afterbeep.media")

HASH_CHUNK = 1024 * 1024
MAX_PAGE_LIMIT = 200
MEMORY_BYTES = 1024 * 1024
MAX_MEDIA_SECONDS = 600


class StagedUpload:
    """An upload counted as it arrives, held in memory up to `memory_bytes`, past that in a
    private temp file (hashed as it is written).

    `write` raises `PayloadTooLarge` as soon as the total would pass `max_bytes`. `data` is the
    whole upload while it is held in memory; `close()` puts it in the temp file (`path`) if it
    is not there yet. Use it as a context manager: the temp file is removed on leaving,
    whatever happened.
    """

    def __init__(self, directory: Path, max_bytes: int, memory_bytes: int = MEMORY_BYTES) -> None:
        self._directory = directory
        self.max_bytes = max_bytes
        self.size = 0
        self._memory_bytes = memory_bytes
        self._buffer = bytearray()
        self._hash = hashlib.sha256()
        self._path: Path | None = None
        self._file: BinaryIO | None = None

    async def write(self, data: bytes) -> None:
        if self.size + len(data) > self.max_bytes:
            raise PayloadTooLarge(self.max_bytes)
        self.size += len(data)
        if self._path is None and self.size <= self._memory_bytes:
            self._buffer += data
            return
        await asyncio.to_thread(self._append, data)

    def _spill(self) -> BinaryIO:
        if self._file is None:
            fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=self._directory)
            self._path = Path(name)
            self._file = os.fdopen(fd, "wb")
            self._append(bytes(self._buffer))
            self._buffer = bytearray()
        return self._file

    def _append(self, data: bytes) -> None:
        file = self._spill()
        self._hash.update(data)
        file.write(data)

    @property
    def data(self) -> bytes | None:
        """The whole upload, while it is held in memory (None once it is in the temp file)."""
        return bytes(self._buffer) if self._path is None else None

    @property
    def path(self) -> Path:
        """The temp file (after `close()`)."""
        if self._path is None:
            raise RuntimeError("the upload is in memory: close() it first")
        return self._path

    @property
    def sha256(self) -> str:
        if self._path is None:
            return hashlib.sha256(self._buffer).hexdigest()
        return self._hash.hexdigest()

    def close(self) -> None:
        if self._path is None:
            self._spill()
        if self._file is not None:
            self._file.close()

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)

    def __enter__(self) -> StagedUpload:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.discard()


class MediaService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        store: ObjectStore,
        clock: Clock,
        max_upload_bytes: int,
        tmp_dir: Path,
        max_media_seconds: int = MAX_MEDIA_SECONDS,
        quota_bytes: int | None = None,
    ) -> None:
        self._uow = uow
        self._store = store
        self._clock = clock
        self._max_upload_bytes = max_upload_bytes
        self._max_ms = max_media_seconds * 1000
        self._quota_bytes = quota_bytes
        self._renditions = Renditions(store, self._max_ms)
        self._tmp_dir = tmp_dir

    @property
    def max_upload_bytes(self) -> int:
        return self._max_upload_bytes

    # -- importing --------------------------------------------------------------

    def start_upload(self, max_bytes: int | None = None) -> StagedUpload:
        """A temp file to stream an upload into, limited to the library's (or a smaller) size."""
        self._tmp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return StagedUpload(self._tmp_dir, self._limit(max_bytes))

    async def import_upload(
        self, account_id: str, upload: StagedUpload, name: str, rules: ImportRules | None = None
    ) -> tuple[Media, bool]:
        """Import a finished upload. The caller still owns (and discards) the temp file.

        Returns the media and whether it is new: the account's media holding the same audio is
        returned (after checking it against `rules`) instead of a second copy.
        """
        await asyncio.to_thread(upload.close)
        return await self._import(
            account_id, upload.path, upload.size, upload.sha256, name, rules or ImportRules()
        )

    async def import_file(
        self,
        account_id: str,
        path: Path,
        name: str,
        allowed_formats: set[str] | frozenset[str] | None = None,
        max_bytes: int | None = None,
        min_ms: int | None = None,
        max_ms: int | None = None,
    ) -> Media:
        """Import the audio file at `path` (left in place) under the given rules.

        `allowed_formats` holds decoder format names ("MP3", "WAV", "FLAC", ...). Raises
        `InvalidAudio` (error ids `invalid-audio`, `audio-format-not-allowed`, `audio-too-long`,
        `audio-too-short`), `PayloadTooLarge`, `QuotaExceeded` or `InvalidInput` (the name).
        """
        rules = ImportRules(
            allowed_formats=frozenset(f.upper() for f in allowed_formats)
            if allowed_formats
            else None,
            max_bytes=max_bytes,
            min_ms=min_ms,
            max_ms=max_ms,
        )
        size, digest = await asyncio.to_thread(_measure, path, self._limit(max_bytes))
        media, _new = await self._import(account_id, path, size, digest, name, rules)
        return media

    async def _import(
        self, account_id: str, path: Path, size: int, sha256: str, name: str, rules: ImportRules
    ) -> tuple[Media, bool]:
        media, new = await self._store_objects(account_id, path, size, sha256, name, rules)
        if not new:
            return media, False
        return await self._add_row(media)

    async def _add_row(self, media: Media) -> tuple[Media, bool]:
        """Insert the row of media whose objects are stored (removing them on failure); the media
        stored for the same audio instead when another import added it meanwhile."""
        try:
            async with self._uow() as uow:
                stored = await uow.media.add(media)
        except BaseException:
            await self._remove_objects(media)
            raise
        if stored.id != media.id:  # the same audio was imported meanwhile
            await self._remove_objects(media)
            return stored, False
        log.info("media %s imported (%s, %d ms)", media.id, media.format, media.duration_ms)
        return media, True

    async def import_bytes(
        self, account_id: str, data: bytes, name: str, rules: ImportRules | None = None
    ) -> tuple[Media, bool]:
        """Import audio held in memory (audio the service made, such as speech), like an upload:
        checked, counted against the quota, with its telephony rendition. Returns the media and
        whether it is new (False: the account already held the same bytes)."""
        rules = rules or ImportRules()
        limit = self._limit(rules.max_bytes)
        if len(data) > limit:
            raise PayloadTooLarge(limit)
        digest = hashlib.sha256(data).hexdigest()
        media, new = await self._store_objects(account_id, data, len(data), digest, name, rules)
        if not new:
            return media, False
        return await self._add_row(media)

    async def prepare_upload(
        self,
        account_id: str,
        upload: StagedUpload,
        name: str,
        rules: ImportRules,
        *,
        defer_rendition: bool = False,
    ) -> Media:
        """Check and store a finished upload's objects, but leave adding its row to the caller.

        For callers that add the media row in their own transaction (a send with its media):
        they call `uow.media.add(media)` there (which gives the row stored for this audio),
        and `discard_prepared(media)` if that fails or gave another row. When the account
        already holds the same audio, that media is returned (checked against `rules`) and
        nothing is stored. `defer_rendition` (MP3 only): check by a frame scan and the first
        second, store only the original; the rendition is made on first use (`Renditions`). An
        upload still in memory is then checked and stored from there.
        """
        data = upload.data if defer_rendition else None
        if data is not None:
            media, _new = await self._store_objects(
                account_id, data, upload.size, None, name, rules, defer_rendition
            )
            return media
        await asyncio.to_thread(upload.close)
        media, _new = await self._store_objects(
            account_id, upload.path, upload.size, upload.sha256, name, rules, defer_rendition
        )
        return media

    async def prepare_file(
        self,
        account_id: str,
        path: Path,
        name: str,
        rules: ImportRules,
        *,
        defer_rendition: bool = False,
    ) -> Media:
        """`prepare_upload` for a local file (left in place)."""
        size, digest = await asyncio.to_thread(_measure, path, self._limit(rules.max_bytes))
        media, _new = await self._store_objects(
            account_id, path, size, digest, name, rules, defer_rendition
        )
        return media

    async def discard_prepared(self, media: Media) -> None:
        """Remove the objects of a `prepare_upload` whose row was never added (nothing, when it
        returned media already stored)."""
        if not await self._is_stored(media):
            await self._remove_objects(media)

    async def _is_stored(self, media: Media) -> bool:
        async with self._uow() as uow:
            return await uow.media.get(media.account_id, media.id) is not None

    async def _store_objects(
        self,
        account_id: str,
        path: Path | bytes,
        size: int,
        sha256: str | None,
        name: str,
        rules: ImportRules,
        defer_rendition: bool = False,
    ) -> tuple[Media, bool]:
        """`path`: the file, or its bytes (then `sha256` None: hashed here). Returns the media
        and whether it is new (False: the account's media of the same audio, nothing stored).

        Nothing is stored before the audio has passed every check: the rules, the library's
        length limit and the account's storage quota.
        """
        name = _check_name(name)
        limit = self._limit(rules.max_bytes)
        if size > limit:
            raise PayloadTooLarge(limit)
        if sha256 is None:
            assert isinstance(path, bytes)
            sha256 = hashlib.sha256(path).hexdigest()
        rules = replace(
            rules, max_ms=self._max_ms if rules.max_ms is None else min(rules.max_ms, self._max_ms)
        )
        async with self._uow() as uow:
            existing = await uow.media.find(account_id, sha256)
        if existing is not None:
            _check_stored(existing, rules)
            return existing, False
        if isinstance(path, bytes):
            check_bytes = _check_mp3 if defer_rendition else _decode_and_render
            checked = await asyncio.to_thread(check_bytes, path, rules)
        else:
            check = _check_mp3_file if defer_rendition else _decode_and_render
            checked = await asyncio.to_thread(check, path, rules)
        stored_bytes = size + checked.telephony_bytes
        await self._check_quota(account_id, stored_bytes)
        media_id = new_id("media")
        extension, content_type = file_type(checked.format)
        media = Media(
            id=media_id,
            account_id=account_id,
            name=name,
            format=checked.format.lower(),
            content_type=content_type,
            duration_ms=checked.duration_ms,
            sample_rate=checked.sample_rate,
            channels=checked.channels,
            size_bytes=size,
            sha256=sha256,
            original_key=media_original_key(account_id, media_id, extension),
            telephony_key=media_telephony_key(account_id, media_id),
            created_at=self._clock.now(),
            stored_bytes=stored_bytes,
        )
        try:
            if checked.original is not None:
                await self._store.put_bytes(media.original_key, checked.original, content_type)
            else:
                assert isinstance(path, Path)
                await self._store.put_file(media.original_key, path, content_type)
            if checked.telephony_wav is not None:
                await self._store.put_bytes(
                    media.telephony_key, checked.telephony_wav, TELEPHONY_CONTENT_TYPE
                )
        except BaseException:
            await self._remove_objects(media)
            raise
        return media, True

    async def _check_quota(self, account_id: str, adding: int) -> None:
        if self._quota_bytes is None:
            return
        async with self._uow() as uow:
            used = await uow.media.stored_bytes(account_id)
        if used + adding > self._quota_bytes:
            raise QuotaExceeded(
                f"the account's media would take {used + adding} bytes, over its"
                f" {self._quota_bytes} bytes"
            )

    # -- reading ----------------------------------------------------------------

    async def get(self, account_id: str, media_id: str) -> Media:
        if not is_id(media_id, "media"):
            raise NotFound("media", media_id)
        async with self._uow() as uow:
            media = await uow.media.get(account_id, media_id)
        if media is None:
            raise NotFound("media", media_id)
        return media

    async def list(
        self, account_id: str, cursor: str | None = None, limit: int = 50
    ) -> Page[Media]:
        if not 1 <= limit <= MAX_PAGE_LIMIT:
            raise InvalidInput("limit", f"must be 1 to {MAX_PAGE_LIMIT}")
        async with self._uow() as uow:
            return await uow.media.list(account_id, cursor, limit)

    async def audio(self, account_id: str, media_id: str, rendition: Rendition) -> StoredObject:
        """The stored object holding one rendition, with the Content-Type to serve it as."""
        media = await self.get(account_id, media_id)
        original = rendition is Rendition.ORIGINAL
        key = media.original_key if original else media.telephony_key
        if not original:
            await self._renditions.telephony(
                media.original_key, media.telephony_key, media.duration_ms
            )
        try:
            stored = await self._store.stat(key)
        except ObjectNotFound as exc:
            raise NotFound("media audio", media_id) from exc
        content_type = media.content_type if original else TELEPHONY_CONTENT_TYPE
        return StoredObject(key=key, size=stored.size, content_type=content_type, etag=stored.etag)

    async def open_audio(
        self, audio: StoredObject, start: int = 0, end_inclusive: int | None = None
    ) -> ByteStream:
        """Open bytes of an object `audio` returned; raises the store's `RangeNotSatisfiable`."""
        return await self._store.open_range(audio.key, start, end_inclusive)

    # -- deleting ---------------------------------------------------------------

    async def delete(self, account_id: str, media_id: str) -> None:
        """Delete the row, then the objects. Refused (`media-in-use`) while a mailbox greets with
        it or the current version of a flow plays it (a node's audio or the speech made for it)."""
        if not is_id(media_id, "media"):
            raise NotFound("media", media_id)
        async with self._uow() as uow:
            media = await uow.media.get(account_id, media_id)
            if media is None:
                raise NotFound("media", media_id)
            if await uow.media.is_used_as_greeting(account_id, media_id):
                raise Conflict(f"media {media_id!r} is a mailbox greeting", "media-in-use")
            for version in await uow.flows.current_versions_mentioning(account_id, media_id):
                if uses_media(version, media_id):
                    raise Conflict(
                        f"media {media_id!r} is played by flow {version.flow.id!r}",
                        "media-in-use",
                    )
            await uow.media.delete(account_id, media_id)
        await self._remove_objects(media)

    async def _remove_objects(self, media: Media) -> None:
        keys = {media.original_key, media.telephony_key}
        try:
            keys.update(await self._store.list(media_prefix(media.account_id, media.id)))
        except StorageError:
            log.warning("media %s: could not list its objects", media.id, exc_info=True)
        for key in sorted(keys):
            try:
                await self._store.delete(key)
            except StorageError:
                log.warning("media %s: object %s left behind", media.id, key, exc_info=True)

    def _limit(self, max_bytes: int | None) -> int:
        if max_bytes is None:
            return self._max_upload_bytes
        return min(max_bytes, self._max_upload_bytes)


def uses_media(version: FlowVersion, media_id: str) -> bool:
    """Whether a flow version plays the media: a node's audio, or the speech made for it."""
    if media_id in version.speech.values():
        return True
    graph = parse_graph(version.graph.get("nodes"), version.graph.get("edges"))
    return media_id in media_ids(graph)


def _check_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > MAX_NAME_LENGTH:
        raise InvalidInput("name", f"must be 1 to {MAX_NAME_LENGTH} characters")
    if not cleaned.isprintable():
        raise InvalidInput("name", "must not contain control characters")
    return cleaned


def _measure(path: Path, limit: int) -> tuple[int, str]:
    """Size and sha256 of a local file, refusing it before reading when it is over `limit`."""
    size = path.stat().st_size
    if size > limit:
        raise PayloadTooLarge(limit)
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
    return size, digest.hexdigest()


@dataclass(frozen=True, slots=True)
class _Checked:
    """What an import keeps of the decoded file: its facts and the telephony WAV."""

    format: str
    duration_ms: int
    sample_rate: int
    channels: int
    telephony_wav: bytes | None  # None: pending, made on first use
    telephony_bytes: int  # the rendition's size, also while it is pending
    original: bytes | None = None  # the file's bytes when the check read them all


def _check_stored(media: Media, rules: ImportRules) -> None:
    """The rules, judged on what the import of the same audio found."""
    if rules.allowed_formats is not None and media.format.upper() not in rules.allowed_formats:
        allowed = ", ".join(sorted(rules.allowed_formats))
        raise InvalidAudio(
            f"{media.format.upper()} audio is not accepted here, only {allowed}",
            "audio-format-not-allowed",
        )
    if rules.max_bytes is not None and media.size_bytes > rules.max_bytes:
        raise PayloadTooLarge(rules.max_bytes)
    if rules.max_ms is not None and media.duration_ms > rules.max_ms:
        raise InvalidAudio(f"the audio is longer than {rules.max_ms} ms", "audio-too-long")
    if rules.min_ms is not None and media.duration_ms < rules.min_ms:
        raise InvalidAudio(
            f"the audio is {media.duration_ms} ms long, shorter than {rules.min_ms} ms",
            "audio-too-short",
        )


def _decode_and_render(path: Path | bytes, rules: ImportRules) -> _Checked:
    """Decode block by block into the telephony WAV, in one worker-thread hop: one decoded block
    in memory, and the WAV (16 000 bytes a second, so bounded by the length limit). `path`: the
    file, or its bytes (then kept as the original to store)."""
    wav = io.BytesIO()
    with _audio_errors(), open_audio(
        path, allowed_formats=rules.allowed_formats, max_duration_ms=rules.max_ms
    ) as stream:
        render_telephony(stream, wav)
    _check_min(stream, rules)
    telephony = wav.getvalue()
    return _Checked(
        stream.format,
        stream.duration_ms,
        stream.sample_rate,
        stream.channels,
        telephony,
        len(telephony),
        path if isinstance(path, bytes) else None,
    )


def _check_mp3(data: bytes, rules: ImportRules) -> _Checked:
    """An MP3 (its bytes) judged by its frame headers and its first second of audio (no full
    decode).

    Anything the scan calls not MP3 goes through the full decode, whose errors say what it is
    (a WAV renamed .mp3 is refused as WAV, not as a damaged MP3).
    """
    try:
        info = scan_mp3(data)
    except NotMp3 as exc:
        _decode_and_render_bytes(data, rules)
        raise InvalidAudio(f"the audio is not an MPEG Layer III stream: {exc}") from exc
    except Mp3ScanError as exc:
        raise InvalidAudio(f"the audio is damaged or truncated: {exc}") from exc
    if rules.max_ms is not None and info.duration_ms > rules.max_ms:
        raise InvalidAudio(f"the audio is longer than {rules.max_ms} ms", "audio-too-long")
    if rules.min_ms is not None and info.duration_ms < rules.min_ms:
        raise InvalidAudio(
            f"the audio is {info.duration_ms} ms long, shorter than {rules.min_ms} ms",
            "audio-too-short",
        )
    try:
        with sf.SoundFile(io.BytesIO(data)) as handle:
            if handle.subtype != "MPEG_LAYER_III" or handle.samplerate != info.sample_rate:
                raise InvalidAudio("the audio's frames and its decoder disagree")
            head = handle.read(min(info.sample_rate, info.samples), dtype="float32")
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise InvalidAudio(f"the audio does not decode: {exc}") from exc
    if len(head) < min(info.sample_rate, info.samples):
        raise InvalidAudio("the audio is damaged or truncated: its first second does not decode")
    return _Checked(
        "MP3",
        info.duration_ms,
        info.sample_rate,
        info.channels,
        None,
        telephony_wav_size(info.samples, info.sample_rate),
        data,
    )


def _check_mp3_file(path: Path, rules: ImportRules) -> _Checked:
    return _check_mp3(path.read_bytes(), rules)


class Renditions:
    """Telephony renditions made on first use, when an import left them pending.

    Concurrent callers in this process wait for one rendering; across processes each may render,
    and the store's put replaces the object whole, so the result is the same object either way.
    """

    def __init__(self, store: ObjectStore, max_ms: int = MAX_MEDIA_SECONDS * 1000) -> None:
        self._store = store
        self._max_ms = max_ms
        self._locks: dict[str, asyncio.Lock] = {}
        self.rendered = 0

    async def telephony(
        self, original_key: str, telephony_key: str, duration_ms: int | None = None
    ) -> bytes:
        """The rendition's WAV bytes, rendered and stored first when it is pending.

        Raises `InvalidAudio` when the original does not decode in full (a decoder that stops
        early without an error is caught by `duration_ms`, the length the import found), and the
        store's errors (`ObjectNotFound` when the original is gone too). A rendition is at most
        the length limit: 16 000 bytes a second.
        """
        try:
            return await self._store.get_bytes(telephony_key)
        except ObjectNotFound:
            pass
        lock = self._locks.setdefault(telephony_key, asyncio.Lock())
        try:
            async with lock:
                try:
                    return await self._store.get_bytes(telephony_key)
                except ObjectNotFound:
                    pass
                original = await self._store.get_bytes(original_key)
                wav = await asyncio.to_thread(_render_original, original, duration_ms, self._max_ms)
                await self._store.put_bytes(telephony_key, wav, TELEPHONY_CONTENT_TYPE)
                self.rendered += 1
                log.info("rendition %s made on first use", telephony_key)
                return wav
        finally:
            if self._locks.get(telephony_key) is lock and not lock.locked():
                del self._locks[telephony_key]


_SHORT_TOLERANCE_MS = 100


def _render_original(data: bytes, duration_ms: int | None, max_ms: int) -> bytes:
    wav = io.BytesIO()
    try:
        with open_audio(data, max_duration_ms=max_ms) as stream:
            render_telephony(stream, wav)
    except AudioError as exc:
        raise InvalidAudio(f"the audio could not be decoded: {exc}") from exc
    if duration_ms is not None and stream.duration_ms < duration_ms - _SHORT_TOLERANCE_MS:
        raise InvalidAudio(
            f"the audio decodes to {stream.duration_ms} ms of the {duration_ms} ms it holds"
        )
    return wav.getvalue()


def _decode_and_render_bytes(data: bytes, rules: ImportRules) -> None:
    with _audio_errors(), open_audio(
        data, allowed_formats=rules.allowed_formats, max_duration_ms=rules.max_ms
    ) as stream:
        for _block in stream.blocks():
            pass


@contextmanager
def _audio_errors() -> Iterator[None]:
    """Every audio error becomes an `InvalidAudio` with the error id that names it."""
    try:
        yield
    except WrongFormat as exc:
        allowed = ", ".join(sorted(exc.allowed))
        raise InvalidAudio(
            f"{exc.found} audio is not accepted here, only {allowed}", "audio-format-not-allowed"
        ) from exc
    except AudioTooLong as exc:
        raise InvalidAudio(
            f"the audio is longer than {exc.max_duration_ms} ms", "audio-too-long"
        ) from exc
    except CorruptAudio as exc:
        raise InvalidAudio(f"the audio is damaged or truncated: {exc}") from exc
    except AudioError as exc:
        raise InvalidAudio(f"the file is not audio that can be decoded: {exc}") from exc


def _check_min(stream: AudioStream, rules: ImportRules) -> None:
    if rules.min_ms is not None and stream.duration_ms < rules.min_ms:
        raise InvalidAudio(
            f"the audio is {stream.duration_ms} ms long, shorter than {rules.min_ms} ms",
            "audio-too-short",
        )
