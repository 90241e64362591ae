"""SpoolWriter finds the end of the last loud 20 ms frame for a whole block at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from afterbeep.audio.levels import mean_abs
from afterbeep.telephony.interface import EndedBy
from afterbeep.telephony.spool import Spool, SpoolMeta

FRAME = 160


def frame_by_frame(blocks: list[np.ndarray], threshold: int) -> int:
    """The definition: every frame of every block, aligned on the block's start."""
    samples = last = 0
    for pcm in blocks:
        for start in range(0, len(pcm), FRAME):
            frame = pcm[start : start + FRAME]
            if mean_abs(frame) >= threshold:
                last = samples + start + len(frame)
        samples += len(pcm)
    return last


def test_the_last_sound_is_where_frame_by_frame_puts_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    spool = Spool(tmp_path / "spool")
    for case in range(40):
        blocks = []
        for _ in range(int(rng.integers(1, 8))):
            size = int(rng.choice([FRAME, 2 * FRAME, 1600, 1600 + 37, 90, 0]))
            loud = rng.random() < 0.5
            scale = 4000 if loud else 50
            blocks.append((rng.normal(0, scale, size)).astype(np.int16))
        meta = SpoolMeta(
            call_id=f"call_{case}", account_id="acct_1", mailbox_id="vm_1", caller=None,
            caller_name=None, callee=None, started_at="2026-11-23T00:00:00+00:00",
        )  # fmt: skip
        writer = spool.open(meta, 200)
        for block in blocks:
            writer.write(block)
        assert writer.last_sound_end == frame_by_frame(blocks, 200), case
        assert writer.samples == sum(len(b) for b in blocks)
        writer.close(EndedBy.HANGUP)


def _meta(call_id: str) -> SpoolMeta:
    return SpoolMeta(
        call_id=call_id, account_id="acct_1", mailbox_id="vm_1", caller=None,
        caller_name=None, callee=None, started_at="2026-11-23T00:00:00+00:00",
    )  # fmt: skip


def test_audio_reaches_the_file_every_half_second_and_waits_in_memory_for_the_entry(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "spool")
    block = np.full(1600, 3000, dtype=np.int16)  # 200 ms, as the media layer delivers
    writer = spool.writer(_meta("call_late"), 200)
    for _ in range(4):
        writer.write(block)  # 800 ms before the entry exists: held
    assert spool.entries() == [] and not writer.entry.pcm_path.exists()
    writer.create()
    assert writer.entry.pcm_path.stat().st_size == 0
    sizes = []
    for _ in range(5):
        writer.write(block)
        sizes.append(writer.entry.pcm_path.stat().st_size // 2)
    assert sizes == [8000, 8000, 8000, 12800, 12800]  # at most 400 ms behind after a write
    entry = writer.close(EndedBy.HANGUP)
    assert np.array_equal(Spool.read_pcm(entry), np.tile(block, 9))
