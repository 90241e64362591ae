"""The recording spool: message audio on local disk while the call is still going.

Each recording is `<spool>/<call_id>.pcm` (raw 8 kHz mono int16, appended as audio arrives and
flushed to the OS every half second of audio) and `<call_id>.json` (who called whom, and
once the recording ended, how). A kill -9 thus loses at most the last second: the half second
not yet flushed, plus what the media layer still holds (a delivered block, reordering).
Entries are removed only after the message is stored and committed; entries found at start-up
are recovered.

Two writes of the metadata per call, one fsync'd: `create` writes it (atomically, not synced:
until the recording is closed nothing is promised, and a kill -9 keeps what the OS has; a
power loss loses the unsynced PCM anyway), `close` syncs the PCM, then writes the metadata
with how the recording ended and syncs it, before the caller hears "saved".
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from afterbeep.audio.levels import DEFAULT_SILENCE_THRESHOLD, mean_abs
from afterbeep.domain.messages import RecordedCall
from afterbeep.telephony.interface import Audio, EndedBy

SpoolMeta = RecordedCall

FLUSH_SAMPLES = 4000  # half a second of audio
FRAME = 160
TRIM_KEEP_SAMPLES = 1600  # ~200 ms of trailing silence kept


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    meta: SpoolMeta
    pcm_path: Path
    meta_path: Path


def _write_json_atomic(path: Path, data: dict[str, object], *, sync: bool = True) -> None:
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(data).encode())
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class SpoolWriter:
    """A RecordingSink that appends to the spool file and tracks where speech last was."""

    def __init__(
        self, entry: SpoolEntry, silence_threshold: int = DEFAULT_SILENCE_THRESHOLD
    ) -> None:
        self.entry = entry
        self._fd: int | None = None  # until `create()`: audio is held in memory
        self._pending: list[bytes] = []
        self._pending_samples = 0
        self._threshold = silence_threshold
        self.samples = 0
        self.last_sound_end = 0

    def write(self, pcm: Audio) -> None:
        # The end of the last loud frame (frames aligned on the block), for a block at once:
        # a numpy call per 20 ms frame was a tenth of the service's CPU at 400 deposits.
        size = len(pcm)
        whole = size // FRAME * FRAME
        loud_end = 0
        if whole < size and mean_abs(pcm[whole:]) >= self._threshold:
            loud_end = size
        elif whole:
            means = np.abs(pcm[:whole].reshape(-1, FRAME), dtype=np.int32).mean(axis=1)
            loud = np.flatnonzero(means >= self._threshold)
            if loud.size:
                loud_end = (int(loud[-1]) + 1) * FRAME
        if loud_end:
            self.last_sound_end = self.samples + loud_end
        self.samples += size
        self._pending.append(pcm.astype("<i2", copy=False).tobytes())
        self._pending_samples += len(pcm)
        if self._pending_samples >= FLUSH_SAMPLES:
            self.flush()

    def create(self) -> None:
        """Put the entry on disk (not synced: `close` does). Blocking: a deposit runs it on a
        thread while the greeting plays, and records into the writer even if it is late."""
        _write_json_atomic(self.entry.meta_path, asdict(self.entry.meta), sync=False)
        self._fd = os.open(self.entry.pcm_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def flush(self) -> None:
        if self._pending and self._fd is not None:
            os.write(self._fd, b"".join(self._pending))
            self._pending.clear()
            self._pending_samples = 0

    def kept_samples(self, ended_by: EndedBy) -> int:
        """How much of the recording a message keeps: all of it after `#`, else trimmed."""
        if ended_by is EndedBy.FINISH_KEY:
            return self.samples
        return min(self.samples, self.last_sound_end + TRIM_KEEP_SAMPLES)

    def close(self, ended_by: EndedBy) -> SpoolEntry:
        if self._fd is None:
            raise RuntimeError("the spool entry was never created")
        self.flush()
        os.fsync(self._fd)
        os.close(self._fd)
        meta = replace(self.entry.meta, ended_by=ended_by.value)
        _write_json_atomic(self.entry.meta_path, asdict(meta))
        self.entry = replace(self.entry, meta=meta)
        return self.entry

    def discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        Spool.remove(self.entry)


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def open(
        self, meta: SpoolMeta, silence_threshold: int = DEFAULT_SILENCE_THRESHOLD
    ) -> SpoolWriter:
        """A writer whose entry is on disk."""
        writer = self.writer(meta, silence_threshold)
        writer.create()
        return writer

    def writer(
        self, meta: SpoolMeta, silence_threshold: int = DEFAULT_SILENCE_THRESHOLD
    ) -> SpoolWriter:
        """A writer for `meta`, not yet on disk (no I/O): `create()` it."""
        if not meta.call_id.replace("_", "").isalnum():
            raise ValueError("call ids in the spool must be plain identifiers")
        entry = SpoolEntry(
            meta, self.directory / f"{meta.call_id}.pcm", self.directory / f"{meta.call_id}.json"
        )
        return SpoolWriter(entry, silence_threshold)

    def entries(self) -> list[SpoolEntry]:
        found: list[SpoolEntry] = []
        for meta_path in sorted(self.directory.glob("*.json")):
            entry = self._read(meta_path)
            if entry is not None:
                found.append(entry)
        return found

    def entry(self, call_id: str) -> SpoolEntry | None:
        """The entry of `call_id`, None if there is none (or it is unreadable)."""
        if not call_id.replace("_", "").isalnum():
            return None
        return self._read(self.directory / f"{call_id}.json")

    @staticmethod
    def _read(meta_path: Path) -> SpoolEntry | None:
        try:
            meta = SpoolMeta(**json.loads(meta_path.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        return SpoolEntry(meta, meta_path.with_suffix(".pcm"), meta_path)

    @staticmethod
    def read_pcm(entry: SpoolEntry) -> Audio:
        if not entry.pcm_path.exists():
            return np.zeros(0, dtype=np.int16)
        raw = entry.pcm_path.read_bytes()
        return np.frombuffer(raw[: len(raw) - len(raw) % 2], dtype="<i2").astype(np.int16)

    @staticmethod
    def remove(entry: SpoolEntry) -> None:
        entry.pcm_path.unlink(missing_ok=True)
        entry.meta_path.unlink(missing_ok=True)
