"""The recorder's hand-over to the native receiver, without a thread: a recorder that gives its
state away after a few packets and takes back what a stand-in for the thread did (the next
packets, whole blocks decoded, the unfinished block raw) delivers the same blocks as one that
received every packet itself."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from afterbeep.audio.g711 import ulaw_decode, ulaw_encode
from afterbeep.telephony.media.recorder import Recorder
from afterbeep.telephony.media.reorder import Reorderer
from afterbeep.telephony.media.rtp import RtpIn
from afterbeep.telephony.media.sdp import Codec
from tests.media.test_recorder import FRAME, Sink, signal

SSRC = 0x55


def packet(pcm: npt.NDArray[np.int16], k: int, arrival: float) -> RtpIn:
    payload = ulaw_encode(pcm[k * FRAME : (k + 1) * FRAME])
    return RtpIn(
        0,
        False,
        (65530 + k) & 0xFFFF,
        (4_294_967_000 + k * FRAME) % (1 << 32),
        SSRC,
        payload,
        arrival,
    )


def recorder(sink: Sink) -> Recorder:
    r = Recorder(sink.audio)
    r.configure({0: Codec.PCMU}, frozenset({101}))
    return r


def test_handed_over_stream_gives_the_same_blocks() -> None:
    pcm = signal(40)
    whole, handed = Sink(), Sink()
    reference, r = recorder(whole), recorder(handed)
    for k in range(40):
        reference.receive(packet(pcm, k, k * 0.02))
    reference.flush()

    for k in range(3):  # three packets on the Python path: 480 samples pending
        r.receive(packet(pcm, k, k * 0.02))
    start = r.native_state()
    assert start is not None
    assert (start.pt, start.alaw, start.ssrc, start.seq) == (0, False, SSRC, (65530 + 3) & 0xFFFF)
    assert start.ts == (4_294_967_000 + 3 * FRAME) % (1 << 32) and start.position == 480
    assert len(start.pending) == 480 and start.pending_offset == 0
    r.native_armed()
    assert not r.holding

    # the thread's part: packets 3..32 (30 packets), blocks of 1600 samples from offset 0
    raw = start.pending + b"".join(packet(pcm, k, 0).payload for k in range(3, 33))
    for offset in range(0, 4800, 1600):
        r.native_block(ulaw_decode(raw[offset : offset + 1600]), offset, offset / 8000)
    r.native_advanced(30, 30 * FRAME, (start.ts + 30 * FRAME) % (1 << 32), 32 * 0.02)
    r.native_returned(raw[4800:], 4800, 30 * 0.02)
    for k in range(33, 40):  # back on the Python path
        r.receive(packet(pcm, k, k * 0.02))
    r.flush()

    assert np.array_equal(handed.pcm, whole.pcm)
    assert [o for o, _ in handed.blocks] == [o for o, _ in whole.blocks]
    assert r.samples == reference.samples and r.audio_packets == reference.audio_packets == 40
    assert r.lost == reference.lost == 0


def test_no_hand_over_while_a_gap_is_held_or_nothing_listens() -> None:
    pcm = signal(10)
    sink = Sink()
    r = recorder(sink)
    assert r.native_state() is None  # nothing received yet
    r.receive(packet(pcm, 0, 0.0))
    r.receive(packet(pcm, 2, 0.04))  # 1 missing: 2 is held
    assert r.native_state() is None
    r.receive(packet(pcm, 1, 0.05))
    assert r.native_state() is not None
    r.on_audio = None
    assert r.native_state() is None


def test_reorderer_advance_continues_the_sequence() -> None:
    reorderer: Reorderer[int] = Reorderer()
    assert reorderer.expected is None
    assert reorderer.push(65535, 1, 0.0) == [1]
    reorderer.advance(3)  # 0, 1, 2 taken elsewhere (wrapped)
    assert reorderer.expected == 65536 + 3
    assert reorderer.take_next(3)
    assert reorderer.push(5, 5, 0.1) == []  # 4 missing: held
    assert reorderer.lost == 0
