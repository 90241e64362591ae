"""What a node of a cluster is (AFTERBEEP_NODE_ID): where its spool lives, the backends it needs,
and the lock that keeps two processes from recovering one spool directory at once."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from afterbeep.config import Settings

LOCK_NAME = ".lock"


class SpoolBusy(Exception):
    """Another process holds the spool directory (its node runs, or another recovery does)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(f"the spool {directory} is in use by another process (its node, or another recovery)")
        self.directory = directory


def spool_directory(data_dir: Path, node_id: str) -> Path:
    """`<data_dir>/spool` for a service alone, `<data_dir>/spool/<node_id>` for a node."""
    return data_dir / "spool" / node_id if node_id else data_dir / "spool"


def backends_problem(settings: Settings) -> str | None:
    """Why these settings cannot run as a node of a cluster (None when they can): every node
    must see the same database and the same objects, which an SQLite file or a local directory
    of objects are not."""
    refused: list[str] = []
    if settings.resolved_database_url().startswith("sqlite"):
        refused.append("AFTERBEEP_DATABASE_URL is an SQLite file")
    if settings.resolved_storage_url().startswith("file://"):
        refused.append("AFTERBEEP_STORAGE_URL is a local directory")
    if not refused:
        return None
    return "a cluster needs PostgreSQL and S3: " + " and ".join(refused) + " (set postgresql+asyncpg://... and s3://...)"


class SpoolLock:
    """An exclusive `flock` on `<spool>/.lock`, held until `release` (or the process ends: the
    kernel drops it with the descriptor, so a node killed with -9 leaves no stale lock)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd: int | None = None

    def acquire(self) -> SpoolLock:
        """Take the lock without waiting; `SpoolBusy` when another process holds it."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolBusy(self.directory) from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SpoolLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
