"""What the spool syncs: nothing when an entry is created, the PCM then the metadata when it is
closed; an entry whose process died before the close is still found with its audio."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from afterbeep.telephony import spool as spool_module
from afterbeep.telephony.interface import EndedBy
from afterbeep.telephony.spool import Spool, SpoolMeta


def meta(call_id: str = "call_1") -> SpoolMeta:
    return SpoolMeta(
        call_id=call_id,
        account_id="acc_1",
        mailbox_id="mbx_1",
        caller="+12025550123",
        caller_name=None,
        callee="+12025550100",
        started_at="2026-12-07T12:00:00Z",
    )


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files fsynced, by name, in order."""
    names: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        names.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(spool_module.os, "fsync", fsync)
    return names


def test_create_syncs_nothing_and_close_syncs_the_audio_then_the_metadata(
    tmp_path: Path, synced: list[str]
) -> None:
    spool = Spool(tmp_path)
    writer = spool.open(meta())
    assert synced == []
    assert spool.entry("call_1") is not None  # on disk, unsynced, from the start
    pcm = (np.arange(8000) % 300).astype(np.int16)
    writer.write(pcm)
    entry = writer.close(EndedBy.FINISH_KEY)
    assert synced == ["call_1.pcm", "call_1.json.tmp"]
    found = spool.entry("call_1")
    assert found is not None and found.meta.ended_by == EndedBy.FINISH_KEY.value
    assert found == entry
    assert np.array_equal(Spool.read_pcm(found), pcm)


def test_an_entry_left_by_a_killed_process_is_found_with_its_audio(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    writer = spool.open(meta("call_2"))
    pcm = (np.arange(12000) % 500).astype(np.int16)
    writer.write(pcm)  # past the flush size: written to the OS
    assert writer._fd is not None
    os.close(writer._fd)  # what a kill -9 does
    [entry] = Spool(tmp_path).entries()
    assert entry.meta.call_id == "call_2" and entry.meta.ended_by is None
    assert np.array_equal(Spool.read_pcm(entry), pcm[: len(pcm) // 4000 * 4000])
