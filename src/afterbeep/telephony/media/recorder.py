"""The receive path of one call, without sockets: reorder, dispatch by payload type, place, decode.

Every RTP packet from the accepted source goes through the :class:`Reorderer` (so
telephone-event and foreign packets keep their place in the sequence and do not
look like losses). Released in order, each packet is dispatched: negotiated audio
payload types are placed on the timeline by :class:`PlayoutPlacer`, decoded and
handed to the audio sink as 8 kHz int16 PCM; telephone-event payload types go to
the :class:`DtmfReceiver`; anything else is dropped and counted.

The sink is called with ``(pcm, offset)``: ``offset`` is the index of ``pcm[0]`` in
the recording, counted in samples from the first audio packet; during the call,
:attr:`Recorder.block_arrival` is when ``pcm[0]`` arrived (its packet's receive time;
for zeros standing for a gap, when they would have), so that a recording can start at
a point of the receive clock rather than when its coroutine ran. Gaps arrive as
explicit zero blocks, so the sink can simply append. Contiguous audio is decoded
and delivered in blocks of ``block`` samples (200 ms by default: one decode and one
sink call per ten packets instead of per packet); :meth:`Recorder.expire` delivers
a partial block once it is ``flush_after`` seconds old, :meth:`Recorder.flush` all.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from afterbeep.audio.g711 import alaw_decode, ulaw_decode
from afterbeep.telephony.media.dtmf import DtmfReceiver
from afterbeep.telephony.media.placement import PlayoutPlacer
from afterbeep.telephony.media.reorder import Reorderer
from afterbeep.telephony.media.rtp import TS_MOD, RtpIn
from afterbeep.telephony.media.sdp import CLOCK_RATE, Codec

__all__ = ["AudioSink", "DigitSink", "NativeStart", "Recorder"]

AudioSink = Callable[[npt.NDArray[np.int16], int], None]
DigitSink = Callable[[str], None]

_DECODERS: dict[Codec, Callable[[bytes], npt.NDArray[np.int16]]] = {
    Codec.PCMU: ulaw_decode,
    Codec.PCMA: alaw_decode,
}


class NativeStart(NamedTuple):
    """A recorder's state as the native receiver needs it to take the next packets."""

    pt: int
    alaw: bool
    ssrc: int
    seq: int
    ts: int
    position: int
    pending: bytes
    pending_offset: int
    pending_since: float


_SILENCE_BLOCK = CLOCK_RATE  # gaps are delivered in blocks of at most one second
_SSRC_QUIET = 0.2  # seconds: a retired SSRC may take over again after the current one is this quiet


