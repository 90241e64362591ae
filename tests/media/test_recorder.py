"""The receive path without sockets: dispatch by payload type, decode and sample-exact placement."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from afterbeep.audio.g711 import ulaw_decode, ulaw_encode
from afterbeep.telephony.media.recorder import Recorder
from afterbeep.telephony.media.rtp import RtpIn
from afterbeep.telephony.media.sdp import Codec

FRAME = 160


class Sink:
    def __init__(self) -> None:
        self.blocks: list[tuple[int, npt.NDArray[np.int16]]] = []
        self.digits: list[str] = []

    def audio(self, pcm: npt.NDArray[np.int16], offset: int) -> None:
        expected = sum(len(b) for _, b in self.blocks)
        assert offset == expected, "blocks must be contiguous"
        self.blocks.append((offset, pcm))

    @property
    def pcm(self) -> npt.NDArray[np.int16]:
        return np.concatenate([b for _, b in self.blocks])


def signal(frames: int) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(7)
    return rng.integers(-12000, 12000, frames * FRAME, dtype=np.int16)


def at(packet: RtpIn, arrival: float) -> RtpIn:
    packet.arrival = arrival
    return packet


def recorder(sink: Sink, block: int = 800) -> Recorder:
    rec = Recorder(sink.audio, sink.digits.append, window=4, block=block)
    rec.configure({0: Codec.PCMU}, frozenset({101}))
    return rec


def packets(pcm: npt.NDArray[np.int16], seq0: int, ts0: int, ssrc: int = 42) -> list[RtpIn]:
    encoded = ulaw_encode(pcm)
    return [
        RtpIn(
            0,
            i == 0,
            (seq0 + i) % 65536,
            (ts0 + i * FRAME) % 2**32,
            ssrc,
            encoded[i * FRAME : (i + 1) * FRAME],
        )
        for i in range(len(pcm) // FRAME)
    ]


def test_loss_reorder_duplicates_and_wrap_are_placed_sample_exact() -> None:
    pcm = signal(50)
    pkts = packets(pcm, seq0=65520, ts0=2**32 - 1600)  # both counters wrap
    lost = {7, 30}
    order = [p for i, p in enumerate(pkts) if i not in lost]
    order[10], order[11] = order[11], order[10]  # reordered
    order.insert(20, order[19])  # duplicate
    sink = Sink()
    rec = recorder(sink)
    for n, p in enumerate(order):
        rec.receive(at(p, n * 0.02))
    rec.flush()
    expected = ulaw_decode(ulaw_encode(pcm))
    for i in lost:
        expected[i * FRAME : (i + 1) * FRAME] = 0
    assert np.array_equal(sink.pcm, expected)  # the tail is there: flush delivered it all
    assert (rec.lost, rec.duplicates, rec.late) == (2, 1, 0)


def test_lost_last_packets_do_not_lose_what_came_before_them() -> None:
    pcm = signal(10)
    sink = Sink()
    rec = recorder(sink)
    pkts = packets(pcm, 0, 0)
    for n, p in enumerate(pkts[:6] + pkts[7:]):
        rec.receive(at(p, n * 0.02))
    rec.flush()
    assert len(sink.pcm) == len(pcm)


def test_foreign_payload_types_are_not_audio_and_leave_no_gap() -> None:
    pcm = signal(6)
    pkts = packets(pcm, 100, 0)
    comfort_noise = RtpIn(13, False, 103, 480, 42, b"\x40")
    video = RtpIn(96, False, 104, 480, 42, b"\x00" * 160)
    stream = [*pkts[:3], comfort_noise, video]
    stream += [RtpIn(0, False, 105 + i, p.timestamp, 42, p.payload) for i, p in enumerate(pkts[3:])]
    sink = Sink()
    rec = recorder(sink, block=FRAME)  # deliver every packet at once
    for n, p in enumerate(stream):
        rec.receive(at(p, n * 0.02))
    assert rec.dropped_payload_type == 2 and rec.lost == 0
    assert not rec.holding  # nothing waited in the reorder window for the "missing" packets
    assert np.array_equal(sink.pcm, ulaw_decode(ulaw_encode(pcm)))


def test_telephone_events_go_to_the_digit_sink() -> None:
    sink = Sink()
    rec = recorder(sink)
    end = bytes([3, 0x8A, 0x03, 0x20])
    for seq in (1, 2, 3):
        rec.receive(RtpIn(101, seq == 1, seq, 8000, 42, end, seq * 0.02))
    assert sink.digits == ["3"] and sink.blocks == []


def test_ssrc_change_flushes_old_stream_and_places_new_one_by_arrival() -> None:
    a, b = signal(3), signal(3)
    sink = Sink()
    rec = recorder(sink)
    for n, p in enumerate(packets(a, 10, 5000, ssrc=1)):
        rec.receive(at(p, n * 0.02))
    for n, p in enumerate(packets(b, 9000, 777777, ssrc=2)):
        rec.receive(at(p, 1.04 + n * 0.02))  # arrives 1 s after the last old packet
    rec.flush()
    gap = 8000 - FRAME  # 1 s between arrivals, less the 20 ms the new packet itself covers
    assert len(sink.pcm) == 3 * FRAME + gap + 3 * FRAME
    assert not sink.pcm[3 * FRAME : 3 * FRAME + gap].any()
    assert sink.pcm[3 * FRAME + gap :].any()


def test_partial_block_is_delivered_after_flush_after() -> None:
    pcm = signal(3)
    sink = Sink()
    rec = recorder(sink)
    for n, p in enumerate(packets(pcm, 0, 0)):
        rec.receive(at(p, n * 0.02))
    assert sink.blocks == [] and rec.holding and rec.deadline == 0.4
    rec.expire(0.39)
    assert sink.blocks == []
    rec.expire(0.4)
    assert np.array_equal(sink.pcm, ulaw_decode(ulaw_encode(pcm))) and not rec.holding


def test_switching_the_sink_delivers_pending_audio_to_the_old_one() -> None:
    first, second = Sink(), Sink()
    rec = recorder(first)
    pkts = packets(signal(4), 0, 0)
    for n, p in enumerate(pkts[:2]):
        rec.receive(at(p, n * 0.02))
    rec.on_audio = second.audio
    assert len(first.pcm) == 2 * FRAME
