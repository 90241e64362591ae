"""Recovering the spool of a node that is not running (`afterbeep spool recover --node ID`): its
recordings become messages exactly as the node's own restart would make them (`SpoolWorker`),
under the spool's lock, so two processes never recover one directory at once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from afterbeep.cluster.node import SpoolLock
from afterbeep.domain.clock import Clock
from afterbeep.telephony.spool import Spool
from afterbeep.telephony.spool_worker import Finalizer, SpoolWorker


@dataclass(frozen=True, slots=True)
class Recovered:
    found: int  # recordings in the spool
    left: int  # still there (storage or the database did not take them in time)

    @property
    def stored(self) -> int:
        return self.found - self.left


async def recover_spool(directory: Path, deposits: Finalizer, clock: Clock, *, wait: float) -> Recovered:
    """Store every recording of `directory`, waiting at most `wait` seconds; what could not be
    stored stays in the spool (run again). `SpoolBusy` when its node, or another recovery, holds
    the directory."""
    with SpoolLock(directory):
        spool = Spool(directory)
        worker = SpoolWorker(spool, deposits, clock)
        found = await worker.recover()
        try:
            async with asyncio.timeout(wait):
                await worker.wait_idle()
        except TimeoutError:
            pass
        await worker.stop(grace=5.0)
        left = len(await asyncio.to_thread(spool.entries))
    return Recovered(found, left)