class Recorder:
    """Receive-path state of one call; counters are public attributes."""

    def __init__(
        self,
        on_audio: AudioSink | None = None,
        on_dtmf: DigitSink | None = None,
        *,
        window: int = 5,
        max_wait: float = 0.1,
        block: int = CLOCK_RATE // 5,
        flush_after: float = 0.4,
    ) -> None:
        self._on_audio = on_audio
        self.on_dtmf = on_dtmf
        self._window = window
        self._max_wait = max_wait
        self._block = block
        self._flush_after = flush_after
        self._audio_pts: Mapping[int, Codec] = {}
        self._event_pts: frozenset[int] = frozenset()
        self._reorderer: Reorderer[RtpIn] = Reorderer(window, max_wait)
        self._ssrc: int | None = None
        self._ssrc_seen = 0.0
        self._retired: deque[int] = deque(maxlen=4)
        self._pending = bytearray()
        self._pending_codec = Codec.PCMU
        self._pending_offset = 0
        self._pending_since = 0.0
        self._last_pt: int | None = None  # of the last audio packet placed
        self.placer = PlayoutPlacer(CLOCK_RATE)
        self.dtmf = DtmfReceiver()
        self.dropped_payload_type = 0
        self.audio_packets = 0
        self.block_arrival = 0.0  # of the block being handed to the sink
        self.event_arrival = 0.0  # of the telephone-event packet whose digit goes to on_dtmf
        self._lost = self._late = self._duplicates = 0

    @property
    def on_audio(self) -> AudioSink | None:
        return self._on_audio

    @on_audio.setter
    def on_audio(self, sink: AudioSink | None) -> None:
        self._emit()  # what was received before the switch belongs to the old sink
        self._on_audio = sink

    def configure(self, audio_pts: Mapping[int, Codec], event_pts: frozenset[int]) -> None:
        """The payload types negotiated (again, after a re-INVITE)."""
        self._audio_pts = dict(audio_pts)
        self._event_pts = event_pts

    @property
    def lost(self) -> int:
        return self._lost + self._reorderer.lost

    @property
    def late(self) -> int:
        return self._late + self._reorderer.late

    @property
    def duplicates(self) -> int:
        return self._duplicates + self._reorderer.duplicates

    @property
    def samples(self) -> int:
        return self.placer.position

    @property
    def holding(self) -> bool:
        """Something waits for :meth:`expire` (a reorder gap or an undelivered block)."""
        return bool(self._pending) or len(self._reorderer) > 0

    @property
    def deadline(self) -> float | None:
        reorder = self._reorderer.deadline
        if not self._pending:
            return reorder
        pending = self._pending_since + self._flush_after
        return pending if reorder is None else min(reorder, pending)

    def receive(self, packet: RtpIn) -> None:
        """A packet from the accepted source; ``packet.arrival`` is its receive time."""
        if packet.ssrc == self._ssrc and self._reorderer.take_next(packet.sequence):
            self._ssrc_seen = packet.arrival
            self._dispatch(packet)
            return
        if packet.ssrc != self._ssrc:
            if packet.ssrc in self._retired and packet.arrival - self._ssrc_seen < _SSRC_QUIET:
                self._late += 1
                return
            self._switch_ssrc(packet.ssrc)
        self._ssrc_seen = packet.arrival
        for released in self._reorderer.push(packet.sequence, packet, packet.arrival):
            self._dispatch(released)

    def receive_next(
        self,
        payload_type: int,
        sequence: int,
        timestamp: int,
        ssrc: int,
        payload: bytes,
        arrival: float,
    ) -> bool:
        """The common case in one step, without building an :class:`RtpIn`: the next packet of
        the current stream (nothing held), audio of the codec being collected, contiguous on
        the timeline, a sink listening. Returns False, having changed nothing, for anything
        else: the caller then parses the packet and calls :meth:`receive`."""
        codec = self._audio_pts.get(payload_type)
        placer = self.placer
        if (
            codec is None
            or ssrc != self._ssrc
            or not payload
            or self._on_audio is None
            or (self._pending and codec is not self._pending_codec)
            or not placer.is_next(ssrc, timestamp)
            or not self._reorderer.take_next(sequence)
        ):
            return False
        self._ssrc_seen = arrival
        self._last_pt = payload_type
        self.audio_packets += 1
        start = placer.position
        placer.advance(timestamp, len(payload), arrival)
        pending = self._pending
        if not pending:
            self._pending_codec = codec
            self._pending_offset = start
            self._pending_since = arrival
        pending += payload
        if len(pending) >= self._block:
            self._emit()
        return True

    # --- hand-over to the native receiver (`native.py`) ---------------------------------

    def native_state(self) -> NativeStart | None:
        """Where a native receiver may continue `receive_next`'s path from, or None when the
        next packet could not take it (nothing received yet, a gap held, no sink)."""
        ssrc, pt, placer = self._ssrc, self._last_pt, self.placer
        expected = self._reorderer.expected
        if (
            ssrc is None
            or pt is None
            or expected is None
            or self._on_audio is None
            or len(self._reorderer)
            or placer.ssrc != ssrc
        ):
            return None
        codec = self._audio_pts.get(pt)
        if codec is None or (self._pending and codec is not self._pending_codec):
            return None
        return NativeStart(
            pt,
            codec is Codec.PCMA,
            ssrc,
            expected & 0xFFFF,
            placer.next_timestamp,
            placer.position,
            bytes(self._pending),
            self._pending_offset if self._pending else placer.position,
            self._pending_since,
        )

    def native_armed(self) -> None:
        """The native receiver holds the block being collected now."""
        self._pending.clear()

    def native_advanced(self, packets: int, samples: int, next_ts: int, arrival: float) -> None:
        """It took ``packets`` next packets (``samples`` in all); the last arrived at ``arrival``."""
        self._reorderer.advance(packets)
        self.placer.advance((next_ts - samples) % TS_MOD, samples, arrival)
        self._ssrc_seen = arrival
        self.audio_packets += packets

    def native_block(self, pcm: npt.NDArray[np.int16], offset: int, arrival: float) -> None:
        """A block it finished and decoded (the `_emit` of its collected packets); ``arrival``:
        of its first packet."""
        if self._on_audio is not None:
            self.block_arrival = arrival
            self._on_audio(pcm, offset)

    def native_returned(self, pending: bytes, offset: int, since: float) -> None:
        """The block it was collecting, back into ours (its codec is the armed one)."""
        if pending:
            codec = self._audio_pts.get(self._last_pt) if self._last_pt is not None else None
            self._pending_codec = codec if codec is not None else self._pending_codec
            self._pending += pending
            self._pending_offset = offset
            self._pending_since = since

    def expire(self, now: float) -> None:
        for released in self._reorderer.expire(now):
            self._dispatch(released)
        if self._pending and self._pending_since + self._flush_after <= now:
            self._emit()

    def flush(self) -> None:
        """Deliver everything received (at the end of the stream)."""
        for released in self._reorderer.flush():
            self._dispatch(released)
        self._emit()

    def _switch_ssrc(self, ssrc: int) -> None:
        for released in self._reorderer.flush():
            self._dispatch(released)
        if self._ssrc is not None:
            self._retired.append(self._ssrc)
            old = self._reorderer
            self._lost += old.lost
            self._late += old.late
            self._duplicates += old.duplicates
            self._reorderer = Reorderer(self._window, self._max_wait)
        self._ssrc = ssrc

    def _dispatch(self, packet: RtpIn) -> None:
        pt = packet.payload_type
        codec = self._audio_pts.get(pt)
        if codec is not None:
            self._place(packet, codec)
        elif pt in self._event_pts:
            digit = self.dtmf.receive(packet.ssrc, packet.timestamp, packet.payload)
            if digit is not None and self.on_dtmf is not None:
                self.event_arrival = packet.arrival
                self.on_dtmf(digit)
        else:
            self.dropped_payload_type += 1

    def _place(self, packet: RtpIn, codec: Codec) -> None:
        payload = packet.payload
        samples = len(payload)  # G.711: one byte per sample
        if not samples:
            return
        self._last_pt = packet.payload_type
        self.audio_packets += 1
        start = self.placer.position
        silence, skip, _ = self.placer.place(
            packet.ssrc, packet.timestamp, samples, packet.arrival, packet.marker
        )
        if self._on_audio is None or skip >= samples:
            return
        if silence or codec is not self._pending_codec:
            self._emit()
        if silence:
            self._silence(start, silence, packet.arrival)
        if not self._pending:
            self._pending_codec = codec
            self._pending_offset = start + silence
            self._pending_since = packet.arrival
        self._pending += payload[skip:] if skip else payload
        if len(self._pending) >= self._block:
            self._emit()

    def _silence(self, offset: int, count: int, end_arrival: float) -> None:
        """Zeros for ``count`` samples from ``offset``; the audio after them arrived at
        ``end_arrival``."""
        sink = self._on_audio
        assert sink is not None
        end = offset + count
        while count > 0:
            block = min(count, _SILENCE_BLOCK)
            self.block_arrival = end_arrival - (end - offset) / CLOCK_RATE
            sink(np.zeros(block, dtype=np.int16), offset)
            offset += block
            count -= block

    def _emit(self) -> None:
        if not self._pending:
            return
        data = bytes(self._pending)
        self._pending.clear()
        if self._on_audio is not None:
            self.block_arrival = self._pending_since
            self._on_audio(_DECODERS[self._pending_codec](data), self._pending_offset)
