"""`PreRoll`: the audio a call keeps while no recording runs, given back from a point of the
receive clock (the beep's end), bounded."""

from __future__ import annotations

import numpy as np
import pytest

from afterbeep.telephony.media.preroll import PREROLL_SECONDS, PreRoll

RATE = 8000


def ramp(start: int, count: int) -> np.ndarray:
    """Samples numbered by their position on the receive timeline (wrapping in int16)."""
    return (np.arange(start, start + count) % 30000).astype(np.int16)


def blocks(preroll: PreRoll, start: float) -> tuple[np.ndarray, list[float]]:
    given = list(preroll.since(start))
    pcm = np.concatenate([p for p, _ in given]) if given else np.zeros(0, dtype=np.int16)
    return pcm, [arrival for _, arrival in given]


def fill(preroll: PreRoll, seconds: float, block: int = 1600, t0: float = 100.0) -> None:
    """Real-time audio from t0: a block of ``block`` samples every ``block / RATE`` s."""
    for position in range(0, round(seconds * RATE), block):
        preroll.put(ramp(position, block), t0 + position / RATE)


def test_what_arrived_from_the_point_on_is_given_back_the_first_block_cut() -> None:
    preroll = PreRoll()
    fill(preroll, 2.0)
    pcm, arrivals = blocks(preroll, 100.0 + 0.93)  # inside the 5th block (0.8-1.0 s)
    first = round(0.93 * RATE)
    assert np.array_equal(pcm, ramp(first, 2 * RATE - first))
    assert arrivals[0] == pytest.approx(100.0 + first / RATE) and arrivals[1] == 101.0
    assert preroll.lost_after(100.93) == 0.0


def test_audio_before_the_point_is_not_given_back() -> None:
    preroll = PreRoll()
    fill(preroll, 1.0)  # the caller talking over the greeting, all before the beep's end
    pcm, _ = blocks(preroll, 101.0)
    assert pcm.size == 0
    pcm, _ = blocks(preroll, 99.0)  # a point before all of it: all of it
    assert np.array_equal(pcm, ramp(0, RATE))


def test_the_bound_keeps_the_newest_audio_and_says_what_was_lost() -> None:
    preroll = PreRoll(limit=RATE)  # 1 s
    fill(preroll, 2.4)
    assert preroll.samples == RATE
    pcm, arrivals = blocks(preroll, 100.0 + 0.3)
    assert np.array_equal(pcm, ramp(round(1.4 * RATE), RATE))  # from the oldest kept
    assert arrivals[0] == pytest.approx(101.4)
    assert preroll.lost_after(100.3) == pytest.approx(1.1)  # 0.3 .. 1.4 s dropped
    assert preroll.lost_after(101.5) == 0.0  # a later point lost nothing


def test_the_bound_cuts_inside_the_oldest_block() -> None:
    preroll = PreRoll(limit=1000)
    fill(preroll, 0.4, block=1600)  # two blocks of 1600 samples
    assert preroll.samples == 1000
    pcm, arrivals = blocks(preroll, 0.0)
    assert np.array_equal(pcm, ramp(3200 - 1000, 1000))
    assert arrivals == [pytest.approx(100.0 + 2200 / RATE)]


def test_the_default_bound_is_a_few_seconds() -> None:
    preroll = PreRoll()
    fill(preroll, PREROLL_SECONDS + 2)
    assert preroll.samples == round(PREROLL_SECONDS * RATE)
    preroll.clear()
    assert preroll.samples == 0 and preroll.lost_after(0.0) == 0.0


@pytest.mark.parametrize("bound", [None, 5 * 1600 + 300])
def test_until_a_mark_only_what_was_received_before_it(bound: int | None) -> None:
    """A key pressed after the beep: the audio up to it, none after, the bound dropping or not."""
    preroll = PreRoll() if bound is None else PreRoll(bound)
    fill(preroll, 1.0)  # 5 blocks of 1600
    mark = preroll.received
    assert mark == 8000
    fill(preroll, 0.4, t0=101.0)  # after the key
    pcm = np.concatenate([p for p, _ in preroll.since(100.93, mark - 500)])
    first = round(0.93 * RATE)
    assert np.array_equal(pcm, ramp(first, mark - 500 - first))
    assert list(preroll.since(100.0, 0)) == [] and preroll.received == 8000 + 3200
