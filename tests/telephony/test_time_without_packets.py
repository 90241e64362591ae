"""Time passes when packets stop (issue 15, point 11), with a fake clock: for a listener
(`AudioTap`, what `SipCall.listen()` yields to the drop's detectors) and for a recording's
silence limit (`RecordingTake`)."""

from __future__ import annotations

import asyncio

import numpy as np

from afterbeep.audio.tones import tone
from afterbeep.telephony.call import AudioTap, RecordingTake


def queued(tap: AudioTap) -> list[np.ndarray]:
    blocks = []
    while tap._blocks:
        blocks.append(tap._blocks.popleft())
    return blocks


def test_no_audio_is_silence_as_the_clock_goes() -> None:
    tap = AudioTap(since=100.0)
    assert tap.wake_at() == 100.0 + 0.6 + 0.2  # the slack, then a 200 ms block
    tap.fill(100.5)
    assert queued(tap) == []  # the media layer may still hold audio this long
    tap.fill(102.6)  # 2 s past the slack
    blocks = queued(tap)
    assert sum(b.size for b in blocks) == 16000 and not any(b.any() for b in blocks)
    assert tap.filled == 16000


def test_audio_after_a_gap_is_not_counted_twice() -> None:
    tap = AudioTap(since=0.0)
    voice = np.full(1600, 1000, dtype=np.int16)
    tap.put(voice, 0.2)
    tap.fill(0.2 + 0.6 + 1.0)  # the far end went quiet: 1 s of zeros
    assert sum(b.size for b in queued(tap)) == 1600 + 8000
    # it comes back: the media layer fills the gap it measured (1.2 s), then sound
    tap.put(np.zeros(9600, dtype=np.int16), 2.0)
    tap.put(voice, 2.0)
    blocks = queued(tap)
    assert [b.size for b in blocks] == [1600, 1600]  # only what was not filled already
    assert not blocks[0].any() and blocks[1].all()


def test_sound_ends_what_is_owed() -> None:
    tap = AudioTap(since=0.0)
    tap.fill(1.6)
    queued(tap)
    voice = np.full(160, 1000, dtype=np.int16)
    tap.put(voice, 1.7)  # a sender back on a timeline without the gap: nothing to cut
    tap.put(np.zeros(160, dtype=np.int16), 1.72)
    assert [b.size for b in queued(tap)] == [160, 160]


def test_an_unclocked_tap_never_fills() -> None:
    tap = AudioTap()
    tap.fill(1000.0)
    assert queued(tap) == []


async def test_a_listener_hears_silence_when_nothing_arrives() -> None:
    tap = AudioTap(since=asyncio.get_running_loop().time())
    heard = 0
    async with asyncio.timeout(10):
        async for block in tap.blocks():
            assert not block.any()
            heard += block.size
            if heard >= 1600:
                tap.close()
    assert heard >= 1600


class _Sink:
    def write(self, pcm: np.ndarray) -> None:
        pass


async def test_a_recording_counts_missing_packets_after_its_silence_as_silence() -> None:
    take = RecordingTake(_Sink(), limit=800000, silence_ms=5000, threshold=200, finish_on="#")
    take.feed(tone(440, 1000), 10.0)
    assert take.quiet_at() == 10.0 + 5.0 + 0.6  # after sound: the whole silence limit
    take.feed(np.zeros(3 * 8000, np.int16), 13.0)  # 3 s of silence, then the packets stop
    assert take.quiet_at() == 13.0 + 2.0 + 0.6  # only the rest of the limit
